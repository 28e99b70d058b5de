"""Who may start a heavy step (an opt + codegen evaluation) now.

Under GNU make's jobserver (``--jobserver-auth=R,W`` or ``fifo:PATH`` in MAKEFLAGS, reachable
when make passes it: make 4.4's fifo always, make 4.3's pipe to `+` recipes), a TU runs its first
evaluation on the job slot make gave it and each further parallel one on a token read from the
jobserver, returned when done: `make -jN` never runs more than N heavy steps. Without a
jobserver, every evaluation takes one of N slots per machine (N = cores unless set), shared by
all builds, so `make -j64` on 8 cores runs 8 at a time, not 64 × `jobs`.

Machine slots are lock files held with `flock`: a lock dies with its process, so a killed
compile never leaks a slot (a counter in a file would). The model backend bounds its requests
per machine the same way.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from clang_llm.errors import SlotTimeout


def _lock_free(directory: Path, n: int, first: int = 0) -> tuple[int, int] | None:
    """(index, locked fd) of the first of `n` slots free right now, trying from `first`."""
    for j in range(n):
        i = (first + j) % n
        fd = os.open(directory / f"slot-{i}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return i, fd
    return None


@contextmanager
def machine_slot(directory: Path, n: int, wait_s: float) -> Iterator[int]:
    """Hold one of `n` slots under `directory` for the duration of the block (its index)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    n = max(1, n)
    deadline = time.monotonic() + wait_s
    first = os.getpid() % n  # spread the first try, so n waiters rarely collide
    while (got := _lock_free(directory, n, first)) is None:
        if time.monotonic() >= deadline:
            raise SlotTimeout(f"all {n} model-request slots busy for {wait_s:.0f} s")
        time.sleep(0.005)
    i, fd = got
    try:
        yield i
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def try_machine_slot(directory: Path, n: int) -> int | None:
    """One of `n` slots if one is free right now: the locked fd (close it to release), else None."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    got = _lock_free(directory, max(1, n))
    return None if got is None else got[1]


_AUTH = re.compile(r"--jobserver-(?:auth|fds)=(\S+)")
FDS_ENV = "CLANG_LLM_JOBSERVER_FDS"  # set by the daemon: the client's jobserver fds as received


def _is_pipe(fd: int, writable: bool) -> bool:
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return False
    return mode in ((os.O_WRONLY, os.O_RDWR) if writable else (os.O_RDONLY, os.O_RDWR))


def jobserver_fds(env: Mapping[str, str]) -> tuple[int, int] | None:
    """The (read, write) fds of a reachable jobserver, opening make 4.4's fifo if named."""
    spec = env.get(FDS_ENV, "")
    if not spec:
        found = _AUTH.findall(env.get("MAKEFLAGS", ""))
        if not found:
            return None
        spec = found[-1]
    if spec.startswith("fifo:"):
        try:
            fd = os.open(spec[5:], os.O_RDWR)
        except OSError:
            return None
        return (fd, fd) if _is_pipe(fd, True) else None
    try:
        r, w = (int(x) for x in spec.split(",", 1))
    except ValueError:
        return None
    if r < 0 or w < 0 or not _is_pipe(r, False) or not _is_pipe(w, True):
        return None  # named in MAKEFLAGS but not passed to us (make 4.3, a recipe without '+')
    return r, w


class JobSlots:
    def __init__(self, jobserver: tuple[int, int] | None, machine_dir: Path, per_machine: int,
                 wait_s: float = 24 * 3600.0) -> None:
        self.jobserver = jobserver
        self.machine_dir, self.per_machine, self.wait_s = machine_dir, max(1, per_machine), wait_s
        self._lock = threading.Lock()
        self._implicit_free = True

    @classmethod
    def from_env(cls, env: Mapping[str, str], machine_dir: Path, per_machine: int) -> JobSlots:
        return cls(jobserver_fds(env), machine_dir, per_machine or os.cpu_count() or 1)

    def _take(self) -> bytes | None:
        """A token: None for the implicit one (make's slot for this process), else a byte read
        from the jobserver. Waiters watch both, so one freed implicit slot is never missed."""
        assert self.jobserver is not None
        r = self.jobserver[0]
        while True:
            with self._lock:
                if self._implicit_free:
                    self._implicit_free = False
                    return None
            ready, _, _ = select.select([r], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(r, 1)
            except BlockingIOError:
                continue  # another process took it first
            if data:
                return data

    def try_idle(self, env: Mapping[str, str]) -> int | None:
        """A machine slot if all of them are idle now (a locked fd to close), for work worth doing
        only on spare capacity: a serial caller such as a configure script. Never in a parallel
        make (a jobserver named in MAKEFLAGS, reachable or not): make keeps the cores busy."""
        if self.jobserver is not None or _AUTH.search(env.get("MAKEFLAGS", "")):
            return None
        held: list[int] = []
        try:
            for _ in range(self.per_machine):
                fd = try_machine_slot(self.machine_dir, self.per_machine)
                if fd is None:
                    return None
                held.append(fd)
            return held.pop(0)
        finally:
            for fd in held:
                os.close(fd)

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.jobserver is None:
            with machine_slot(self.machine_dir, self.per_machine, self.wait_s):
                yield
            return
        token = self._take()
        try:
            yield
        finally:
            if token is None:
                with self._lock:
                    self._implicit_free = True
            else:
                os.write(self.jobserver[1], token)
