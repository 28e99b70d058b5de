"""A bound on concurrent model requests per machine: N lock files, one held per request.

`flock` locks die with their process, so a killed compile never leaks a slot (a counter in a
file would). All builds of one user on one machine share the directory, so `make -j64` sends
at most N requests at once to a server that many machines may share.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SlotTimeout(TimeoutError):
    """No slot came free within the wait allowed."""


@contextmanager
def machine_slot(directory: Path, n: int, wait_s: float) -> Iterator[int]:
    """Hold one of `n` slots under `directory` for the duration of the block (its index)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    first = os.getpid() % max(1, n)  # spread the first try, so n waiters rarely collide
    while True:
        for j in range(max(1, n)):
            i = (first + j) % max(1, n)
            fd = os.open(directory / f"slot-{i}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield i
                return
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        if time.monotonic() >= deadline:
            raise SlotTimeout(f"all {n} model-request slots busy for {wait_s:.0f} s")
        time.sleep(0.005)
