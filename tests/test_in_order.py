"""Candidates run in parallel and are judged in order: what runs, and what is returned, does not
depend on how many run at once."""

from __future__ import annotations

import random
import threading
import time

import pytest

from clang_llm.optimizer.in_order import run_in_order


@pytest.mark.parametrize("jobs", [1, 2, 4])
def test_the_results_and_the_stop_are_the_same_at_any_jobs(jobs: int) -> None:
    """Items finish in a random order; the rule stops before the first item after a result of 7.
    Every call sees exactly the results before its index, and the answer is the same prefix."""
    rng = random.Random(jobs)
    seen: list[tuple[int, list[int]]] = []

    def run(x: int) -> int:
        time.sleep(rng.random() * 0.01)
        return x

    def go_on(results: list[int], i: int) -> bool:
        seen.append((i, list(results)))
        return 7 not in results

    items = [3, 1, 7, 2, 9, 4]
    assert run_in_order(items, run, jobs, go_on) == [3, 1, 7]
    assert seen == [(0, []), (1, [3]), (2, [3, 1]), (3, [3, 1, 7])]


def test_no_rule_runs_everything_and_a_first_no_runs_nothing() -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def run(x: int) -> int:
        with lock:
            calls.append(x)
        return x * 2

    assert run_in_order([1, 2, 3], run, 2) == [2, 4, 6]
    calls.clear()
    assert run_in_order([1, 2, 3], run, 2, lambda r, i: False) == [] and calls == []
    assert run_in_order([], run, 2, lambda r, i: True) == []


def test_at_most_jobs_run_at_once_and_no_more_than_jobs_minus_one_are_wasted() -> None:
    """A stop after the first result leaves at most `jobs - 1` items started beyond it."""
    running, peak, started = 0, 0, []
    lock = threading.Lock()

    def run(x: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            started.append(x)
        time.sleep(0.02)
        with lock:
            running -= 1
        return x

    assert run_in_order(list(range(10)), run, 3, lambda r, i: i < 1) == [0]
    assert peak <= 3 and len(started) <= 3
