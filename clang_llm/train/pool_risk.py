"""The pool's risk table: what each stored list costs on the modules where another list wins.

Why: a model that ranks its pool learns which lists are *often among the best* for a TU like
this one, and its single most likely list can still be one that wins big on some modules and
grows others by a third. When only one list is tried and nothing backs it up, the right pick
is not the most likely winner but the list with the smallest expected size under the model's
belief about which list wins (minimum-Bayes-risk decoding): ``E[j] = sum_i p(i) * R[i][j]``,
where ``R[i][j]`` is the mean log(.text / -Oz .text) of list j on the train modules that list i
wins (ties share a module). The table comes from the train split's pool sweep, so it is data
of the pool, like the coreset, and it ships in the model card beside the pool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from clang_llm.train.pool_sweep import PoolSizes

if TYPE_CHECKING:
    from clang_llm.model.card import ModelCard


def _log_ratios(rec: PoolSizes, n: int) -> list[float] | None:
    """log(.text / -Oz .text) of each list on one module; a failed list is -Oz (0), as the
    driver ships -Oz when a list fails; None when the module has no usable sweep."""
    if rec.status != "ok" or rec.oz is None or rec.oz.text <= 0 or len(rec.sizes) != n:
        return None
    oz = rec.oz.text
    return [0.0 if s is None else math.log(max(1, s.text) / oz) for s in rec.sizes]


def risk_table(sweep: Iterable[PoolSizes], n: int) -> list[list[float]]:
    """``R[i][j]``: the mean log size ratio of list j on the modules list i wins (ties split a
    module's weight); a list that wins nowhere gets the mean over all modules."""
    sums = [[0.0] * n for _ in range(n)]
    weight = [0.0] * n
    total = [0.0] * n
    count = 0
    for rec in sweep:
        row = _log_ratios(rec, n)
        if row is None:
            continue
        count += 1
        for j, v in enumerate(row):
            total[j] += v
        best = min(row)
        winners = [i for i, v in enumerate(row) if v <= best]
        for i in winners:
            w = 1.0 / len(winners)
            weight[i] += w
            for j, v in enumerate(row):
                sums[i][j] += w * v
    if count == 0:
        raise ValueError("the sweep has no usable module")
    mean = [t / count for t in total]
    return [[round(s / weight[i], 6) for s in sums[i]] if weight[i] > 0 else [round(m, 6) for m in mean]
            for i in range(n)]


def attach_risk(model_dir: Path, sweep_path: Path, temperature: float) -> ModelCard:
    """Write the risk table of `sweep_path` (the train split's pool sweep) and the temperature
    of the single answer into the model's card; the model's pool must be the sweep's."""
    from clang_llm.model.card import read_card, write_card
    from clang_llm.train.pool_sweep import read_sweep

    card = read_card(model_dir)
    if not card.pool:
        raise ValueError(f"{model_dir}: not a cllm-v2 model (no pool)")
    if temperature < 0:
        raise ValueError("the temperature must be >= 0 (0: the single answer is the likeliest list)")
    records = read_sweep(sweep_path, card.pool)
    if not records:
        raise ValueError(f"{sweep_path}: no sweep records of this model's pool")
    card.pool_risk = risk_table(records.values(), len(card.pool))
    card.risk_temperature = temperature
    card.training = {**card.training, "risk": {"sweep": Path(sweep_path).name, "modules": len(records),
                                               "temperature": temperature}}
    write_card(model_dir, card)
    return card
