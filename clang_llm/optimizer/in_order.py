"""Candidates run in parallel, judged in order: an early stop that does not depend on `jobs`.

Why: a stop rule decides after each list whether the next is worth its opt run. Running lists
one by one would leave a free core idle; running them all at once would spend the runs the rule
saves. So up to `jobs` lists run at once, their results are read in list order, and the rule
sees exactly the results before list i when it decides on list i: results of lists started
early and not wanted are dropped, so what a TU tries -- and ships -- is the same at any `jobs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# go_on(results so far, index of the next item): whether the next item is worth running.
GoOn = Callable[[list[R], int], bool]


def run_in_order(items: Sequence[T], run: Callable[[T], R], jobs: int, go_on: GoOn[R] | None = None) -> list[R]:
    """`run` on a prefix of `items`: item i runs unless `go_on(results[:i], i)` says no, which
    ends the run. Up to `jobs` items run at once; the results come back in item order."""
    results: list[R] = []
    if not items:
        return results
    if jobs <= 1:
        for i, item in enumerate(items):
            if go_on is not None and not go_on(results, i):
                break
            results.append(run(item))
        return results
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: list[Future[R]] = []
        nxt = 0

        def fill() -> None:
            nonlocal nxt
            while nxt < len(items) and len(pending) < jobs:
                pending.append(pool.submit(run, items[nxt]))
                nxt += 1

        if go_on is not None and not go_on(results, 0):
            return results
        fill()
        while pending:
            results.append(pending.pop(0).result())
            i = len(results)
            if i < len(items) and go_on is not None and not go_on(results, i):
                for f in pending:
                    f.cancel()  # not started: never runs; started: finishes, its result dropped
                break
            fill()
    return results
