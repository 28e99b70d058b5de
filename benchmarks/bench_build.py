#!/usr/bin/env python3
"""Build-time cost and gain of the wrapper on real projects, against `clang-22` in the same run.

Why: every user pays the wrapper on every build. Per project (lz4, gzip, jsoncpp: the vendored
tarballs in tests/projects), interleaved repetitions of: `CC=clang-22`; `CC=clang-llm` with
`--llm-off` (cold state); each chosen effort level, cold (state removed before every build: no
decision cache, no toolchain facts); the default level again keeping its state (warm decision
cache); and, given `--before PATH` (a checkout of older clang-llm code, run through this
Python), that code's defaults, cold. Each build is a ratio against `clang-22` in the same run;
every object is checked against clang's -Oz (never larger; byte-identical without a model),
and `--same-as` names a pair of variants whose objects are compared byte for byte.

    python benchmarks/bench_build.py --project lz4 --levels 1,2,4 --reps 2 --json /tmp/b.json
    python benchmarks/bench_build.py --project lz4 --project gzip --project jsoncpp \\
        --before /tmp/old --same-as before,effort-4 --json benchmarks/build-effort.json

lz4: `make -C programs lz4` (all 9 library and program TUs one by one). gzip: `./configure
CC=clang-22` once per tree (untimed), then `make` with the variant's CC. jsoncpp: CMake with the
variant's C++ compiler (configured once per tree, untimed), the static library and its tests'
programs built. CFLAGS/CXXFLAGS `-Oz` everywhere.
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
PROJECTS = {"lz4": ("lz4_1.9.4.orig.tar.gz", "lz4-1.9.4"), "gzip": ("gzip_1.12.orig.tar.xz", "gzip-1.12"),
            "jsoncpp": ("libjsoncpp_1.9.5.orig.tar.gz", "jsoncpp-1.9.5")}


@dataclass
class Variant:
    name: str
    cc: str  # the C compiler (lz4, gzip) or C++ compiler (jsoncpp)
    tree: Path
    env: dict[str, str]
    cold: bool
    times: list[float] = field(default_factory=list)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{what} failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def _prepare(project: str, v: Variant, clang: str) -> None:
    """Configure the tree once, untimed (gzip's ./configure with clang-22; jsoncpp's CMake with
    the variant's compiler, which CMake fixes at configure time)."""
    if project == "gzip":
        _run(["./configure", "CC=clang-22", "CFLAGS=-Oz"], v.tree, v.env, f"{v.name}: configure")
    elif project == "jsoncpp":
        _run(["cmake", "-S", ".", "-B", "build", "-G", "Unix Makefiles", f"-DCMAKE_CXX_COMPILER={v.cc}",
              "-DCMAKE_BUILD_TYPE=", "-DCMAKE_CXX_FLAGS=-Oz", "-DBUILD_SHARED_LIBS=OFF", "-DBUILD_STATIC_LIBS=ON",
              "-DBUILD_OBJECT_LIBS=OFF", "-DJSONCPP_WITH_POST_BUILD_UNITTEST=OFF",
              "-DJSONCPP_WITH_PKGCONFIG_SUPPORT=OFF", "-DJSONCPP_WITH_CMAKE_PACKAGE=OFF"],
             v.tree, v.env, f"{v.name}: cmake")


def _build(project: str, v: Variant, jobs: int) -> float:
    """A clean build, timed (the clean is not)."""
    if project == "lz4":
        subprocess.run(["make", "-C", "programs", "clean"], cwd=v.tree, env=v.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for o in v.tree.rglob("*.o"):  # `clean` in programs/ leaves lib/*.o behind
            o.unlink()
        cmd = ["make", f"-j{jobs}", "-C", "programs", "lz4", f"CC={v.cc}", "CFLAGS=-Oz"]
    elif project == "gzip":
        subprocess.run(["make", "clean"], cwd=v.tree, env=v.env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        cmd = ["make", f"-j{jobs}", f"CC={v.cc}", "CFLAGS=-Oz"]
    else:
        subprocess.run(["cmake", "--build", "build", "--target", "clean"], cwd=v.tree, env=v.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cmd = ["cmake", "--build", "build", f"-j{jobs}"]
    t0 = time.perf_counter()
    _run(cmd, v.tree, v.env, f"{v.name}: build")
    return time.perf_counter() - t0


def _objects(tree: Path) -> dict[str, Path]:
    return {str(p.relative_to(tree)): p for p in sorted(tree.rglob("*.o"))}


def _sizes(tree: Path) -> dict[str, dict[str, int]]:
    """.text (executable allocated sections) and all allocated bytes, per object."""
    from clang_llm.objsize import object_sizes

    return {name: vars(object_sizes(p)) for name, p in _objects(tree).items()}


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


def _costs(state: Path) -> dict[str, float | int | None]:
    """Where one build's seconds went, from its decision records: sums over the TUs compiled
    (`clang-llm-tool stats --json`'s cost totals) and opt runs per TU."""
    from clang_llm.db import Database

    db = Database(state)
    try:
        return db.cost_totals()
    finally:
        db.close()


def bench_project(project: str, args: argparse.Namespace, llm: str, clang: str, base: Path) -> dict:
    tarball, top = PROJECTS[project]
    cxx = project == "jsoncpp"
    llm_cc = str(Path(llm).with_name("clang++-llm")) if cxx else llm
    plain = shutil.which("clang++-22" if cxx else "clang-22") or clang
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CLANG_LLM_") and k not in ("MAKEFLAGS", "MFLAGS", "CFLAGS", "CXXFLAGS", "CC", "CXX")}
    env["LC_ALL"] = "C"
    specs: list[tuple[str, str, dict[str, str], bool]] = [("clang-22", plain, {}, False),
                                                          ("llm-off", llm_cc, {"CLANG_LLM_OFF": "1"}, True)]
    specs += [(f"effort-{n}", llm_cc, {"CLANG_LLM_EFFORT": str(n)}, True) for n in args.levels]
    if args.before:
        specs.append(("before", llm_cc, {"PYTHONPATH": str(Path(args.before).resolve())}, True))
    if not args.no_warm:
        specs.append(("warm", llm_cc, {}, False))
    variants = []
    for i, (name, cc, extra, cold) in enumerate(specs):
        dest = base / project / f"v{i}"
        dest.mkdir(parents=True)
        with tarfile.open(REPO / "tests" / "projects" / tarball) as tf:
            tf.extractall(dest, filter="tar")
        venv = {**env, **extra}
        if cc != plain:
            venv["CLANG_LLM_DIR"] = str(base / project / f"state{i}")
            venv["XDG_CONFIG_HOME"] = str(base / "xdg")
        v = Variant(name, cc, dest / top, venv, cold)
        _prepare(project, v, clang)
        variants.append(v)
    for v in variants:  # warm-up: page cache, the clang binary, Python bytecode; the warm variant's cache
        if not v.cold:
            _build(project, v, args.jobs)
    for _ in range(args.reps):  # interleaved, so load changes hit every variant alike
        for v in variants:
            if v.cold:
                _fresh_state(v)
            v.times.append(_build(project, v, args.jobs))
            print(f"  {project:8s} {v.name:10s} {v.times[-1]:8.2f}s", file=sys.stderr, flush=True)

    ref = variants[0]
    ref_sizes = _sizes(ref.tree)
    med_ref = statistics.median(ref.times)
    out: dict = {"tus": len(ref_sizes), "builds": {}}
    for v in variants:
        sizes = _sizes(v.tree)
        entry = {"times_s": [round(t, 3) for t in v.times], "median_s": round(statistics.median(v.times), 3),
                 "ratio_vs_clang": round(statistics.median(v.times) / med_ref, 3),
                 "text": sum(s["text"] for s in sizes.values()), "alloc": sum(s["alloc"] for s in sizes.values())}
        if v is not ref:
            entry["text_vs_clang"] = round(entry["text"] / max(1, sum(s["text"] for s in ref_sizes.values())), 5)
            entry["identical_objects"] = sum((ref.tree / o).read_bytes() == (v.tree / o).read_bytes()
                                             for o in ref_sizes if (v.tree / o).exists())
            entry["larger_than_oz"] = [o for o, s in sizes.items() if o in ref_sizes and (
                s["text"] > ref_sizes[o]["text"] or s["alloc"] > ref_sizes[o]["alloc"])]
            if "CLANG_LLM_DIR" in v.env and Path(v.env["CLANG_LLM_DIR"]).is_dir():
                entry["costs"] = _costs(Path(v.env["CLANG_LLM_DIR"]))
        out["builds"][v.name] = entry
    if args.same_as:
        a, b = args.same_as.split(",")
        va, vb = next((v for v in variants if v.name == a), None), next((v for v in variants if v.name == b), None)
        if va is not None and vb is not None:
            objs = _objects(va.tree)
            same = sum(p.read_bytes() == (vb.tree / o).read_bytes() for o, p in objs.items() if (vb.tree / o).exists())
            out["same_objects"] = {"pair": [a, b], "identical": same, "of": len(objs)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", action="append", choices=sorted(PROJECTS), help="repeatable (default: lz4)")
    ap.add_argument("--levels", default="", help="effort levels to build cold, comma-separated (default: the default)")
    ap.add_argument("--before", default="", help="a checkout of older clang-llm code: its defaults, cold")
    ap.add_argument("--same-as", default="", help="two variants whose objects are compared, e.g. before,effort-4")
    ap.add_argument("--reps", type=int, default=2, help="timed repetitions per variant")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-cache build")
    ap.add_argument("--json", type=Path, default=Path("bench_build.json"), help="where to write the results")
    ap.add_argument("--clang-llm", default=None, help="the clang-llm launcher (default: beside this Python, or PATH)")
    args = ap.parse_args(argv)
    from clang_llm.config import DEFAULT_EFFORT

    args.levels = [int(x) for x in args.levels.split(",") if x.strip()] or [DEFAULT_EFFORT]
    projects = args.project or ["lz4"]
    llm = args.clang_llm or next((str(p) for p in [Path(sys.executable).parent / "clang-llm"] if p.is_file()),
                                 None) or shutil.which("clang-llm")
    clang = shutil.which("clang-22")
    if not llm or not clang or not shutil.which("make"):
        sys.exit("need clang-llm, clang-22 and make")
    result: dict = {
        "levels": args.levels, "default_effort": DEFAULT_EFFORT, "reps": args.reps, "jobs": args.jobs,
        "before": args.before or None,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                 "clang": _version([clang, "--version"]), "load_avg_1m_start": round(os.getloadavg()[0], 2)},
        "projects": {}}
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        for project in projects:
            result["projects"][project] = bench_project(project, args, llm, clang, Path(tmp))
            args.json.write_text(json.dumps(result, indent=1) + "\n")  # each project as it finishes
    result["host"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(result))
    larger = [(p, n) for p, r in result["projects"].items() for n, b in r["builds"].items() if b.get("larger_than_oz")]
    return 1 if larger else 0


def format_table(result: dict) -> str:
    lines = ["| project | build | wall times (s) | median (s) | vs clang-22 | .text vs -Oz | identical to -Oz | "
             "opt runs/TU (mean, max) |", "|---|---|---|---|---|---|---|---|"]
    for project, r in result["projects"].items():
        for name, b in r["builds"].items():
            c = b.get("costs") or {}
            runs = f"{c['opt_evals_mean']}, {c['opt_evals_max']}" if c.get("opt_evals_mean") is not None else "-"
            times = ", ".join(f"{t:.2f}" for t in b["times_s"])
            lines.append(f"| {project} | {name} | {times} | {b['median_s']:.2f} | {b['ratio_vs_clang']:.2f}x | "
                         f"{b.get('text_vs_clang', 1.0):.4f} | "
                         f"{b.get('identical_objects', r['tus'])}/{r['tus']} | {runs} |")
        if "same_objects" in r:
            s = r["same_objects"]
            lines.append(f"| {project} | {' = '.join(s['pair'])} | | | | | {s['identical']}/{s['of']} identical | |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
