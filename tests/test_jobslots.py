"""The heavy-step bound on a real pipe jobserver and on machine slots: never more at once than
the tokens (+ this process's own slot), every token returned, nobody left waiting."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from clang_llm.build.jobslots import JobSlots, jobserver_fds


def _hammer(slots: JobSlots, n: int) -> int:
    now = top = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal now, top
        with slots.slot():
            with lock:
                now += 1
                top = max(top, now)
            time.sleep(0.05)
            with lock:
                now -= 1

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a waiter never got a slot"
    return top


def test_jobserver_tokens_plus_the_implicit_slot() -> None:
    r, w = os.pipe()
    os.write(w, b"++")  # make -j3: two tokens in the pipe, one slot is this process's own
    try:
        env = {"MAKEFLAGS": f" -j3 --jobserver-auth={r},{w}"}
        assert jobserver_fds(env) == (r, w)
        top = _hammer(JobSlots.from_env(env, Path("/nonexistent"), 1), 12)
        assert top == 3
        os.set_blocking(r, False)
        assert os.read(r, 10) == b"++"  # every token went back
    finally:
        os.close(r)
        os.close(w)


def test_named_but_unreachable_jobserver_is_ignored() -> None:
    assert jobserver_fds({"MAKEFLAGS": "-j8 --jobserver-auth=97,98"}) is None
    assert jobserver_fds({"MAKEFLAGS": "-j8"}) is None


@pytest.mark.parametrize("n", [1, 3])
def test_machine_slots(tmp_path: Path, n: int) -> None:
    assert _hammer(JobSlots(None, tmp_path / "slots", n), 8) == n


def test_a_speculative_run_frees_its_slot_when_it_exits(tmp_path: Path) -> None:
    """Not when its result is asked for: the TU's own heavy steps wait for that slot meanwhile
    (holding it until then deadlocked `make -j8` with 3 slots)."""
    from clang_llm.build.speculative import Speculative

    slots = JobSlots(None, tmp_path / "slots", 1)
    assert Speculative.start(["true"], slots, {"MAKEFLAGS": " -j8 --jobserver-auth=3,4"}) is None  # parallel make
    spec = Speculative.start(["sh", "-c", "echo out; echo err >&2; exit 3"], slots, {})
    assert spec is not None
    deadline = time.monotonic() + 10
    while (fd := slots.try_idle({})) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fd is not None, "the slot stayed held after the run exited"
    os.close(fd)
    done = spec.finish()
    assert done is not None and (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")
    held = slots.try_idle({})
    assert held is not None
    try:
        assert Speculative.start(["true"], slots, {}) is None  # no idle slot: nothing started
    finally:
        os.close(held)
