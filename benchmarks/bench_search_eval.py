#!/usr/bin/env python3
"""Search evaluations per CPU-second: the whole-list evaluation (opt -verify-each from the source
IR, then codegen, for every list) against `IncrementalEvaluator` (suffix on the cached prefix
output, no -verify-each, one codegen per distinct optimized module) — on the same modules and the
same lists, with every (text, alloc, count) compared.

The lists are the ones a real search asks for: the search runs once with the whole-list
evaluator (its sequence of lists is recorded), then the same sequence is replayed through the
incremental one. CPU time is this process's children (opt, clang) plus its own.

    .venv/bin/python benchmarks/bench_search_eval.py --index build/heldout/index.jsonl.gz \\
        --split validation --modules 200 --budget 25 --json benchmarks/search_eval.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

from clang_llm import ir
from clang_llm.build.tubuilder import TUBuilder
from clang_llm.passes import OZ, PassList
from clang_llm.progress import make_progress
from clang_llm.records import Finding
from clang_llm.toolchain import Toolchain
from clang_llm.train.autotune import ModuleTask, load_tasks, search_module
from clang_llm.train.configs import AutotuneConfig
from clang_llm.train.fasteval import IncrementalEvaluator

Key = tuple[int, int, int] | None


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _key(f: Finding) -> Key:
    if not f.valid or f.sizes is None:
        return None
    return (f.sizes.text, f.sizes.alloc, f.count_after or 0)


class _Recorder:
    """The whole-list evaluator, recording which lists the search asked for."""

    def __init__(self, builder: TUBuilder) -> None:
        self.builder, self.lists = builder, []  # type: list[PassList]
        self.keys: list[Key] = []

    def evaluate(self, pl: PassList, verify_each: bool = True) -> Finding:
        f = self.builder.evaluate(pl, verify_each=True)
        self.lists.append(pl)
        self.keys.append(_key(f))
        for p in (f.ir_path, f.object_path):
            if p is not None:
                p.unlink(missing_ok=True)
        return f


def _builder(task: ModuleTask, tc: Toolchain, work: Path) -> TUBuilder:
    b = TUBuilder(tc.compiler(task.lang == "c++"), tc.opt, list(task.codegen_flags), task.lang, Path(task.bc),
                  work, 60.0)
    b.count_before = ir.count_file(Path(task.bc))
    return b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--split", default="validation")
    ap.add_argument("--modules", type=int, default=200)
    ap.add_argument("--budget", type=int, default=25)
    ap.add_argument("--max-instructions", type=int, default=4000)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    tc = Toolchain.discover()
    tasks = [t for t in load_tasks(a.index, splits=[a.split])
             if t.instructions is None or t.instructions <= a.max_instructions][:a.modules]
    cfg = AutotuneConfig(budget=a.budget, verify_each=True)
    old_cpu = new_cpu = 0.0
    evals = same = memo_hits = codegens = 0
    differing: list[dict[str, object]] = []
    bar, _ = make_progress("search evals")
    with bar:
        tid = bar.add_task("modules", total=len(tasks), info="")
        for task in tasks:
            with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
                b = _builder(task, tc, Path(tmp))
                oz = b.evaluate(OZ, verify_each=False)
                if not oz.valid:
                    bar.advance(tid)
                    continue
                b.target_options()  # the toolchain facts are cached for both sides alike
                rec = _Recorder(b)
                c0 = _cpu()
                search_module(rec, oz, cfg, [], seed_text=task.id)
                old_cpu += _cpu() - c0
                fast = IncrementalEvaluator(b)
                c0 = _cpu()
                fast.seed(OZ, oz)  # the -Oz baseline both sides have already built
                new_keys = [_key(fast.evaluate(pl)) for pl in rec.lists]
                memo_hits += fast.memo_hits
                codegens += fast.codegen_runs
                new_cpu += _cpu() - c0
            evals += len(rec.lists)
            for pl, k_old, k_new in zip(rec.lists, rec.keys, new_keys, strict=True):
                if k_old == k_new:
                    same += 1
                else:
                    differing.append({"module": task.id, "list": str(pl), "whole": k_old, "incremental": k_new})
            bar.update(tid, advance=1, info=f"{evals} evals, speed-up {old_cpu / max(new_cpu, 1e-9):.2f}x")
    result = {
        "modules": len(tasks), "evaluations": evals, "budget": a.budget,
        "whole": {"cpu_s": round(old_cpu, 2), "evals_per_cpu_s": round(evals / old_cpu, 3) if old_cpu else None},
        "incremental": {"cpu_s": round(new_cpu, 2),
                        "evals_per_cpu_s": round(evals / new_cpu, 3) if new_cpu else None},
        "speedup": round(old_cpu / new_cpu, 3) if new_cpu else None,
        "incremental_codegens": codegens, "memo_hits": memo_hits,
        "identical": same, "differing": len(differing), "differing_examples": differing[:20],
    }
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
