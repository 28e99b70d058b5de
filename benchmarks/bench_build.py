#!/usr/bin/env python3
"""Build-time cost of the wrapper: lz4 built with `CC=clang-llm` against `CC=clang-22`, same flags.

Why: every user pays the wrapper on every build. Four builds of lz4, interleaved repetitions
(the machine may be shared), each as a ratio against `clang-22` in the same run: `--llm-off`
(cold), the shipped defaults with the model (cold: no decision cache), the defaults again with a
warm decision cache (`make clean && make`); then gzip's `./configure` with each compiler. The
per-TU time of the default build is split into front end, -Oz baseline, model and candidates
(from the decision records). Objects are checked on the way: never larger than clang's -Oz.

    python benchmarks/bench_build.py                # 3 reps, -j2, JSON to ./bench_build.json
    python benchmarks/bench_build.py --reps 5 --jobs 4 --json /tmp/b.json --no-configure
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


def _fresh_state(v: Variant) -> None:
    """A cold build: no decision cache, no toolchain facts (the state dir is removed)."""
    state = v.env.get("CLANG_LLM_DIR")
    if state:
        shutil.rmtree(state, ignore_errors=True)


def _tu_split(state: Path) -> dict[str, float]:
    """Seconds per TU, by step, summed over the decision records of one build."""
    from clang_llm.db import Database

    db = Database(state)
    try:
        recs = [r.to_json() for r in db.all_records()]
    finally:
        db.close()
    keys = ("frontend_s", "oz_baseline_s", "model_s", "candidates_s", "codegen_s", "total_s")
    tot = {k: sum(float((r.get("timing") or {}).get(k, 0.0)) for r in recs) for k in keys}
    n = len(recs) or 1
    return {"tus": len(recs), **{k: round(v / n, 4) for k, v in tot.items()}}


def _configure(cc: str, env: dict[str, str], base: Path) -> float:
    """gzip 1.12's ./configure (about 200 compile probes), timed, in a fresh tree."""
    tarball = REPO / "tests" / "projects" / "gzip_1.12.orig.tar.xz"
    dest = Path(tempfile.mkdtemp(dir=base))
    with tarfile.open(tarball) as tf:
        tf.extractall(dest, filter="tar")
    t0 = time.perf_counter()
    proc = subprocess.run(["./configure", f"CC={cc}"], cwd=dest / "gzip-1.12", env=env, capture_output=True,
                          text=True, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"configure with CC={cc} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    shutil.rmtree(dest, ignore_errors=True)
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per variant (after a warm-up)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cflags", default="-Oz", help="CFLAGS for every build (default: -Oz)")
    ap.add_argument("--json", type=Path, default=Path("bench_build.json"), help="where to write the results")
    ap.add_argument("--no-configure", action="store_true", help="skip gzip's ./configure timing")
    ap.add_argument("--clang-llm", default=None, help="the clang-llm launcher (default: beside this Python, or PATH)")
    args = ap.parse_args(argv)

    llm = args.clang_llm or next((str(p) for p in [Path(sys.executable).parent / "clang-llm"] if p.is_file()),
                                 None) or shutil.which("clang-llm")
    clang = shutil.which("clang-22")
    if not llm or not clang or not shutil.which("make"):
        sys.exit("need clang-llm, clang-22 and make")

    configure: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        base = Path(tmp)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CLANG_LLM_") and k not in ("MAKEFLAGS", "MFLAGS", "CFLAGS", "CC")}
        env["LC_ALL"] = "C"
        # (name, compiler, extra environment, cold: state removed before every build)
        specs = [("clang-22", clang, {}, False), ("clang-llm --llm-off", llm, {"CLANG_LLM_OFF": "1"}, True),
                 ("clang-llm (defaults)", llm, {}, True), ("clang-llm (warm cache)", llm, {}, False)]
        variants = []
        for i, (name, cc, extra, _) in enumerate(specs):
            dest = base / f"v{i}"
            dest.mkdir()
            with tarfile.open(TARBALL) as tf:
                tf.extractall(dest, filter="tar")
            venv = {**env, **extra}
            if cc == llm:
                venv["CLANG_LLM_DIR"] = str(base / f"state{i}")
                venv["XDG_CONFIG_HOME"] = str(base / "xdg")
            variants.append(Variant(name, cc, dest / TOP, venv))
        cold = {v.name: spec[3] for v, spec in zip(variants, specs, strict=True)}

        for v in variants:  # warm-up: page cache, Python bytecode, the clang binary (and the cache)
            _build(v, args.jobs, args.cflags)
        for _ in range(args.reps):  # interleaved, so load changes hit every variant alike
            for v in variants:
                if cold[v.name]:
                    _fresh_state(v)
                v.times.append(_build(v, args.jobs, args.cflags))
                print(f"  {v.name:24s} {v.times[-1]:7.2f}s", file=sys.stderr)
        split = _tu_split(Path(variants[2].env["CLANG_LLM_DIR"]))

        ref = variants[0]
        ref_sizes = _sizes(ref.tree)
        per_variant = {}
        for v in variants[1:]:
            sizes = _sizes(v.tree)
            per_variant[v.name] = {
                "identical_objects": sum((ref.tree / o).read_bytes() == (v.tree / o).read_bytes() for o in ref_sizes
                                         if (v.tree / o).exists()),
                "larger_than_oz": [o for o, s in sizes.items() if o in ref_sizes and (
                    s["text"] > ref_sizes[o]["text"] or s["alloc"] > ref_sizes[o]["alloc"])],
                "text": sum(s["text"] for s in sizes.values()), "alloc": sum(s["alloc"] for s in sizes.values()),
            }
        if not args.no_configure:
            configure["clang-22"] = _configure(clang, env, base)
            cenv = {**env, "CLANG_LLM_DIR": str(base / "state-configure"), "XDG_CONFIG_HOME": str(base / "xdg")}
            configure["clang-llm"] = _configure(llm, cenv, base)

    med = {v.name: statistics.median(v.times) for v in variants}
    ref_text, ref_alloc = sum(s["text"] for s in ref_sizes.values()), sum(s["alloc"] for s in ref_sizes.values())
    result = {
        "project": "lz4 1.9.4", "make": ["make", f"-j{args.jobs}", *MAKE_TARGET, "CC=…", f"CFLAGS={args.cflags}"],
        "reps": args.reps,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                 "clang": _version([clang, "--version"]), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "builds": {v.name: {"times_s": [round(t, 3) for t in v.times], "median_s": round(med[v.name], 3),
                            "ratio_vs_clang": round(med[v.name] / med["clang-22"], 3),
                            **per_variant.get(v.name, {"text": ref_text, "alloc": ref_alloc})}
                   for v in variants},
        "per_tu_seconds_defaults": split,
        "configure_s": {k: round(t, 2) for k, t in configure.items()},
        "configure_ratio": round(configure["clang-llm"] / configure["clang-22"], 3) if configure else None,
    }
    args.json.write_text(json.dumps(result, indent=1) + "\n")

    print(f"lz4 1.9.4, `make -j{args.jobs} {' '.join(MAKE_TARGET)} CFLAGS={args.cflags}`, "
          f"{args.reps} reps after a warm-up, load average {result['host']['load_avg_1m']}\n")
    print("| build | wall times (s) | median (s) | ratio | .text vs -Oz | identical objects |")
    print("|---|---|---|---|---|---|")
    for v in variants:
        b = result["builds"][v.name]
        ident = b.get("identical_objects", len(ref_sizes))
        print(f"| CC={v.name} | {', '.join(f'{t:.2f}' for t in v.times)} | {med[v.name]:.2f} | "
              f"{b['ratio_vs_clang']:.2f}x | {b['text'] / ref_text:.4f} | {ident}/{len(ref_sizes)} |")
    print(f"\nper TU with the defaults (mean of {split['tus']}): front end {split['frontend_s']:.3f} s, "
          f"-Oz baseline {split['oz_baseline_s']:.3f} s, model {split['model_s']:.3f} s, candidates "
          f"{split['candidates_s']:.3f} s (codegen, in both: {split['codegen_s']:.3f} s), "
          f"total {split['total_s']:.3f} s")
    if configure:
        print(f"gzip ./configure: clang-22 {configure['clang-22']:.1f} s, clang-llm {configure['clang-llm']:.1f} s "
              f"({result['configure_ratio']:.2f}x)")
    print(f"JSON: {args.json}")
    larger = [n for n, b in per_variant.items() if b["larger_than_oz"]]
    return 1 if larger else 0


if __name__ == "__main__":
    raise SystemExit(main())
