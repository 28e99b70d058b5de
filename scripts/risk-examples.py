"""Training examples whose first token learns what every stored list costs on the module
(`clang_llm.train.examples.risk_losses`), for every labelled train module a pool sweep measured.

The round-1 prompts come from an examples file that already holds them (its `direct` rows, built
from the modules' IR by `clang-llm-tool train --labels --corpus`), so no corpus is needed:

    .venv/bin/python scripts/risk-examples.py --examples data/train-examples-v3.jsonl.xz \\
        --labels data/labels-v2-train.jsonl.gz --tokenizer clang_llm/weights/default/tokenizer.json \\
        --sweep data/pool-sweep-v2-train.jsonl.gz --sweep data/pool-sweep-v2-train-ext.jsonl.gz \\
        --out data/train-examples-v5.jsonl.xz
"""

from __future__ import annotations

import argparse
import json
import lzma
from collections import Counter
from dataclasses import replace
from pathlib import Path

from tokenizers import Tokenizer

from clang_llm.atomic import atomic_path
from clang_llm.records import open_text, read_labels
from clang_llm.train.examples import write_examples_v2
from clang_llm.train.pool_sweep import read_sweeps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=Path, required=True, help="examples holding the round-1 prompts and the pool")
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--sweep", type=Path, action="append", required=True, help="train pool sweep (repeatable)")
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    prompts: dict[str, str] = {}
    with open_text(a.examples) as f:
        pool: list[str] = json.loads(next(f))["pool"]
        for line in f:
            ex = json.loads(line)
            if ex.get("kind") == "direct":
                prompts[ex["id"]] = ex["prompt"]
    swept = read_sweeps(a.sweep, pool)
    ok = {i for i, r in swept.items() if r.status == "ok"}
    labels = [replace(r, split="train") for r in read_labels(a.labels) if r.id in ok and r.id in prompts]
    tok = Tokenizer.from_file(str(a.tokenizer))
    plain = a.out.with_suffix("") if a.out.suffix == ".xz" else a.out
    tmp_plain = plain.with_name(plain.name + ".work")
    n = write_examples_v2(labels, prompts, pool, tmp_plain, lambda t: len(tok.encode(t).ids), a.context,
                          a.max_new_tokens, seed=a.seed, sweep=swept, risk=True)
    kinds: Counter[str] = Counter()
    with open(tmp_plain) as src, atomic_path(a.out) as tmp:
        opener = lzma.open if a.out.suffix == ".xz" else open
        with opener(tmp, "wt") as dst:
            for line in src:
                dst.write(line)
                kinds[json.loads(line).get("kind", "pool")] += 1
    tmp_plain.unlink()
    print(json.dumps({"swept_modules": len(ok), "labelled": len(labels), "examples": n, **kinds}))


if __name__ == "__main__":
    main()
