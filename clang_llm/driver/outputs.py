"""Atomic outputs and private temp dirs (nothing half-written, nothing beside the output)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_copy(src: Path, dest: Path) -> None:
    """Copy `src` to `dest` via a temp file in dest's directory + rename: readers never see half a file."""
    dest_dir = dest.parent if str(dest.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".clang-llm-tmp", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
        mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
