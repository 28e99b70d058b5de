"""Minimum-Bayes-risk order of a model's pool: the lists with the smallest expected size first.

Why: `Model.rank_pool` gives how likely each stored list is to be among the best for a TU;
with one try and no backup, the list to ship is the one whose expected size is smallest under
that belief, ``E[j] = sum_i q(i) * R[i][j]`` with ``q`` the tempered pool distribution and
``R`` the card's risk table (see `clang_llm.train.pool_risk`). Pure arithmetic: no model, no
numpy, so the compile path pays nothing for it.
"""

from __future__ import annotations

import math


def expected_losses(log_probs: list[float], risk: list[list[float]], temperature: float) -> list[float]:
    """``E[j]`` for every list j: the expected log(.text / -Oz .text) if list j ships, when list
    i wins with probability proportional to ``exp(log_probs[i] / temperature)``."""
    n = len(log_probs)
    if len(risk) != n or any(len(row) != n for row in risk):
        raise ValueError(f"a risk table of {len(risk)} rows for a pool of {n} lists")
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    top = max(log_probs)
    w = [math.exp((lp - top) / temperature) for lp in log_probs]
    z = sum(w)
    return [sum(w[i] * risk[i][j] for i in range(n)) / z for j in range(n)]


def risk_order(log_probs: list[float], risk: list[list[float]], temperature: float) -> list[int]:
    """Pool indices, smallest expected size first; ties keep the likelier list, then the pool order."""
    e = expected_losses(log_probs, risk, temperature)
    return sorted(range(len(e)), key=lambda j: (e[j], -log_probs[j], j))
