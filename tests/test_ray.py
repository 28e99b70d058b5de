"""`autotune` on a local Ray instance started by the test gives the labels the process pool gives."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clang_llm.records import read_labels
from clang_llm.train.autotune import autotune, load_tasks
from clang_llm.train.configs import AutotuneConfig

pytest.importorskip("ray")

SNIPPETS = {
    "a": "int f(int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i] * 3; return s; }\n"
         "int g(int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i] * 3; return s; }\n",
    "b": "int pick(int i) { switch (i) { case 0: return 11; case 1: return 23; case 2: return 5; case 3: return 8;"
         " case 4: return 2; default: return -1; } }\n",
    "c": "struct n { int v; struct n *next; };\nint sum(struct n *p) { int s = 0; for (; p; p = p->next) "
         "s += p->v; return s; }\n",
}
# Timings differ run to run; everything else in a label must not.
VOLATILE = {"wall_s", "cpu_s"}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ray-rec")
    for name, code in SNIPPETS.items():
        (d / f"{name}.c").write_text(code)
        subprocess.run(["clang-22", "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", f"{name}.c",
                        "-o", f"{name}.bc"], cwd=d, check=True)
        (d / f"{name}.json").write_text(json.dumps({"source": str(d / f"{name}.c"), "lang": "c",
                                                   "codegen_flags": [], "split": "train", "package": name}))
    return d


def _labels(path: Path) -> dict[str, dict[str, object]]:
    recs = [x.to_json() for x in read_labels(path)]
    return {str(r["id"]): {k: v for k, v in r.items() if k not in VOLATILE} for r in recs}


def test_ray_labels_equal_the_process_pool(recordings: Path, tmp_path: Path) -> None:
    tasks = load_tasks(recordings=recordings)
    # share_winners off: a label must not depend on which module finished first
    cfg = AutotuneConfig(budget=10, timeout=60, fast=True, share_winners=False)
    pool_out, ray_out = tmp_path / "pool.jsonl.gz", tmp_path / "ray.jsonl.gz"
    autotune(tasks, pool_out, cfg, jobs=2, progress=False)
    summary = autotune(tasks, ray_out, cfg, progress=False, ray_address="local")
    assert summary.done_now == len(SNIPPETS) and summary.errors == 0
    pool, ray = _labels(pool_out), _labels(ray_out)
    assert set(pool) == set(ray) and len(pool) == len(SNIPPETS)
    assert ray == pool
    # Resumption is the results file's, whatever ran it: nothing left to do.
    again = autotune(tasks, ray_out, cfg, progress=False, ray_address="local")
    assert again.done_now == 0 and again.already_done == len(SNIPPETS)
