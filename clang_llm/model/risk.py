"""Minimum-Bayes-risk order of a model's pool: the lists a TU should try, given what the model
believes and what each list did on the train modules.

Why: `Model.rank_pool` gives how likely each stored list is to be among the best for a TU. Its
likeliest lists can be ones that win big on some modules and do nothing (or grow the object)
on the rest, and its top 15 often repeat one another. The pool's loss table (the train split's
pool sweep: log(.text / -Oz .text) of every list on every module) turns the belief into
expected sizes: the model's probability that list i wins is spread over the train modules list
i wins (``w(m) = sum_i q(i) [i wins m] / #modules i wins``, ``q ∝ exp(log p / t)``), and

- the first list is the one of smallest expected size on its own, ``argmin_j sum_m w(m) L[m, j]``
  (what one try with no backup should ship);
- each next list is the one that most lowers the expected size of the best object so far, the
  -Oz object included (``min(0, ...)``: the driver never ships a larger one) -- greedy coverage,
  so a ranking of k lists does not spend tries on lists that win on the same modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np

R = TypeVar("R")

LOSSES_FILE = "pool-losses.npy"
LOSS_SCALE = 1e-4  # the file stores int16 log ratios in units of 1e-4 (±3.27: ±96 % of -Oz .text)


def load_losses(path: Path, n_lists: int) -> np.ndarray:
    """The (modules, lists) float table of a model directory's `pool-losses.npy`; ValueError
    when it is not an int16 table with one column per stored list."""
    import numpy as np

    table = np.load(path, allow_pickle=False)
    if table.dtype != np.int16 or table.ndim != 2 or table.shape[1] != n_lists or table.shape[0] < 1:
        raise ValueError(f"{path.name}: expected an int16 table of (modules, {n_lists}), got "
                         f"{table.dtype} {table.shape}")
    return log_ratios(table)


def log_ratios(table: np.ndarray) -> np.ndarray:
    """The stored int16 table as float log(.text / -Oz .text)."""
    import numpy as np

    return table.astype(np.float64) * LOSS_SCALE


def module_weights(losses: np.ndarray, log_probs: list[float], temperature: float) -> np.ndarray:
    """``w(m)``: the model's belief spread over the train modules by which list wins each
    (ties share a module); a list that wins nowhere spreads its share over every module."""
    import numpy as np

    if temperature <= 0:
        raise ValueError("temperature must be positive")
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.shape != (losses.shape[1],):
        raise ValueError(f"{lp.size} scores for a pool of {losses.shape[1]} lists")
    q = np.exp((lp - lp.max()) / temperature)
    q /= q.sum()
    wins = (losses <= losses.min(axis=1, keepdims=True)).astype(np.float64)
    wins /= wins.sum(axis=1, keepdims=True)
    count = wins.sum(axis=0)
    share = np.where(count > 0, wins / np.where(count > 0, count, 1.0), 1.0 / losses.shape[0])
    w = share @ q
    return w / w.sum()


def risk_order(log_probs: list[float], losses: np.ndarray, temperature: float, k: int,
               allowed: list[int], weights: np.ndarray | None = None) -> list[int]:
    """Up to `k` of the `allowed` pool indices in try order: the smallest expected size alone
    first, then greedy coverage with -Oz as the backup. Ties keep the likelier list. `weights`:
    `module_weights(losses, log_probs, temperature)` when the caller has it already."""
    import numpy as np

    cand = list(dict.fromkeys(allowed))
    if k < 1 or not cand:
        return []
    w = module_weights(losses, log_probs, temperature) if weights is None else weights
    alone = w @ losses
    first = min(cand, key=lambda j: (round(float(alone[j]), 12), -log_probs[j], j))
    order = [first]
    best = np.minimum(losses[:, first], 0.0)
    rest = [j for j in cand if j != first]
    while rest and len(order) < k:
        gain = w @ np.minimum(best[:, None], losses[:, rest])
        nxt = min(range(len(rest)), key=lambda i: (round(float(gain[i]), 12), -log_probs[rest[i]], rest[i]))
        j = rest.pop(nxt)
        order.append(j)
        best = np.minimum(best, losses[:, j])
    return order


def shipped_log_ratio(text: int, alloc: int, oz_text: int, oz_alloc: int) -> float:
    """log(.text / -Oz .text) of an object as the stop rule counts it: 0 for one larger than -Oz
    in `.text` or allocated bytes (it never ships)."""
    if text > oz_text or alloc > oz_alloc or oz_text <= 0:
        return 0.0
    return math.log(max(1, text) / oz_text)


def further_gain(weights: np.ndarray, losses: np.ndarray, best: float, rest: list[int]) -> float:
    """How far the model expects the lists `rest` to lower the best log(.text / -Oz .text) found
    so far (`best`, <= 0: -Oz is always there): ``sum_m w(m) max(0, best - min_j L[m, j])``.

    Why this stop rule: after a list that already won big, few train modules have a list that
    beats it, so the rest is expected to add little; on a TU the model believes nothing helps,
    the rule says so before any run (`best` = 0). It reads the model's belief and the loss table
    only, so the offline evaluation applies it exactly as the compile does."""
    import numpy as np

    if not rest:
        return 0.0
    reach = np.minimum(0.0, losses[:, rest].min(axis=1))
    return float(weights @ np.maximum(0.0, best - reach))


def stop_rule(weights: np.ndarray, losses: np.ndarray, plan: list[int], stop: float,
              logratio: Callable[[R], float], best: float = 0.0) -> Callable[[list[R], int], bool]:
    """Whether the i-th list of `plan` (pool indices in try order) is worth its run, given the
    results before it: while `further_gain` of `plan[i:]` from the best log ratio so far
    (`best`, from earlier rounds, and `logratio` of each result, 0 for a failed or larger
    object) is at least `stop`. Positions past the plan (lists the model wrote) always run. The
    compile (`optimizer/loop.py`) and the offline evaluation (`eval/offline.py`) both use it."""

    def go_on(results: list[R], i: int) -> bool:
        if i >= len(plan):
            return True
        so_far = min([0.0, best, *(logratio(r) for r in results)])
        return further_gain(weights, losses, so_far, plan[i:]) >= stop

    return go_on
