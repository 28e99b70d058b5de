"""Summaries, the markdown table, JSON and plots of an evaluation.

Improvement = 1 - method/oz (positive = smaller than clang -Oz), per module; "geomean" is
1 - geomean(method/oz). Both IR instruction counts and object `.text` bytes are reported: they
do not move together (docs/data-card.md), and `.text` is what the user ships.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clang_llm.eval.methods import parse_method
from clang_llm.records import EvalRecord, LabelRecord, ListResult, ModelStats, ObjectSize
from clang_llm.train.dataset import improvement_stats

if TYPE_CHECKING:
    from clang_llm.eval.run import EvalResults


def _gm(ratios: list[float]) -> float | None:
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else None


def _ratio(new: float | None, old: float | None) -> float | None:
    if new is None or old is None:
        return None
    if old > 0 and new > 0:
        return new / old
    return 1.0 if new == old else None


def _pairs(recs: list[EvalRecord]) -> list[tuple[ListResult, ObjectSize]]:
    return [(r.chosen, r.oz) for r in recs if r.chosen is not None and r.oz is not None]


def summarize(methods: list[str], records: list[EvalRecord], labels: list[LabelRecord],
              unavailable: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per method (in the given order): improvements, shares, cost, model metrics."""
    unavailable = unavailable or {}
    by_method: dict[str, list[EvalRecord]] = defaultdict(list)
    for r in records:
        by_method[r.method].append(r)
    lab = {r.id: r for r in labels if r.ok}
    rows = []
    for name in methods:
        spec = parse_method(name)
        row: dict[str, Any] = {"method": name, "family": spec.family, "kind": spec.kind, "n_param": spec.n,
                               "backup": spec.backup}
        if name in unavailable:
            rows.append({**row, "available": False, "reason": unavailable[name]})
            continue
        recs = [r for r in by_method.get(name, []) if r.status == "ok"]
        errs = [r for r in by_method.get(name, []) if r.status != "ok"]
        row.update(available=True, modules=len(recs), errors=len(errs))
        pairs = _pairs(recs)
        text = improvement_stats((c.text, oz.text) for c, oz in pairs)
        count = improvement_stats((c.count, oz.count or 0) for c, oz in pairs if c.count is not None)
        alloc = improvement_stats((c.alloc, oz.alloc) for c, oz in pairs)
        row.update(text=text, instructions=count, alloc=alloc)
        n = len(recs)
        row["evals_per_module"] = sum(r.evals or 0 for r in recs) / n if n else None
        row["wall_s_per_module"] = sum(r.wall_s or 0.0 for r in recs) / n if n else None
        row["refused"] = sum(1 for r in recs if r.refused)
        # Share of the autotuner's improvement, on the modules that have labels.
        mine, theirs = [], []
        for r in recs:
            lb = lab.get(r.module)
            if lb is None or lb.best is None or lb.oz is None or r.chosen is None or r.oz is None:
                continue
            a, b = _ratio(r.chosen.text, r.oz.text), _ratio(lb.best.text, lb.oz.text)
            if a is not None and b is not None:
                mine.append(a)
                theirs.append(b)
        gm_mine, gm_theirs = _gm(mine), _gm(theirs)
        row["labelled_modules"] = len(mine)
        row["autotuner_text_gain"] = None if gm_theirs is None else 1 - gm_theirs
        row["pct_of_autotuner"] = (None if gm_mine is None or gm_theirs is None or gm_theirs >= 1
                                   else (1 - gm_mine) / (1 - gm_theirs))
        if spec.is_model:
            m = sum((r.model for r in recs if r.model is not None), ModelStats())
            row["model"] = {
                "candidates": int(m.candidates),
                "validity_rate": m.valid / m.candidates if m.candidates else None,
                "pred_exact_rate": m.pred_exact / m.pred_n if m.pred_n else None,
                "pred_mae": m.pred_abs_err / m.pred_n if m.pred_n else None,
                "ir_parse_rate": m.ir_parsed / m.ir_n if m.ir_n else None,
                "bleu": m.bleu_sum / m.bleu_n if m.bleu_n else None,
            }
        rows.append(row)
    auto = _autotuner_row({r.module for r in records if r.status == "ok"}, lab)
    if auto is not None:
        rows.append(auto)
    return rows


