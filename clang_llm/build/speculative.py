"""A command started early on an idle machine, whose result the caller may or may not need.

The driver starts plain `clang -Oz -c` (the user's own command, into its work dir) beside its IR
step for a small source when the machine is idle (no parallel make, every heavy-step slot
free). If the TU turns out too small for the model, or the front end fails, that run already is
the answer, exactly clang's, and the second compile from IR is saved; otherwise its object is
dropped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

from clang_llm.build.jobslots import JobSlots
from clang_llm.toolchain import args_too_long


class Speculative:
    """One started command. A thread collects its output and frees its slot the moment it exits
    (not when the caller gets round to asking: the TU's own heavy steps need that slot)."""

    def __init__(self, cmd: list[str], slot_fd: int) -> None:
        self.cmd = cmd
        self._slot = slot_fd
        self._done: subprocess.CompletedProcess[bytes] | None = None
        try:
            # Its own process group: stopping it stops whatever it started (a compiler driver's
            # children hold its pipes open).
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError:
            self._proc = None
            os.close(slot_fd)
            self._thread: threading.Thread | None = None
            return
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        assert self._proc is not None
        try:
            out, err = self._proc.communicate()
            self._done = subprocess.CompletedProcess(self.cmd, self._proc.returncode, out, err)
        finally:
            os.close(self._slot)

    @classmethod
    def start(cls, cmd: list[str], slots: JobSlots, env: Mapping[str, str]) -> Speculative | None:
        """Start `cmd` if the machine's slots are all idle now; None (nothing started) otherwise
        (also when it is too long to exec without a response file: not worth one here)."""
        if args_too_long(cmd):
            return None
        fd = slots.try_idle(env)
        return None if fd is None else cls(cmd, fd)

    def cancel(self) -> None:
        """Stop it now (its answer is not needed: a stored object ships); its slot is freed."""
        if self._thread is None:
            return
        self._kill()
        self._thread.join()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except OSError:  # gone already
                pass

    def finish(self, timeout: float | None = None) -> subprocess.CompletedProcess[bytes] | None:
        """Its result; None when it could not start, or ran past `timeout` (then it is killed)."""
        if self._thread is None:
            return None
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._kill()
            self._thread.join()
            return None
        return self._done


def small_source(path: str | None, limit: int) -> bool:
    """Whether `path` is a source file of at most `limit` bytes (0 turns speculation off)."""
    if not path or limit <= 0:
        return False
    try:
        return Path(path).stat().st_size <= limit
    except OSError:
        return False
