"""Gain against search budget, from the labels' search trajectories.

Each label records every new best of its search with the number of evaluations spent so far, so
"what would B evaluations have found" is the last best at or before B. That is the anytime curve
of the search that ran (its phases were sized for the full budget, so a search planned for B
alone would spend its first B evaluations somewhat differently): it says where the gain stops
growing, which is what choosing a budget needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clang_llm.records import LabelRecord

DEFAULT_BUDGETS = (6, 12, 25, 50, 100, 150, 200)


@dataclass(frozen=True)
class CurvePoint:
    budget: int
    modules: int
    text_gain_pct: float  # geomean .text reduction against -Oz, percent (positive = smaller)
    alloc_gain_pct: float
    improved: int  # modules whose best at this budget has strictly smaller .text than -Oz


def best_at(rec: LabelRecord, budget: int) -> tuple[int, int]:
    """(.text, alloc) of the best list found within `budget` evaluations (the -Oz baseline
    counts as the first); -Oz's own sizes when nothing better was found by then."""
    assert rec.oz is not None
    text, alloc = rec.oz.text, rec.oz.alloc
    for step in rec.trajectory or ():
        if step.evals <= budget:
            text, alloc = step.text, step.alloc
    return text, alloc


def _gain(ratios: list[float]) -> float:
    return (1 - math.exp(sum(math.log(r) for r in ratios) / len(ratios))) * 100 if ratios else 0.0


def curve(records: Iterable[LabelRecord], budgets: Sequence[int] = DEFAULT_BUDGETS) -> list[CurvePoint]:
    recs = [(r, r.oz) for r in records if r.ok and r.trajectory is not None and r.oz and r.oz.text > 0]
    points = []
    for b in budgets:
        t, a, better = [], [], 0
        for r, oz in recs:
            text, alloc = best_at(r, b)
            t.append(text / oz.text)
            a.append(alloc / oz.alloc)
            better += text < oz.text
        points.append(CurvePoint(b, len(recs), round(_gain(t), 3), round(_gain(a), 3), better))
    return points


def markdown(points: list[CurvePoint], title: str) -> str:
    header = "| budget (opt evaluations) | modules | .text gain vs -Oz | allocated gain | improved |"
    lines = [f"### {title}", "", header, "|---|---|---|---|---|"]
    lines += [f"| {p.budget} | {p.modules} | {p.text_gain_pct:+.2f} % | {p.alloc_gain_pct:+.2f} % | {p.improved} |"
              for p in points]
    return "\n".join(lines) + "\n"


def plot(series: dict[str, list[CurvePoint]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in series.items():
        ax.plot([p.budget for p in pts], [p.text_gain_pct for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("opt evaluations per module (log)")
    ax.set_ylabel("geomean .text gain vs -Oz (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
