#!/usr/bin/env python3
"""Per-part gains of an evaluation: each method's `.text` and alloc geomean over -Oz on all
modules, on the package modules (csmith excluded) and on the csmith programs, from an `eval` run's results.json.
The issue's package bar is measured on the first part; the table's per-package columns do not
give it.

    .venv/bin/python scripts/part-gains.py docs/eval/results.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from clang_llm.train.dataset import improvement_stats

PARTS = ("all", "packages", "csmith")


def part_of(package: str) -> str:
    return "csmith" if package.startswith("csmith") else "packages"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="results.json written by clang-llm-tool eval")
    args = ap.parse_args()
    data = json.loads(args.results.read_text())
    pairs: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    methods: list[str] = []
    for rec in data["records"]:
        if rec["status"] != "ok" or not rec.get("chosen") or not rec.get("oz"):
            continue
        if rec["method"] not in methods:
            methods.append(rec["method"])
        for part in ("all", part_of(rec.get("package") or "")):
            for size in ("text", "alloc"):
                pairs[(rec["method"], part, size)].append((rec["chosen"][size], rec["oz"][size]))
    print("| method | " + " | ".join(f"{p}: modules | {p} .text gm | {p} alloc gm" for p in PARTS) + " |")
    print("|---|" + "---:|" * 3 * len(PARTS))
    for m in methods:
        cells = [m]
        for part in PARTS:
            text = improvement_stats(pairs[(m, part, "text")])
            alloc = improvement_stats(pairs[(m, part, "alloc")])
            cells += [str(text["n"]), _pct(text["geomean"]), _pct(alloc["geomean"])]
        print("| " + " | ".join(cells) + " |")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.2f} %"


if __name__ == "__main__":
    main()