def _autotuner_row(modules: set[str], lab: dict[str, LabelRecord]) -> dict[str, Any] | None:
    """The labels' search on the evaluated modules, as one more row: the reference every method's
    "% of autotuner" is a share of, drawn as its own point on the plots (x: its median
    evaluations per module)."""
    recs = [lab[m] for m in sorted(modules) if m in lab]
    if not recs:
        return None
    evals = sorted(r.evals or 0 for r in recs)
    med = evals[len(evals) // 2]
    pairs = [(r.best, r.oz) for r in recs if r.best is not None and r.oz is not None]
    return {"method": "autotuner (labels)", "family": "autotuner", "kind": "labels", "n_param": med,
            "backup": True, "available": True, "modules": len(recs), "errors": 0,
            "text": improvement_stats((b.text, oz.text) for b, oz in pairs),
            "instructions": improvement_stats((b.count, oz.count or 0) for b, oz in pairs if b.count is not None),
            "alloc": improvement_stats((b.alloc, oz.alloc) for b, oz in pairs),
            "evals_per_module": float(med), "wall_s_per_module": sum(r.wall_s for r in recs) / len(recs),
            "labelled_modules": len(recs), "autotuner_text_gain": None, "pct_of_autotuner": 1.0}


def _p(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "–"
    return f"{x * 100:+.2f}%" if signed else f"{x * 100:.1f}%"


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "–" if x is None else format(x, fmt)


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """The headline table: improvement over -Oz (instructions and .text), shares, cost, model metrics."""
    head = ["method", "modules", "instr gm", "instr mean", ".text gm", ".text mean", "improved", "equal",
            "regressed", "% of autotuner", "evals/module", "wall s/module", "valid", "pred exact", "pred MAE",
            "IR parses", "BLEU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary:
        if not row.get("available", True):
            reason = row.get("reason", "").replace("|", "/")[:100]
            lines.append(f"| {row['method']} | unavailable: {reason} |" + " – |" * (len(head) - 2))
            continue
        t, c, n = row["text"], row["instructions"], max(1, row["modules"])
        m = row.get("model") or {}
        cells = [
            row["method"], str(row["modules"]), _p(c["geomean"]), _p(c["mean"]), _p(t["geomean"]), _p(t["mean"]),
            _p(t["improved"] / n, False), _p(t["equal"] / n, False), _p(t["regressed"] / n, False),
            _p(row["pct_of_autotuner"], False), _f(row["evals_per_module"], ".1f"),
            _f(row["wall_s_per_module"], ".2f"), _p(m.get("validity_rate"), False),
            _p(m.get("pred_exact_rate"), False), _f(m.get("pred_mae"), ".1f"), _p(m.get("ir_parse_rate"), False),
            _f(m.get("bleu"), ".3f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    refused = [f"{row['method']} {row['refused']}" for row in summary if row.get("refused")]
    if refused:  # the screened pick's verified rerun failed (an opt timeout, say), so -Oz shipped
        lines.append("\nModules where the screened pick failed its verified rerun and -Oz shipped: "
                     + ", ".join(refused) + ".")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Two PNGs: .text improvement vs k (per family) and vs opt evaluations per module
    (feedback rounds and samples compared at equal opt-evaluation budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fams: dict[str, list[dict[str, Any]]] = defaultdict(list)
    oz_line = None
    for row in summary:
        if not row.get("available", True) or row["text"]["geomean"] is None:
            continue
        if row["kind"] == "oz":
            oz_line = row
            continue
        fams[row["family"]].append(row)
    out: list[Path] = []
    for fname, xkey, xlabel, kinds in (
        ("improvement-vs-k.png", "n_param", "k (samples / lists / budget B / rounds R)", None),
        ("improvement-vs-evals.png", "evals_per_module", "opt evaluations per module (incl. -Oz)", None),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for fam, rows in sorted(fams.items()):
            if kinds and rows[0]["kind"] not in kinds:
                continue
            rows = sorted(rows, key=lambda r: r[xkey] or 0)
            xs = [r[xkey] for r in rows]
            ys = [r["text"]["geomean"] * 100 for r in rows]
            if fam == "autotuner":  # one reference point: the labels' search
                ax.plot(xs, ys, marker="*", markersize=13, ls="none", color="black", label="autotuner (labels)")
                continue
            ax.plot(xs, ys, marker="o", label=fam)
        ax.axhline(0.0, color="grey", lw=0.8, ls="--", label="-Oz" if oz_line else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(".text improvement over -Oz, geomean (%)")
        if any(r[xkey] and r[xkey] > 0 for rows in fams.values() for r in rows):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out


PACKAGES = "packages, no csmith"  # the per-package table's column over every non-csmith module


def package_table(methods: list[str], records: list[EvalRecord]) -> str:
    """`.text` geomean improvement per method and source package: whether a gain is broad or comes
    from one package (csmith programs, for instance, are nearly half of a split)."""
    gains: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        ratio = _ratio(r.chosen.text, r.oz.text) if r.status == "ok" and r.chosen and r.oz else None
        if ratio is not None:
            gains[(r.method, r.package or "?")].append(ratio)
    packages = sorted({p for _, p in gains})
    if any(p.startswith("csmith") for p in packages) and not all(p.startswith("csmith") for p in packages):
        for (m, p), ratios in list(gains.items()):  # the package bar: csmith excluded
            if not p.startswith("csmith"):
                gains[(m, PACKAGES)].extend(ratios)
        packages.append(PACKAGES)
    rows = [m for m in methods if any((m, p) in gains for p in packages)]
    if not rows:
        return ""
    n = {p: max(len(gains[(m, p)]) for m in rows) for p in packages}
    lines = ["| method | " + " | ".join(f"{p} ({n[p]})" for p in packages) + " |",
             "|" + "---|" * (len(packages) + 1)]
    for m in rows:
        gms = [_gm(gains[(m, p)]) for p in packages]
        lines.append(f"| {m} | " + " | ".join(_p(None if g is None else 1 - g) for g in gms) + " |")
    return "\n".join(lines) + "\n"


def _stable(methods: list[str], records: list[EvalRecord]) -> list[dict[str, Any]]:
    """Records in method, then module order: a rerun from the cache rewrites the same file."""
    rank = {m: i for i, m in enumerate(methods)}
    return [r.to_json() for r in sorted(records, key=lambda r: (rank.get(r.method, len(rank)), r.method, r.module))]


def write_outputs(results: EvalResults, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """results.json, table.md and the plots under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    table = markdown_table(results.summary)
    by_package = package_table(results.methods, results.records)
    if by_package:
        table += "\n`.text` geomean improvement over -Oz by source package (modules):\n\n" + by_package
    paths["table"] = out_dir / "table.md"
    paths["table"].write_text(table)
    paths["json"] = out_dir / "results.json"
    paths["json"].write_text(json.dumps({"methods": results.methods, "summary": results.summary,
                                         "unavailable": results.unavailable, "setup": results.setup,
                                         "records": _stable(results.methods, results.records)}, indent=1,
                                        default=str))
    if plots:
        for p in plot(results.summary, out_dir):
            paths[p.stem] = p
    return paths
