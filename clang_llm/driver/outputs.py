"""Atomic outputs and private temp dirs (nothing half-written, nothing beside the output)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _atomic(dest: Path, write: Callable[[BinaryIO], None], mode: int | None = None) -> None:
    """Write via a temp file in dest's directory + rename: readers never see half a file."""
    dest_dir = dest.parent if str(dest.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".clang-llm-tmp", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_copy(src: Path, dest: Path) -> None:
    """Copy an object into place with the permissions a compiler's output would have."""
    with open(src, "rb") as inp:
        _atomic(dest, lambda out: shutil.copyfileobj(inp, out), 0o666 & ~_umask())


def atomic_write_text(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    _atomic(dest, lambda out: out.write(text.encode()), 0o666 & ~_umask())


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a finished directory into place (old copy removed only after the rename)."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK


def private_tempdir(state_dir: Path) -> tempfile.TemporaryDirectory[str]:
    """A temp dir under the state dir (stale ones from killed runs are swept), else the system's."""
    base = state_dir / "tmp"
    try:
        base.mkdir(parents=True, exist_ok=True)
        _sweep_stale(base)
        return tempfile.TemporaryDirectory(prefix=f"{os.getpid()}-", dir=base)
    except OSError:
        return tempfile.TemporaryDirectory(prefix="clang-llm-")


def _sweep_stale(base: Path) -> None:
    """Remove temp dirs whose owning process is gone (a compile killed with SIGKILL)."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for e in entries:
        pid_s = e.name.split("-", 1)[0]
        if not pid_s.isdigit():
            continue
        try:
            os.kill(int(pid_s), 0)
        except ProcessLookupError:
            shutil.rmtree(e.path, ignore_errors=True)
        except OSError:
            pass
