#!/usr/bin/env python3
"""What the verified rerun of a list extending -Oz must run: the whole list, or only its own passes.

Why: the list that ships is re-run with `opt -verify-each`. Run whole from the source IR, the
verifier also runs after every pass of clang's own -Oz pipeline -- which `clang -Oz -c` runs with
no verifier between passes -- and the rerun costs several screening runs. `TUBuilder.verified`
runs only the list's own passes, verified, on the baseline's output. This compares the two on
corpus modules: the verdicts (does each pass the verifier), the objects (byte for byte), and the
seconds each took.

    python benchmarks/bench_verify.py --index build/heldout-v2/index.jsonl.gz --split validation \
        --lists 4 --json benchmarks/verify.json

Each module gets `--lists` stored lists of the pool that extend -Oz, taken in turn (module i gets
lists i*k .. i*k+k-1 of them), so every such list is met about equally often and no model is
needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True, help="corpus index (modules/<id>.bc beside it)")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--pool", type=Path, default=REPO / "data" / "pool-v2.json")
    ap.add_argument("--lists", type=int, default=4, help="lists per module")
    ap.add_argument("--modules", type=int, default=0, help="at most this many modules (0: all)")
    ap.add_argument("--json", type=Path, default=Path("verify.json"))
    args = ap.parse_args(argv)

    from clang_llm import ir
    from clang_llm.build.tubuilder import TUBuilder
    from clang_llm.passes import OZ, parse_pass_list
    from clang_llm.progress import make_progress
    from clang_llm.toolchain import Toolchain
    from clang_llm.train.autotune import load_tasks

    pool = json.loads(args.pool.read_text())
    lists = [t for t in (pool["pool"] if isinstance(pool, dict) else pool) if t.startswith("Oz ")]
    rows = load_tasks(args.index, None, None, [args.split], args.modules or None, 0)
    tc = Toolchain.discover()
    out = {"modules": 0, "runs": 0, "agree": 0, "both_fail": 0, "only_whole_fails": [], "only_suffix_fails": [],
           "same_object": 0, "other_object_not_larger": 0, "other_object_larger": [], "whole_s": 0.0,
           "suffix_s": 0.0, "screen_s": 0.0}
    bar, _ = make_progress("verify")
    with bar, tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        task = bar.add_task("verify", total=len(rows), info="")
        for i, row in enumerate(rows):
            bar.advance(task)
            bc = Path(row.bc)
            work = Path(tmp) / row.id
            work.mkdir()
            b = TUBuilder(tc.compiler(row.lang == "c++"), tc.opt, list(row.codegen_flags), row.lang or "c", bc, work,
                          60.0)
            try:
                b.count_before = ir.count_file(bc)
            except Exception:  # noqa: BLE001  (a module the reader refuses is no comparison)
                continue
            oz = b.evaluate(OZ, verify_each=False)
            if not oz.valid or oz.sizes is None:
                continue
            out["modules"] += 1
            for j in range(args.lists):
                text = lists[(i * args.lists + j) % len(lists)]
                pl = parse_pass_list(text)
                screened = b.evaluate_after(oz, pl)
                whole = b.evaluate(pl, verify_each=True)
                suffix = b.evaluate_after(oz, pl, verify_each=True)
                out["runs"] += 1
                out["screen_s"] += screened.seconds
                out["whole_s"] += whole.seconds
                out["suffix_s"] += suffix.seconds
                where = f"{row.id}: {text}"
                if whole.valid != suffix.valid:
                    out["only_whole_fails" if suffix.valid else "only_suffix_fails"].append(where)
                    continue
                out["agree"] += 1
                if not whole.valid:
                    out["both_fail"] += 1
                    continue
                assert whole.object_path is not None and suffix.object_path is not None
                if whole.object_path.read_bytes() == suffix.object_path.read_bytes():
                    out["same_object"] += 1
                elif suffix.sizes is not None and suffix.sizes.not_larger_than(oz.sizes):
                    out["other_object_not_larger"] += 1
                else:
                    out["other_object_larger"].append(where)
    for k in ("whole_s", "suffix_s", "screen_s"):
        out[k] = round(out[k], 2)
    out["suffix_vs_whole"] = round(out["suffix_s"] / out["whole_s"], 3) if out["whole_s"] else None
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
