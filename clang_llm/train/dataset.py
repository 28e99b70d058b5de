"""`dataset info`: what the corpus holds and what the autotuner found on it.

Why: before training or quoting results one wants, in one place, how many modules and packages
each split has, how many are labelled, and the headroom the labels show over -Oz -- in IR
instructions and in object `.text` bytes, which do not move together (docs/data-card.md).

Improvement of a module = 1 - best/oz (positive = smaller than -Oz). "geomean" is
1 - geomean(best/oz) over modules where both are positive.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from clang_llm.records import LabelRecord, open_text, read_labels


def _read_index(path: Path) -> list[dict[str, Any]]:
    out = []
    with open_text(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                if "id" in d:
                    out.append(d)
    return out


def improvement_stats(pairs: Iterable[tuple[float, float]]) -> dict[str, Any]:
    """Geomean and mean of 1 - new/old, and the shares improved / equal / regressed."""
    ratios, n, better, equal, worse = [], 0, 0, 0, 0
    for new, old in pairs:
        n += 1
        if new < old:
            better += 1
        elif new == old:
            equal += 1
        else:
            worse += 1
        if old > 0 and new > 0:
            ratios.append(new / old)
        elif old == new:
            ratios.append(1.0)
    if not ratios:
        return {"n": n, "geomean": None, "mean": None, "improved": better, "equal": equal,
                "regressed": worse, "share_improved": None}
    gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    return {
        "n": n, "geomean": 1 - gm, "mean": 1 - sum(ratios) / len(ratios),
        "improved": better, "equal": equal, "regressed": worse, "share_improved": better / n if n else None,
    }


def label_stats(labels: list[LabelRecord]) -> dict[str, Any]:
    """The autotuner's numbers over a set of label records."""
    ok = [(r.best, r.oz) for r in labels if r.ok and r.best and r.oz]
    status = Counter(r.status for r in labels)
    reasons = Counter(f"{r.status}:{r.reason}" for r in labels if r.status != "ok")
    lens = [len(b.pass_list.split()) for b, oz in ok if b.text < oz.text]
    winners = Counter(b.pass_list for b, oz in ok if b.text < oz.text)
    return {
        "labelled": len(labels), "status": dict(status), "not_ok_reasons": dict(reasons),
        "text": improvement_stats((b.text, oz.text) for b, oz in ok),
        "alloc": improvement_stats((b.alloc, oz.alloc) for b, oz in ok),
        "instructions": improvement_stats((b.count or 0, oz.count or 0) for b, oz in ok),
        "evals": sum(r.evals or 0 for r in labels),
        "cpu_s": round(sum(r.cpu_s for r in labels), 1),
        "wall_s": round(sum(r.wall_s for r in labels), 1),
        "mean_winner_length": sum(lens) / len(lens) if lens else None,
        "top_winners": winners.most_common(10),
    }


def dataset_info(labels_path: Path | str | None, index_path: Path | str | None) -> dict[str, Any]:
    """Counts per split (modules, packages) from the index, and the labels' improvements over -Oz.

    Either path may be None or missing; the corresponding part is then left out.
    """
    info: dict[str, Any] = {}
    index: list[dict[str, Any]] = []
    split_of: dict[str, str] = {}
    if index_path and Path(index_path).exists():
        index = _read_index(Path(index_path))
        per_split: dict[str, dict[str, Any]] = defaultdict(lambda: {"modules": 0, "packages": set()})
        for d in index:
            s = d.get("split", "")
            split_of[d["id"]] = s
            per_split[s]["modules"] += 1
            per_split[s]["packages"].add(d.get("package", ""))
        packages = sorted({d.get("package", "") for d in index})
        info["index"] = {
            "path": str(index_path), "modules": len(index), "packages": len(packages), "package_names": packages,
            "splits": {s: {"modules": v["modules"], "packages": len(v["packages"]),
                           "package_names": sorted(v["packages"])} for s, v in sorted(per_split.items())},
        }
    if labels_path and Path(labels_path).exists():
        labels = read_labels(Path(labels_path))
        stale = 0
        if index:  # the index is the authority: on splits, and on which modules exist at all
            stale = sum(1 for r in labels if r.id not in split_of)
            labels = [replace(r, split=split_of[r.id]) for r in labels if r.id in split_of]
        by_split: dict[str, list[LabelRecord]] = defaultdict(list)
        for r in labels:
            by_split[r.split].append(r)
        info["labels"] = {"path": str(labels_path), **label_stats(labels),
                          "splits": {s: label_stats(v) for s, v in sorted(by_split.items())}}
        schema = Counter(r.schema_version for r in labels)
        info["labels"]["schema_versions"] = {str(k): v for k, v in schema.items()}
        info["labels"]["stale_records_ignored"] = stale
        if index:
            info["labels"]["coverage"] = len([r for r in labels if r.id in split_of]) / len(index)
    return info


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.2f}%"


