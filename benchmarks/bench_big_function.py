#!/usr/bin/env python3
"""One huge function (finding 8 of the trust issue): wall time of `clang-llm -c` at the defaults
against plain `clang-22 -Oz -c` on the same TU, in the same run, with the TU's time budget.

    .venv/bin/python benchmarks/bench_big_function.py --lines 20000 --json benchmarks/big-function.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def source(lines: int) -> str:
    """A function of `lines` statements that no pass can fold away (each depends on the input)."""
    body = []
    for i in range(lines):
        op = ("+", "^", "-", "|")[i % 4]
        body.append(f"  x = (x {op} a[{i % 64}]) * {i % 7 + 3} + (x >> {i % 5 + 1});")
        if i % 10 == 9:
            body.append(f"  if (x & {1 << (i % 12)}) a[{(i * 7) % 64}] += x;")
    return "unsigned big(unsigned *a, unsigned x) {\n" + "\n".join(body) + "\n  return x;\n}\n"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env=env)
    return time.monotonic() - t0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        src = work / "big.c"
        src.write_text(source(args.lines))
        clang_s = timed(["clang-22", "-Oz", "-c", str(src), "-o", str(work / "ref.o")])
        env = {**os.environ, "CLANG_LLM_DIR": str(work / "state"), "CLANG_LLM_DAEMON": "0"}
        llm_s = timed([str(bin_dir / "clang-llm"), "-c", str(src), "-o", str(work / "out.o")], env=env)
        stats = json.loads(subprocess.run([str(bin_dir / "clang-llm-tool"), "stats", "--json"], env=env,
                                          capture_output=True, text=True, check=True).stdout)
    result = {"lines": args.lines, "clang_oz_s": round(clang_s, 2), "clang_llm_s": round(llm_s, 2),
              "ratio": round(llm_s / clang_s, 2), "outcome": stats["reasons"], "sizes": stats["sizes"]}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
