#!/usr/bin/env python3
"""Screen what the wrapper may ship for miscompiles: every stored list of the pool the shipped
model ranks (the defaults try 15 of them per TU), every list that is the top-1 label of at least
10 modules in the v2 labels, and 8 other winning lists drawn at random (seed 0).

    .venv/bin/python scripts/screen-v2.py --out data/screen-report-v2-pool.json --jobs 2

Each list is built into the same csmith programs and run; the output is compared with the -O0
build's, and a failing list is bisected to the implicated passes (`clang-llm-tool screen`).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from clang_llm.records import read_labels
from clang_llm.train.configs import ScreenConfig
from clang_llm.train.screen import run_screen

ROOT = Path(__file__).resolve().parents[1]


def lists_to_screen(pool: Path, labels: list[Path], min_modules: int = 10, sample: int = 8) -> list[str]:
    """Pool lists first, then the frequent top-1 labels, then the random sample of the rest."""
    out = list(json.loads(pool.read_text())["pool"])
    wins: Counter[str] = Counter()
    for path in labels:
        for r in read_labels(path):
            if r.improved and r.best is not None:
                wins[r.best.pass_list] += 1
    frequent = [s for s, n in wins.most_common() if n >= min_modules]
    out += [s for s in frequent if s not in out]
    rest = sorted(s for s in wins if s not in out)
    out += random.Random(0).sample(rest, min(sample, len(rest)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=Path, default=ROOT / "data/pool-v2.json")
    ap.add_argument("--labels", type=Path, action="append",
                    default=None, help="label files (default: the v2 held-out and train labels)")
    ap.add_argument("--programs", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "data/screen-report-v2-pool.json")
    args = ap.parse_args()
    labels = args.labels or [ROOT / "data/labels-v2.jsonl.gz", ROOT / "data/labels-v2-train.jsonl.gz"]
    pipes = lists_to_screen(args.pool, labels)
    rep = run_screen(None, pipes, ScreenConfig(programs=args.programs, pipelines=len(pipes), jobs=args.jobs), args.out)
    print(f"{len(pipes)} lists, {len(rep.programs)} programs, {rep.checks} checks, "
          f"{len(rep.failures)} wrong results, implicated passes {rep.implicated_passes or 'none'}, "
          f"{rep.seconds:.0f} s")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
