#!/usr/bin/env python3
"""What each kind of compiler call costs a configure run: gzip 1.12's `./configure` once with
`clang-22` and once with `clang-llm` (fresh state), each behind the same logging wrapper that
times every call; configure makes the same calls in the same order, so the calls pair up one to
one. Reported per kind (`-c`, `-E`, link, `--version`; failed ones apart): calls, seconds with
each compiler, extra milliseconds per call.

    .venv/bin/python benchmarks/bench_configure_calls.py [--clang-llm PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARBALL = REPO / "tests" / "projects" / "gzip_1.12.orig.tar.xz"
# The wrapper: wall time in microseconds, exit status, arguments; one line per call.
WRAPPER = """#!/bin/bash
s=$(date +%s%N)
{real} "$@"
rc=$?
echo "$(( ($(date +%s%N)-s)/1000 )) $rc $*" >> {log}
exit $rc
"""


def _kind(args: str, rc: str) -> str:
    words = args.split()
    kind = "-c" if "-c" in words else "-E" if "-E" in words else \
        "info" if {"--version", "-v", "-V", "-qversion"} & set(words) else "link"
    return kind + (" (failed)" if rc != "0" else "")


def _configure(real: str, work: Path, name: str, env: dict[str, str]) -> list[tuple[int, str, str]]:
    log = work / f"{name}.log"
    cc = work / f"cc-{name}"
    cc.write_text(WRAPPER.format(real=real, log=log))
    cc.chmod(0o755)
    tree = work / name
    tree.mkdir()
    with tarfile.open(TARBALL) as tf:
        tf.extractall(tree, filter="tar")
    subprocess.run(["./configure", f"CC={cc}"], cwd=tree / "gzip-1.12", env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    for line in log.read_text().splitlines():
        us, rc, *rest = line.split(" ", 2)
        rows.append((int(us), rc, rest[0] if rest else ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clang-llm", default=None, help="the clang-llm launcher (default: beside this Python)")
    args = ap.parse_args(argv)
    llm = args.clang_llm or str(Path(sys.executable).parent / "clang-llm")
    clang = shutil.which("clang-22")
    if not clang or not Path(llm).is_file():
        sys.exit("need clang-22 and clang-llm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLANG_LLM_") and k not in ("CC", "CFLAGS")}
    env["LC_ALL"] = "C"
    with tempfile.TemporaryDirectory(prefix="bench-configure-") as tmp:
        work = Path(tmp)
        ref = _configure(clang, work, "clang", env)
        ours = _configure(llm, work, "llm", {**env, "CLANG_LLM_DIR": str(work / "state"),
                                             "XDG_CONFIG_HOME": str(work / "xdg")})
    pairs = list(zip(ref, ours, strict=False))
    if len(ref) != len(ours) or any(_kind(x[2], "0") != _kind(y[2], "0") for x, y in pairs):
        diff = next((i for i, (x, y) in enumerate(pairs) if x[2] != y[2]), len(pairs))
        sys.exit(f"the two configure runs made different calls (first at #{diff}); cannot pair them")
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (t_ref, rc, a), (t_ours, _, _) in zip(ref, ours, strict=True):
        row = per[_kind(a, rc)]
        row[0], row[1], row[2] = row[0] + 1, row[1] + t_ref, row[2] + t_ours
    print("| calls | n | clang-22 (s) | clang-llm (s) | extra per call (ms) |")
    print("|---|---|---|---|---|")
    for kind, (n, a, b) in sorted(per.items()):
        print(f"| {kind} | {n} | {a / 1e6:.2f} | {b / 1e6:.2f} | {(b - a) / n / 1000:+.1f} |")
    tot_a, tot_b = sum(t for t, _, _ in ref), sum(t for t, _, _ in ours)
    print(f"| all | {len(ref)} | {tot_a / 1e6:.2f} | {tot_b / 1e6:.2f} | {(tot_b - tot_a) / len(ref) / 1000:+.1f} |")
    big = sorted(((t_o - t_r) / 1000, i) for i, ((t_r, _, _), (t_o, _, _)) in enumerate(zip(ref, ours, strict=True)))
    print("largest extra (ms, call number):", ", ".join(f"{ms:.0f} (#{i})" for ms, i in big[-6:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
