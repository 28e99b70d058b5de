#!/usr/bin/env python3
"""Build-time cost of the wrapper: lz4 built with `CC=clang-llm` against `CC=clang-22`, same flags.

Why: clang-llm runs clang three times per TU (IR, -Oz reference, codegen) plus Python start-up,
and every user pays that on every build. This measures it on a real project, warm caches,
interleaved repetitions (the machine may be shared), and checks on the way that the shipped
objects are no larger than clang's -Oz (without a model they should be byte-identical).

    python benchmarks/bench_build.py                # 3 reps, -j2, JSON to ./bench_build.json
    python benchmarks/bench_build.py --reps 5 --jobs 4 --json /tmp/b.json --with-model
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARBALL = REPO / "tests" / "projects" / "lz4_1.9.4.orig.tar.gz"
TOP = "lz4-1.9.4"
# `-C programs lz4` compiles all 9 library and program TUs one by one (`-c x.c -o x.o`); the
# top-level `make` would compile the library with one multi-source `-c`, which the wrapper
# passes through untouched and so would not measure it.
MAKE_TARGET = ["-C", "programs", "lz4"]


@dataclass
class Variant:
    name: str
    cc: str
    tree: Path
    env: dict[str, str]
    times: list[float] = field(default_factory=list)


def _sizes(tree: Path) -> dict[str, dict[str, int]]:
    """.text (executable allocated sections) and all allocated bytes, per object."""
    from clang_llm.objsize import object_sizes

    return {str(p.relative_to(tree)): vars(object_sizes(p)) for p in sorted(tree.rglob("*.o"))}


def _build(v: Variant, jobs: int, cflags: str) -> float:
    """A clean build, timed (the clean is not)."""
    subprocess.run(["make", "-C", "programs", "clean"], cwd=v.tree, env=v.env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for o in v.tree.rglob("*.o"):  # `clean` in programs/ leaves lib/*.o behind
        o.unlink()
    cmd = ["make", f"-j{jobs}", *MAKE_TARGET, f"CC={v.cc}", f"CFLAGS={cflags}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=v.tree, env=v.env, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{v.name}: build failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return dt


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per compiler (after a warm-up)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cflags", default="-Oz", help="CFLAGS for both builds (default: -Oz)")
    ap.add_argument("--json", type=Path, default=Path("bench_build.json"), help="where to write the results")
    ap.add_argument("--with-model", action="store_true",
                    help="let clang-llm use its default model (default: CLANG_LLM_OFF=1, the -Oz path only)")
    ap.add_argument("--clang-llm", default=None, help="the clang-llm launcher (default: beside this Python, or PATH)")
    args = ap.parse_args(argv)

    llm = args.clang_llm or next((str(p) for p in [Path(sys.executable).parent / "clang-llm"] if p.is_file()),
                                 None) or shutil.which("clang-llm")
    clang = shutil.which("clang-22")
    if not llm or not clang or not shutil.which("make"):
        sys.exit("need clang-llm, clang-22 and make")

    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        base = Path(tmp)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CLANG_LLM_") and k not in ("MAKEFLAGS", "MFLAGS", "CFLAGS", "CC")}
        env["LC_ALL"] = "C"
        variants = []
        for name, cc in (("clang-22", clang), ("clang-llm", llm)):
            dest = base / name
            dest.mkdir()
            with tarfile.open(TARBALL) as tf:
                tf.extractall(dest, filter="tar")
            venv = dict(env)
            if name == "clang-llm":
                venv["CLANG_LLM_DIR"] = str(base / "state")
                venv["XDG_CONFIG_HOME"] = str(base / "xdg")
                if not args.with_model:
                    venv["CLANG_LLM_OFF"] = "1"
            variants.append(Variant(name, cc, dest / TOP, venv))

        for v in variants:  # warm-up: page cache, Python bytecode, the clang binary
            _build(v, args.jobs, args.cflags)
        for _ in range(args.reps):  # interleaved, so load changes hit both alike
            for v in variants:
                v.times.append(_build(v, args.jobs, args.cflags))
                print(f"  {v.name:10s} {v.times[-1]:7.2f}s", file=sys.stderr)

        ref, ours = variants
        ref_sizes, our_sizes = _sizes(ref.tree), _sizes(ours.tree)
        identical = sum((ref.tree / o).read_bytes() == (ours.tree / o).read_bytes() for o in ref_sizes
                        if (ours.tree / o).exists())
        larger = [o for o, s in our_sizes.items()
                  if o in ref_sizes and (s["text"] > ref_sizes[o]["text"] or s["alloc"] > ref_sizes[o]["alloc"])]

    med = {v.name: statistics.median(v.times) for v in variants}
    tot = {name: {k: sum(s[k] for s in sizes.values()) for k in ("text", "alloc")}
           for name, sizes in (("clang-22", ref_sizes), ("clang-llm", our_sizes))}
    result = {
        "project": "lz4 1.9.4", "make": ["make", f"-j{args.jobs}", *MAKE_TARGET, "CC=…", f"CFLAGS={args.cflags}"],
        "reps": args.reps, "model": "default" if args.with_model else "off (CLANG_LLM_OFF=1)",
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                 "clang": _version([clang, "--version"])},
        "builds": {v.name: {"times_s": [round(t, 3) for t in v.times], "median_s": round(med[v.name], 3),
                            "min_s": round(min(v.times), 3),
                            "stdev_s": round(statistics.stdev(v.times), 3) if len(v.times) > 1 else 0.0}
                   for v in variants},
        "time_ratio_llm_over_clang": round(med["clang-llm"] / med["clang-22"], 3),
        "objects": len(our_sizes), "identical_objects": identical, "larger_than_oz": larger,
        "size_totals": tot,
        "text_ratio_llm_over_oz": round(tot["clang-llm"]["text"] / tot["clang-22"]["text"], 4),
        "alloc_ratio_llm_over_oz": round(tot["clang-llm"]["alloc"] / tot["clang-22"]["alloc"], 4),
    }
    args.json.write_text(json.dumps(result, indent=1) + "\n")

    print(f"lz4 1.9.4, `make -j{args.jobs} {' '.join(MAKE_TARGET)} CFLAGS={args.cflags}`, "
          f"{args.reps} reps after a warm-up, model: {result['model']}\n")
    print("| build | wall times (s) | median (s) | ratio |")
    print("|---|---|---|---|")
    for v in variants:
        ratio = med[v.name] / med["clang-22"]
        print(f"| CC={v.name} | {', '.join(f'{t:.2f}' for t in v.times)} | {med[v.name]:.2f} | {ratio:.2f}x |")
    print(f"\n| objects ({len(our_sizes)}) | .text bytes | alloc bytes |")
    print("|---|---|---|")
    for name in ("clang-22", "clang-llm"):
        print(f"| {name} | {tot[name]['text']} | {tot[name]['alloc']} |")
    print(f"| clang-llm / -Oz | {result['text_ratio_llm_over_oz']:.4f} | {result['alloc_ratio_llm_over_oz']:.4f} |")
    print(f"\nidentical objects: {identical}/{len(ref_sizes)}; larger than -Oz: {larger or 'none'}")
    print(f"JSON: {args.json}")
    return 1 if larger else 0


if __name__ == "__main__":
    raise SystemExit(main())
