#!/usr/bin/env python3
"""One `clang-llm-tool serve` against a model loaded in every compile: lz4 with `make -j8`.

Why: with `make -jN` each in-process compile loads the model and runs it on its own threads,
N at once on the same cores; one server loads it once and batches concurrent greedy requests.
Measured per TU that asked the model: model time (loading it, or connecting to the server,
plus generating, as the wrapper's records time it), and the build's wall time, each variant
against `clang-22` in the same run. Variants: in-process, serve with batching (--max-batch 8)
and serve without it (--max-batch 1), so the batching's own share shows. The objects of all
variants must be identical (same model, same settings).

    python benchmarks/bench_serve.py                 # 3 reps, -j8, JSON to ./bench_serve.json
    python benchmarks/bench_serve.py --samples 4 --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARBALL = REPO / "tests" / "projects" / "lz4_1.9.4.orig.tar.gz"
TOP = "lz4-1.9.4"
TOOL = [sys.executable, "-c", "from clang_llm.cli import app; app()"]


def _build(tree: Path, cc: str, env: dict[str, str], jobs: int) -> float:
    subprocess.run(["make", "-C", "programs", "clean"], cwd=tree, env=env, check=True, capture_output=True)
    for o in tree.rglob("*.o"):
        o.unlink()
    state = env.get("CLANG_LLM_DIR")
    if state:
        shutil.rmtree(state, ignore_errors=True)  # cold: no decision cache
    t0 = time.perf_counter()
    p = subprocess.run(["make", f"-j{jobs}", "-C", "programs", "lz4", f"CC={cc}", "CFLAGS=-Oz"], cwd=tree, env=env,
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        sys.exit(f"build failed with CC={cc}:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return time.perf_counter() - t0


def _model_seconds(state: Path) -> list[float]:
    """Per TU that asked the model: load (or connect) + generation seconds, from its record."""
    from clang_llm.db import Database

    db = Database(state)
    try:
        recs = [r.to_json() for r in db.all_records()]
    finally:
        db.close()
    return [float(r["timing"].get("model_load_s", 0)) + float(r["timing"].get("model_s", 0))
            for r in recs if r.get("model_calls")]


def _serve(max_batch: int) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen([*TOOL, "serve", "--port", "0", "--max-batch", str(max_batch)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    m = re.search(r"listening on (\S+)", p.stdout.readline())
    if not m:
        sys.exit("serve did not start")
    return p, m.group(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--samples", type=int, default=1, help="--llm-samples of every wrapper build")
    ap.add_argument("--json", type=Path, default=Path("bench_serve.json"))
    args = ap.parse_args(argv)
    llm = str(Path(sys.executable).parent / "clang-llm")
    clang = shutil.which("clang-22")
    if not Path(llm).is_file() or not clang:
        sys.exit("need clang-llm beside this Python, and clang-22")
    servers = {b: _serve(b) for b in (8, 1)}
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
            base = Path(tmp)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("CLANG_LLM_") and k not in ("MAKEFLAGS", "MFLAGS", "CFLAGS", "CC")}
            env.update(LC_ALL="C", XDG_CONFIG_HOME=str(base / "xdg"))
            variants = {"clang-22": (clang, {}),
                        "in-process": (llm, {"CLANG_LLM_SAMPLES": str(args.samples)}),
                        "serve (batching)": (llm, {"CLANG_LLM_SAMPLES": str(args.samples),
                                                   "CLANG_LLM_BACKEND": servers[8][1]}),
                        "serve (no batching)": (llm, {"CLANG_LLM_SAMPLES": str(args.samples),
                                                      "CLANG_LLM_BACKEND": servers[1][1]})}
            trees = {}
            for i, name in enumerate(variants):
                with tarfile.open(TARBALL) as tf:
                    tf.extractall(base / f"v{i}", filter="tar")
                trees[name] = base / f"v{i}" / TOP
            envs = {name: {**env, **extra, **({"CLANG_LLM_DIR": str(base / f"state{i}")} if cc == llm else {})}
                    for i, (name, (cc, extra)) in enumerate(variants.items())}
            for name, (cc, _) in variants.items():  # warm-up
                _build(trees[name], cc, envs[name], args.jobs)
            for _ in range(args.reps):
                for name, (cc, _) in variants.items():
                    wall = _build(trees[name], cc, envs[name], args.jobs)
                    r = results.setdefault(name, {"wall_s": [], "model_s_per_tu": []})
                    r["wall_s"].append(wall)
                    if cc == llm:
                        r["model_s_per_tu"].append(statistics.mean(_model_seconds(Path(envs[name]["CLANG_LLM_DIR"]))))
                    print(f"  {name:22s} {wall:6.2f}s", file=sys.stderr)
            objs = sorted(str(p.relative_to(trees["in-process"])) for p in trees["in-process"].rglob("*.o"))
            identical = {name: all((trees[name] / o).read_bytes() == (trees["in-process"] / o).read_bytes()
                                   for o in objs) for name in variants if name != "clang-22"}
    finally:
        server_stats = {}
        for b, (p, url) in servers.items():
            try:
                import httpx

                server_stats[b] = httpx.get(f"{url}/clang-llm/v1/stats", timeout=5).json()
            except Exception:
                server_stats[b] = {}
            p.terminate()
            p.wait(timeout=20)
    med = {n: statistics.median(r["wall_s"]) for n, r in results.items()}
    model = {n: statistics.median(r["model_s_per_tu"]) for n, r in results.items() if r["model_s_per_tu"]}
    out = {
        "project": "lz4 1.9.4", "make": f"make -j{args.jobs} -C programs lz4 CFLAGS=-Oz", "samples": args.samples,
        "reps": args.reps, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "builds": {n: {"wall_s": [round(t, 3) for t in r["wall_s"]], "median_s": round(med[n], 3),
                       "ratio_vs_clang": round(med[n] / med["clang-22"], 3),
                       **({"model_s_per_tu": round(model[n], 4),
                           "model_time_vs_in_process": round(model[n] / model["in-process"], 3)} if n in model else {})}
                   for n, r in results.items()},
        "objects_identical_to_in_process": identical,
        "server_stats": {f"max_batch_{b}": s for b, s in server_stats.items()},
    }
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"lz4 1.9.4, make -j{args.jobs}, --llm-samples={args.samples}, {args.reps} reps, {os.cpu_count()} CPUs\n")
    print("| build | median wall (s) | vs clang-22 | model s per TU | model time vs in-process |")
    print("|---|---|---|---|---|")
    for n, b in out["builds"].items():
        print(f"| {n} | {b['median_s']:.2f} | {b['ratio_vs_clang']:.2f}x | {b.get('model_s_per_tu', '-')} | "
              f"{b.get('model_time_vs_in_process', '-')} |")
    print(f"\nobjects identical to in-process: {identical}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
