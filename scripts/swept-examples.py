"""The examples of the modules a pool sweep measured, and only those: every stored list's real
size is behind their ranking targets (the other modules' targets come from the label's top 8,
which on csmith name lists that barely help and miss the ones that do).

    .venv/bin/python scripts/swept-examples.py data/train-examples-v3.jsonl.xz \\
        data/pool-sweep-v2-train.jsonl.gz data/train-examples-v4.jsonl.xz
"""

from __future__ import annotations

import gzip
import json
import lzma
import sys
from collections import Counter
from pathlib import Path


def main(examples: Path, sweep: Path, out: Path) -> None:
    with gzip.open(sweep, "rt") as f:
        swept = {json.loads(line)["id"] for line in f if line.strip()}
    kinds: Counter[str] = Counter()
    tmp = out.with_name(out.name + ".tmp")
    with lzma.open(examples, "rt") as src, lzma.open(tmp, "wt") as dst:
        dst.write(next(src))  # the pool record
        for line in src:
            ex = json.loads(line)
            if ex["id"] in swept:
                dst.write(line)
                kinds[ex["kind"]] += 1
    tmp.replace(out)
    print(json.dumps({"swept_modules": len(swept), "examples": sum(kinds.values()), **kinds}))


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:4]))
