"""Coreset v2: the k stored pass lists that together cover the most modules' wins.

Why here, below evaluation and training alike: `coreset@k` (the model-free baseline) and a
cllm-v2 model's pool of stored lists are the same choice from the same train labels.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from clang_llm.records import LabelRecord
from clang_llm.train.configs import DEFAULT_BROADCAST


def _marginal_gain(where: list[tuple[int, float]], current: list[float]) -> float:
    """How much a list lowers the summed log .text ratios of the modules, over the chosen lists.
    `where` holds (module, log ratio) for the modules where the list wins: elsewhere it counts as
    -Oz and adds nothing, so only those terms are summed (in module order, as a dense sum would)."""
    return sum(current[m] - min(current[m], v) for m, v in where)


def coreset_lists(labels: Iterable[LabelRecord], k: int, split: str = "train") -> list[str]:
    """The k lists that together cover the most of `split`'s wins, chosen greedily by marginal
    gain (coreset v2): each label's top lists say how small each list makes that module; a list
    is worth the geomean `.text` it adds over the lists already chosen (a module a list was not
    measured on counts as -Oz for it). Ties and a shortfall fall back to how often a list was
    the best, then to the fixed broadcast list."""
    if split == "test":
        raise ValueError("the coreset is never built from the test split")
    recs = [r for r in labels if r.split == split and r.ok and r.oz and r.oz.text > 0]
    ratio: list[dict[str, float]] = []  # per module: list -> log(.text / -Oz .text), only wins
    for r in recs:
        oz, best = r.oz, r.best
        assert oz is not None and best is not None
        # A list that leaves no code (a csmith program whose every path is undefined) counts as 1 byte.
        known = {t.pass_list: math.log(max(1, t.text) / oz.text) for t in r.top
                 if t.text < oz.text and t.alloc <= oz.alloc}
        if best.text < oz.text and best.alloc <= oz.alloc:
            known.setdefault(best.pass_list, math.log(max(1, best.text) / oz.text))
        ratio.append(known)
    wins: Counter[str] = Counter(r.best.pass_list for r in recs if r.improved and r.best)
    current = [0.0] * len(ratio)  # log ratio of the best chosen list per module (0 = -Oz)
    out: list[str] = []
    candidates = sorted({s for known in ratio for s in known}, key=lambda s: (-wins[s], s))
    where: dict[str, list[tuple[int, float]]] = {s: [] for s in candidates}
    for m, known in enumerate(ratio):
        for s, v in known.items():
            where[s].append((m, v))
    while len(out) < k and candidates:
        gains = {s: _marginal_gain(where[s], current) for s in candidates}
        pick = max(candidates, key=gains.__getitem__)  # the first of equals: the most frequent winner
        if gains[pick] <= 0:
            break
        out.append(pick)
        candidates.remove(pick)
        for m, v in where[pick]:
            current[m] = min(current[m], v)
    for s in [*(s for s, _ in wins.most_common()), *DEFAULT_BROADCAST]:
        if len(out) >= k:
            break
        if s not in out:
            out.append(s)
    return out[:k]