def format_info(info: dict[str, Any]) -> str:
    """Human-readable summary of `dataset_info`."""
    lines: list[str] = []
    if "index" in info:
        ix = info["index"]
        lines.append(f"index {ix['path']}: {ix['modules']} modules from {ix['packages']} packages")
        for s, v in ix["splits"].items():
            names = ", ".join(v["package_names"][:12]) + (" …" if len(v["package_names"]) > 12 else "")
            lines.append(f"  {s or '(none)':<10} {v['modules']:>6} modules  {v['packages']:>3} packages: {names}")
    if "labels" in info:
        lb = info["labels"]
        cov = f" ({lb['coverage'] * 100:.1f}% of the index)" if "coverage" in lb else ""
        lines.append(f"labels {lb['path']}: {lb['labelled']} modules{cov}; status {lb['status']}")
        lines.append(f"  cpu {lb['cpu_s'] / 3600:.2f} h, {lb['evals']} opt evaluations")
        for s, v in [("all", lb), *lb["splits"].items()]:
            t, c = v["text"], v["instructions"]
            share = "n/a" if t["share_improved"] is None else f"{t['share_improved'] * 100:.1f}%"
            lines.append(f"  {s or '(none)':<10} .text gm {_pct(t['geomean'])} mean {_pct(t['mean'])} "
                         f"improved {share} | instr gm {_pct(c['geomean'])} mean {_pct(c['mean'])} (n={t['n']})")
        if lb["top_winners"]:
            lines.append("  top winners: " + "; ".join(f"{s} ×{n}" for s, n in lb["top_winners"][:5]))
    return "\n".join(lines) if lines else "nothing found (no index, no labels)"


def verify_labels(labels_path: Path | str, index_path: Path | str, modules_dir: Path | None = None,
                  split: str = "test", sample: int = 50, seed: int = 0) -> dict[str, Any]:
    """Rebuild -Oz and the labelled best list for a seeded sample of one split's modules and compare
    instruction counts, `.text` and allocated bytes with what the labels recorded."""
    import random
    import tempfile

    from clang_llm import ir
    from clang_llm.build.tubuilder import TUBuilder
    from clang_llm.passes import OZ, parse_pass_list
    from clang_llm.toolchain import Toolchain
    from clang_llm.train.autotune import load_index

    tasks = {t.id: t for t in load_index(Path(index_path), modules_dir, [split])}
    recs = [r for r in read_labels(Path(labels_path)) if r.id in tasks and r.ok]
    recs.sort(key=lambda r: r.id)
    random.Random(seed).shuffle(recs)
    tc = Toolchain.discover()
    rows, same = [], 0
    for rec in recs[:sample]:
        task = tasks[rec.id]
        assert rec.best is not None and rec.oz is not None
        with tempfile.TemporaryDirectory() as tmp:
            b = TUBuilder(tc.compiler(task.lang == "c++"), tc.opt, list(task.codegen_flags), task.lang or "c",
                          Path(task.bc), Path(tmp), 60)
            b.count_before = ir.count_file(Path(task.bc))
            got = {}
            for name, pl in (("oz", OZ), ("best", parse_pass_list(rec.best.pass_list))):
                f = b.evaluate(pl, verify_each=name != "oz")
                got[name] = {"count": f.count_after, "text": f.sizes.text if f.sizes else None,
                             "alloc": f.sizes.alloc if f.sizes else None}
        want = {k: {"count": v.count, "text": v.text, "alloc": v.alloc}
                for k, v in (("oz", rec.oz), ("best", rec.best))}
        ok = got == want
        same += ok
        rows.append({"id": rec.id, "package": rec.package, "match": ok, "recorded": want, "rebuilt": got})
    return {"split": split, "checked": len(rows), "identical": same, "rows": rows}
