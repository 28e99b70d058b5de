"""The gain-versus-budget curve reads each label's trajectory: the best found within B evaluations."""

from __future__ import annotations

import math

from clang_llm.records import LabelRecord
from clang_llm.train.budget_curve import best_at, curve


def _rec(trajectory: list[tuple[int, int, int]], oz: tuple[int, int] = (100, 200)) -> LabelRecord:
    steps = [{"evals": e, "pass_list": f"l{e}", "text": t, "alloc": a, "count": 0} for e, t, a in trajectory]
    best = steps[-1] if steps else {"pass_list": "Oz", "text": oz[0], "alloc": oz[1], "count": 0}
    return LabelRecord.from_json({"id": "m", "status": "ok", "oz": {"text": oz[0], "alloc": oz[1]},
                                  "best": {k: v for k, v in best.items() if k != "evals"}, "trajectory": steps})


def test_best_within_budget() -> None:
    r = _rec([(3, 90, 190), (40, 80, 185), (180, 70, 180)])
    assert best_at(r, 2) == (100, 200)  # nothing found yet: -Oz
    assert best_at(r, 3) == (90, 190)
    assert best_at(r, 50) == (80, 185)
    assert best_at(r, 200) == (70, 180)


def test_curve_geomean_and_improved_counts() -> None:
    recs = [_rec([(5, 50, 200)]), _rec([])]  # one module halves at 5 evaluations, one never improves
    at4, at6 = curve(recs, budgets=(4, 6))
    assert at4.improved == 0 and at4.text_gain_pct == 0.0
    assert at6.improved == 1
    assert math.isclose(at6.text_gain_pct, (1 - math.sqrt(0.5)) * 100, abs_tol=1e-3)
