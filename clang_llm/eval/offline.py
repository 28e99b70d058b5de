"""Ranking methods scored offline on a pool sweep: any k, no opt run.

Why: with every stored list's sizes measured once per module (`clang-llm-tool pool-sweep`),
what `rank@k+backup` and `coreset@k+backup` would ship is a lookup: the best of the lists they
try, kept only when not larger than -Oz in `.text` and allocated bytes (the driver's rule). So
the default number of ranked lists is chosen on the validation split from one forward pass per
module instead of one evaluation run per candidate setting; the chosen setting is then measured
for real by `clang-llm-tool eval`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clang_llm.records import LabelRecord, ObjectSize
from clang_llm.train.pool_sweep import PoolSizes

if TYPE_CHECKING:
    import numpy as np

    from clang_llm.config import EffortLevel


@dataclass(frozen=True)
class OfflineRow:
    method: str
    evals: float  # opt evaluations per module, the -Oz baseline included (a mean, with an early stop)
    modules: int
    text_gain: float  # 1 - geomean(.text / -Oz .text)
    package_gain: float | None  # the same without csmith modules
    share_of_autotuner: float | None  # text_gain / the labels' gain on the same modules


def _pick(oz: ObjectSize, sizes: list[ObjectSize | None], order: list[int]) -> ObjectSize:
    """select_best's rule on measured sizes: the smallest (text, alloc, count) not larger than -Oz."""
    best, key = oz, (oz.text, oz.alloc, oz.count or 0)
    for i in order:
        s = sizes[i]
        if s is None or s.text > oz.text or s.alloc > oz.alloc:
            continue
        k = (s.text, s.alloc, s.count or 0)
        if k < key:
            best, key = s, k
    return best


def _gain(pairs: list[tuple[int, int]]) -> float:
    logs = [math.log(max(1, new) / old) for new, old in pairs if old > 0]
    return 1 - math.exp(sum(logs) / len(logs)) if logs else 0.0


def _first(oz: ObjectSize, sizes: list[ObjectSize | None], order: list[int]) -> ObjectSize:
    """What one try with no backup ships: the first list's object, -Oz only when it failed."""
    s = sizes[order[0]] if order else None
    return oz if s is None else s


def offline_rows(sweep: dict[str, PoolSizes], pool: list[str], scores: dict[str, list[float]],
                 labels: dict[str, LabelRecord], packages: dict[str, str], ks: list[int],
                 losses: np.ndarray | None = None, temperatures: tuple[float, ...] = ()) -> list[OfflineRow]:
    """coreset@k+backup (the pool in its stored order), rank@k+backup (by the model's scores), the
    best of the whole pool, and the autotuner, on the modules that have a sweep and a score; and
    the single answers with no backup: coreset@1, rank@1; and, given the pool's loss table
    (float, modules x lists), the minimum-risk order at each temperature (`risk t=...` rows)."""
    ids = sorted(i for i, r in sweep.items() if r.status == "ok" and r.oz and i in scores)
    rest = [i for i, p in enumerate(pool) if p != "Oz"]
    auto = [(labels[i].best.text, labels[i].oz.text) for i in ids  # type: ignore[union-attr]
            if i in labels and labels[i].ok]
    auto_gain = _gain(auto) if len(auto) == len(ids) else None
    csmith = {i for i in ids if packages.get(i, "").startswith("csmith")}

    def row(name: str, evals: int, order_of: dict[str, list[int]], backup: bool = True) -> OfflineRow:
        pick = _pick if backup else _first
        chosen = {i: pick(sweep[i].oz, list(sweep[i].sizes), order_of[i]) for i in ids}  # type: ignore[arg-type]
        pairs = [(chosen[i].text, sweep[i].oz.text) for i in ids]  # type: ignore[union-attr]
        pkg = [(chosen[i].text, sweep[i].oz.text) for i in ids if i not in csmith]  # type: ignore[union-attr]
        g = _gain(pairs)
        return OfflineRow(name, evals, len(ids), g, _gain(pkg) if pkg else None,
                          g / auto_gain if auto_gain else None)

    every = list(range(len(pool)))
    out: list[OfflineRow] = [row("coreset@1", 2, {i: rest[:1] for i in ids}, backup=False),
                             row("rank@1", 2, {i: sorted(rest, key=lambda j, s=scores[i]: (-s[j], j))[:1] for i in ids},
                                 backup=False),
                             # model@1's answer when its greedy first token is a stored list: the
                             # likeliest choice, `Oz` included (then -Oz ships: nothing to gain)
                             row("likeliest choice (Oz included)", 2,
                                 {i: sorted(every, key=lambda j, s=scores[i]: (-s[j], j))[:1] for i in ids},
                                 backup=False)]
    risky: dict[float, dict[str, list[int]]] = {}
    if losses is not None:
        from clang_llm.model.risk import risk_order

        most = max([1, *ks])
        for t in temperatures:
            risky[t] = {i: risk_order(scores[i], losses, t, min(most, len(rest)), rest) for i in ids}
            out.append(row(f"rank@1 risk t={t:g}", 2, {i: o[:1] for i, o in risky[t].items()}, backup=False))
    for k in ks:
        k = min(k, len(rest))
        out.append(row(f"coreset@{k}+backup", k + 1, {i: rest[:k] for i in ids}))
        ranked = {i: sorted(rest, key=lambda j, s=scores[i]: (-s[j], j))[:k] for i in ids}
        out.append(row(f"rank@{k}+backup", k + 1, ranked))
        for t, orders in risky.items():
            out.append(row(f"rank@{k}+backup risk t={t:g}", k + 1, {i: o[:k] for i, o in orders.items()}))
    out.append(row(f"pool@{len(rest)}+backup (every stored list)", len(rest) + 1, {i: rest for i in ids}))
    if auto_gain is not None:
        out.append(OfflineRow("autotuner (labels)", 0, len(ids), auto_gain,
                              _gain([(labels[i].best.text, labels[i].oz.text) for i in ids  # type: ignore[union-attr]
                                     if i not in csmith]) if len(csmith) < len(ids) else None, 1.0))
    return out


