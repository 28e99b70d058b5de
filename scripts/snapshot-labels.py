#!/usr/bin/env python3
"""Commit-ready snapshot of a labelling that is still running: the complete lines of its output
(a line being written is left for the next snapshot), gzip'd reproducibly (mtime 0), written
atomically; then the numbers the data card quotes (per split, and csmith against package modules).

    .venv/bin/python scripts/snapshot-labels.py /work/corpus/labels/labels-v2-train.jsonl \
        data/labels-v2-train.jsonl.gz
    .venv/bin/python scripts/snapshot-labels.py data/labels-v2.jsonl.gz data/labels-v2-train.jsonl.gz \
        --stats-only    # the numbers of committed label files together
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from clang_llm.atomic import atomic_path
from clang_llm.records import LabelRecord, open_text
from clang_llm.train.dataset import label_stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("live", type=Path, help="the labelling's --out file (JSONL, may be growing)")
    ap.add_argument("out", type=Path, help="the .jsonl.gz to write (with --stats-only: one more file to read)")
    ap.add_argument("--stats-only", action="store_true", help="write nothing, print the numbers of both files")
    args = ap.parse_args(argv)

    lines = _complete_lines(args.live)
    if args.stats_only:
        lines += _complete_lines(args.out)
    else:
        with atomic_path(args.out) as tmp, open(tmp, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            gz.write("".join(lines).encode())
    recs = [LabelRecord.from_json(json.loads(line)) for line in lines]
    evals = sorted(r.evals or 0 for r in recs if r.ok)
    by_group: dict[str, list[LabelRecord]] = defaultdict(list)
    for r in recs:
        source, split = "csmith" if r.package.startswith("csmith") else "packages", r.split or "?"
        for name in ("all", source, split, f"{split}:{source}"):
            by_group[name].append(r)
    print(f"{'read' if args.stats_only else args.out}: {len(recs)} records, {sum(r.ok for r in recs)} ok")
    if evals:
        deciles = statistics.quantiles(evals, n=10)
        print(f"evaluations per module: median {statistics.median(evals):g}, 10th percentile {deciles[0]:g}, "
              f"minimum {evals[0]}, maximum {evals[-1]}")
    for name, group in by_group.items():
        st = label_stats(group)
        t, a, i = st["text"], st["alloc"], st["instructions"]
        med = statistics.median([r.evals or 0 for r in group if r.ok] or [0])
        print(f"{name:20s} n={t['n']:5d}  evals median {med:g}  .text gm {t['geomean'] * 100:+.2f} %  "
              f"alloc gm {a['geomean'] * 100:+.2f} %  "
              f"instructions gm {i['geomean'] * 100:+.2f} %  improved {t['share_improved'] * 100:.1f} %  "
              f"cpu {st['cpu_s'] / 3600:.2f} h")
    return 0


def _complete_lines(path: Path) -> list[str]:
    """The file's complete JSON lines: a line still being written, or torn by a killed run (the
    labelling redoes that module), is left out."""
    lines: list[str] = []
    with open_text(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break  # being written
            try:
                json.loads(line)
            except ValueError:
                continue
            lines.append(line)
    return lines


if __name__ == "__main__":
    sys.exit(main())
