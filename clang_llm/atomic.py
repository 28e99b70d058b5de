"""Atomic file writes: readers never see half a file, and an old file stays intact until the new
one is complete. Every file clang-llm writes for others to read goes through here."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".clang-llm-tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive as far as we can tell
    return True


def _sweep_stale_siblings(dest_dir: Path, name: str) -> None:
    """Remove `.<name>.<pid>.*.clang-llm-tmp` files of writers that were killed mid-write."""
    try:
        entries = list(dest_dir.glob(f".{name}.*{TMP_SUFFIX}"))
    except OSError:
        return
    for p in entries:
        pid_s = p.name[len(name) + 2:].split(".", 1)[0]
        if pid_s.isdigit() and not _pid_alive(int(pid_s)):
            try:
                p.unlink()
            except OSError:
                pass


@contextmanager
def _replacing(dest: Path, mode: int | None = None) -> Iterator[Path]:
    """A temp file in dest's directory, renamed onto `dest` when the block ends normally and the
    file still exists (a block that raises, or removes it, publishes nothing). The temp name
    carries our pid, so the leftover of a writer killed mid-write is removed by the next write of
    the same file. `mode` defaults to what a compiler's output gets: 0666 & ~umask."""
    dest_dir = dest.parent if str(dest.parent) else Path(".")
    _sweep_stale_siblings(dest_dir, dest.name)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=dest_dir)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic(dest: Path, write: Callable[[BinaryIO], None], mode: int | None = None) -> None:
    """`write` the new content of `dest` into a temp file, then rename it into place."""
    with _replacing(dest, mode) as tmp, open(tmp, "wb") as out:
        write(out)


def atomic_copy(src: Path, dest: Path) -> None:
    """Copy an object into place with the permissions a compiler's output would have."""
    with open(src, "rb") as inp:
        _atomic(dest, lambda out: shutil.copyfileobj(inp, out))


def atomic_write_text(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    _atomic(dest, lambda out: out.write(text.encode()))


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


def atomic_write_bytes(dest: Path, data: bytes, mode: int | None = None) -> None:
    """`data` as the new content of `dest` (its directory created); `mode` defaults to 0666 & ~umask."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _atomic(dest, lambda out: out.write(data), mode)


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A temp path beside `dest` (its directory created) for a writer that wants a file name (a
    tool's `-o`, `gzip.open`, a library's `save`): moved onto `dest` when the block ends normally
    and the file exists. A block that raises, or removes the file itself, publishes nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _replacing(dest) as tmp:
        yield tmp