def effort_rows(sweep: dict[str, PoolSizes], pool: list[str], scores: dict[str, list[float]],
                packages: dict[str, str], losses: np.ndarray, temperature: float,
                levels: dict[str, EffortLevel]) -> list[OfflineRow]:
    """Each effort level as the compile runs it (one round, no written lists): the level's `rank`
    lists in minimum-risk order, tried one after another while `risk.stop_rule` says the rest is
    worth it (`run_in_order`, the compile's own), the best not larger than -Oz kept. evals: the
    baseline, the lists tried, and the verified rerun of a winner."""
    from clang_llm.model.risk import module_weights, risk_order, shipped_log_ratio, stop_rule
    from clang_llm.optimizer.in_order import run_in_order

    ids = sorted(i for i, r in sweep.items() if r.status == "ok" and r.oz and i in scores)
    rest = [i for i, p in enumerate(pool) if p != "Oz"]
    csmith = {i for i in ids if packages.get(i, "").startswith("csmith")}
    out = []
    for name, level in levels.items():
        pairs, pkg, evals = [], [], 0
        for mid in ids:
            oz, sizes = sweep[mid].oz, list(sweep[mid].sizes)
            assert oz is not None

            def logratio(j: int, oz: ObjectSize = oz, sizes: list[ObjectSize | None] = sizes) -> float:
                z = sizes[j]
                return 0.0 if z is None else shipped_log_ratio(z.text, z.alloc, oz.text, oz.alloc)

            weights = module_weights(losses, scores[mid], temperature)
            order = risk_order(scores[mid], losses, temperature, level.rank, rest, weights)
            go_on = stop_rule(weights, losses, order, level.stop, logratio)
            tried = run_in_order(order, lambda j: j, 1, go_on)
            chosen = _pick(oz, sizes, tried)
            evals += 1 + len(tried) + (chosen is not oz)
            pairs.append((chosen.text, oz.text))
            if mid not in csmith:
                pkg.append((chosen.text, oz.text))
        out.append(OfflineRow(name, evals / max(1, len(ids)), len(ids), _gain(pairs), _gain(pkg) if pkg else None,
                              None))
    return out


def model_scores(model_dir: Path, modules: dict[str, Path], threads: int = 1) -> dict[str, list[float]]:
    """The model's ranking of its pool for each module's round-1 prompt (as the loop builds it)."""
    from clang_llm import ir
    from clang_llm.config import Settings
    from clang_llm.model import load_model
    from clang_llm.optimizer.formats import get_format
    from clang_llm.optimizer.prompt import prompt_budgets
    from clang_llm.progress import make_progress

    model = load_model(model_dir, intra_threads=threads)
    fmt = get_format(model.card.prompt_format)
    first, _ = prompt_budgets(model.context_length, Settings().max_new_tokens, model.card.prompt_budget)
    out: dict[str, list[float]] = {}
    bar, _ = make_progress("ranking")
    with bar:
        task = bar.add_task("ranking", total=len(modules), info="")
        for mid, bc in sorted(modules.items()):
            prompt = fmt.build_prompt(str(ir.parse(bc)), first, model.count_tokens)
            out[mid] = model.rank_pool(prompt)
            bar.advance(task)
    return out


def format_rows(rows: list[OfflineRow]) -> str:
    def pct(x: float | None) -> str:
        return "–" if x is None else f"{x * 100:+.2f} %"

    lines = ["| method | evals/module | modules | .text gm | packages (no csmith) | % of autotuner |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        share = "–" if r.share_of_autotuner is None else f"{r.share_of_autotuner * 100:.1f} %"
        evals = f"{r.evals:g}" if r.evals == int(r.evals) else f"{r.evals:.2f}"
        lines.append(f"| {r.method} | {evals if r.evals else '–'} | {r.modules} | {pct(r.text_gain)} "
                     f"| {pct(r.package_gain)} | {share} |")
    return "\n".join(lines) + "\n"
