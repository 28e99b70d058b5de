"""A command started early on an idle slot, whose result the caller may or may not need.

The driver starts plain `clang -Oz -c` (the user's own command) beside its IR step for a small
source when a machine slot is idle. If the TU turns out too small for the model, or the front end
fails, that run already is the answer, exactly clang's, and the IR step's second compile is
saved; otherwise the driver waits for it before writing the object and ships its own.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from clang_llm.build.jobslots import JobSlots


class Speculative:
    """One started command; `finish()` waits for it (once) and releases its slot."""

    def __init__(self, cmd: list[str], slot_fd: int) -> None:
        self._slot: int | None = slot_fd
        self._done: subprocess.CompletedProcess[bytes] | None = None
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError:
            self._proc = None
            self._release()
        self.cmd = cmd

    @classmethod
    def start(cls, cmd: list[str], slots: JobSlots) -> Speculative | None:
        """Start `cmd` if a machine slot is idle now; None (nothing started) otherwise."""
        fd = slots.try_idle()
        return None if fd is None else cls(cmd, fd)

    def _release(self) -> None:
        if self._slot is not None:
            os.close(self._slot)
            self._slot = None

    def finish(self, timeout: float | None = None) -> subprocess.CompletedProcess[bytes] | None:
        """Its result (None when it could not start or ran past `timeout`, then killed)."""
        if self._done is not None or self._proc is None:
            return self._done
        try:
            out, err = self._proc.communicate(timeout=timeout)
            self._done = subprocess.CompletedProcess(self.cmd, self._proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            self._proc = None
        finally:
            self._release()
        return self._done


def small_source(path: str | None, limit: int) -> bool:
    """Whether `path` is a source file of at most `limit` bytes (0 turns speculation off)."""
    if not path or limit <= 0:
        return False
    try:
        return Path(path).stat().st_size <= limit
    except OSError:
        return False
