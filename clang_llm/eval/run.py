"""Run evaluation methods over modules: one worker task per module, results cached per (method, module).

Why per module: the -Oz baseline and clang's base pipelines are computed once and shared by
every method. Why a cache: evaluations take hours on real corpora; a stopped run resumes, and
adding a method later only runs that method. The cache key holds the method's fingerprint
(its coreset lists, broadcast lists, model settings), so a changed setup is re-run, not reused.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from clang_llm import ir
from clang_llm.build.tubuilder import TUBuilder
from clang_llm.eval.methods import (
    MethodSetup,
    MethodSpec,
    coreset_lists,
    fingerprint,
    load_model_cached,
    model_loop_class,
    parse_method,
    run_method,
)
from clang_llm.passes import OZ, PassList
from clang_llm.records import EvalRecord, Finding, ObjectSize, append_records, read_eval_records, read_labels, repair
from clang_llm.toolchain import Toolchain
from clang_llm.train.autotune import ModuleTask, shared_winners

CACHE_SCHEMA = 1


@dataclass
class EvalResults:
    """Per (method, module) records, the per-method summary rows, and unavailable methods."""

    methods: list[str]
    records: list[EvalRecord]
    summary: list[dict[str, Any]] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)


class ReplayingBuilder(TUBuilder):
    """A TUBuilder that runs each (pass list, verify) once per module and replays it after.

    Why: methods overlap (coreset@2 is coreset@8's first two lists, model@k's greedy answer is
    model@1's), and opt + codegen are deterministic, so a repeat would only cost time. A replay
    is a copy (a `Finding` is mutable; one method's copy cannot change another's), and its
    original seconds are added back to the method's wall time, so the table's time per module
    is what the method alone would take.
    """

    def __init__(self, compiler: Path, opt: Path, codegen_flags: list[str], lang: str, in_bc: Path, workdir: Path,
                 timeout: float) -> None:
        super().__init__(compiler, opt, codegen_flags, lang, in_bc, workdir, timeout)
        self._done: dict[tuple[str, bool], Finding] = {}
        self.replayed_seconds = 0.0

    def evaluate(self, pass_list: PassList, verify_each: bool = True) -> Finding:
        key = (str(pass_list), verify_each)
        if key in self._done:
            first = self._done[key]
            self.replayed_seconds += first.seconds
            return dataclasses.replace(first)
        f = super().evaluate(pass_list, verify_each=verify_each)
        self._done[key] = dataclasses.replace(f)
        return f

    def evaluate_after(self, start: Finding, pass_list: PassList, verify_each: bool = False) -> Finding:
        """A run that extends `start` (the driver's screening run and its verified rerun), replayed too."""
        key = (f"after:{pass_list}" if self.extends(pass_list) else str(pass_list), verify_each)
        if key in self._done:
            first = self._done[key]
            self.replayed_seconds += first.seconds
            return dataclasses.replace(first)
        f = super().evaluate_after(start, pass_list, verify_each=verify_each)
        self._done[key] = dataclasses.replace(f)
        return f


def _module_worker(task: ModuleTask, specs: list[MethodSpec], setup: MethodSetup) -> list[EvalRecord]:
    """All pending methods on one module (shared -Oz baseline); one record per method."""
    out: list[EvalRecord] = []
    tc = Toolchain.discover()
    with tempfile.TemporaryDirectory(prefix="clang-llm-eval-") as tmp:
        builder = ReplayingBuilder(tc.compiler(task.lang == "c++"), tc.opt, list(task.codegen_flags), task.lang or "c",
                            Path(task.bc), Path(tmp), setup.timeout)
        try:
            module = ir.parse(Path(task.bc))
            ir_text = str(module) if any(s.is_model for s in specs) else None
            builder.count_before = ir.count_instructions(module)
            del module
            oz = builder.evaluate(OZ, verify_each=False)
        except Exception as e:
            return [EvalRecord(module=task.id, method=s.name, status="error", reason=f"ir: {e}"[:300]) for s in specs]
        if not oz.valid or oz.sizes is None:
            return [EvalRecord(module=task.id, method=s.name, status="error",
                               reason=f"oz-{oz.error_kind}: {oz.error}"[:300]) for s in specs]
        oz_size = ObjectSize(oz.sizes.text, oz.sizes.alloc, oz.count_after)
        for spec in specs:
            builder.replayed_seconds = 0.0
            try:
                r = run_method(spec, setup, builder, oz, ir_text=ir_text, source=task.id, module_id=task.id)
            except Exception as e:  # one method's bug must not lose the others' results
                r = EvalRecord(module="", method="", status="error", reason=f"{type(e).__name__}: {e}"[:300])
            wall = None if r.wall_s is None else r.wall_s + builder.replayed_seconds
            out.append(dataclasses.replace(r, module=task.id, split=task.split, package=task.package,
                                           count_before=builder.count_before, oz=oz_size, method=spec.name,
                                           fp=fingerprint(spec, setup), wall_s=wall))
    return out


def build_setup(specs: list[MethodSpec], labels_path: Path | None, timeout: float = 20.0, verify_each: bool = True,
                seed: int = 0, model_settings: dict[str, Any] | None = None,
                split_of: dict[str, str] | None = None, coreset_split: str = "train",
                coreset_file: Path | None = None) -> MethodSetup:
    """Lists from the TRAIN labels: coreset (most frequent winners) and autotune's broadcast set.

    `split_of` (module id -> split, from the current index) overrides the split stored in each
    label, so a corpus whose splits changed after labelling cannot leak test winners into train.
    """
    labels = read_labels(labels_path) if labels_path and Path(labels_path).exists() else []
    if split_of is not None:
        labels = [dataclasses.replace(r, split=split_of.get(r.id, "")) for r in labels]
    kmax = max([s.n for s in specs if s.kind == "coreset"], default=0)
    train = [r for r in labels if r.split == "train"]
    if coreset_file is not None:  # a fixed pool (a cllm-v2 model's): coreset@k is its first k lists
        from clang_llm.train.make_model import load_pool

        coreset = [p for p in load_pool(coreset_file) if p != "Oz"]
    else:
        coreset = coreset_lists(labels, kmax, coreset_split) if kmax else []
    return MethodSetup(coreset=coreset,
                       broadcast=shared_winners(train),
                       timeout=timeout, verify_each=verify_each, seed=seed, model_settings=model_settings or {})


def model_unavailable_reason(model_dir: str = "") -> str | None:
    """None when the model loop imports and the model loads, else why not (checked once, up front)."""
    try:
        model_loop_class()
    except Exception as e:
        return f"ModelLoop import failed: {type(e).__name__}: {e}"[:300]
    try:
        load_model_cached(model_dir)
    except Exception as e:
        return f"model failed to load: {type(e).__name__}: {e}"[:300]
    return None


def evaluate(methods: list[str], modules: list[ModuleTask], *, labels_path: Path | None = None,
             cache_path: Path | None = None, jobs: int = 1, timeout: float = 20.0, verify_each: bool = True,
             backup: bool = False, seed: int = 0, model_settings: dict[str, Any] | None = None,
             progress: bool = True, on_record: Callable[[EvalRecord], None] | None = None,
             split_of: dict[str, str] | None = None, coreset_split: str = "train",
             coreset_file: Path | None = None) -> EvalResults:
    """Run every method on every module (cached results reused) and summarize per method.

    `labels_path`: the autotuner's labels (coreset lists and broadcast from the train split; the
    autotuner's improvement for the "% of autotuner" column; `split_of` maps module ids to their
    current split, overriding the labels'). `cache_path`: JSONL(.gz) of
    per (method, module) records, appended as results come in. `backup` adds +backup to all.
    """
    from clang_llm.eval.report import summarize

    specs = list({s.name: s for s in (parse_method(m, backup) for m in methods)}.values())
    setup = build_setup(specs, labels_path, timeout, verify_each, seed, model_settings, split_of, coreset_split,
                        coreset_file)
    unavailable: dict[str, str] = {}
    if any(s.is_model for s in specs):
        why = model_unavailable_reason(str((model_settings or {}).get("model", "")))
        if why:
            unavailable = {s.name: why for s in specs if s.is_model}
    runnable = [s for s in specs if s.name not in unavailable]

    cached: dict[tuple[str, str, str], EvalRecord] = {}
    if cache_path:
        cache_path = Path(cache_path)
        repair(cache_path)
        for r in read_eval_records(cache_path):
            if r.cache_schema == CACHE_SCHEMA and r.status in ("ok", "error"):
                cached[(r.method, r.module, r.fp or "")] = r
    fps = {s.name: fingerprint(s, setup) for s in runnable}
    records: list[EvalRecord] = []
    work: list[tuple[ModuleTask, list[MethodSpec]]] = []
    for t in modules:
        todo = []
        for s in runnable:
            hit = cached.get((s.name, t.id, fps[s.name]))
            if hit is not None:
                records.append(hit)
            else:
                todo.append(s)
        if todo:
            work.append((t, todo))

    from clang_llm.progress import make_progress

    bar, _ = make_progress("eval", progress)
    total = sum(len(sp) for _, sp in work)
    t0 = time.monotonic()

    def handle(recs: list[EvalRecord]) -> None:
        keep = []
        for r in recs:
            r = dataclasses.replace(r, cache_schema=CACHE_SCHEMA)
            if r.status == "unavailable":
                unavailable.setdefault(r.method, r.reason or "")
                continue
            records.append(r)
            keep.append(r)
            if on_record:
                on_record(r)
        if cache_path and keep:
            append_records(cache_path, keep)
        bar.update(tid, advance=len(recs), info=f"{time.monotonic() - t0:.0f}s")

    with bar:
        tid = bar.add_task("eval", total=total, info="")
        if jobs <= 1:
            for t, sp in work:
                handle(_module_worker(t, sp, setup))
        else:
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("forkserver")) as pool:
                it = iter(work)
                inflight: set[Future[list[EvalRecord]]] = set()
                while True:
                    while len(inflight) < jobs * 2:
                        nxt = next(it, None)
                        if nxt is None:
                            break
                        inflight.add(pool.submit(_module_worker, nxt[0], nxt[1], setup))
                    if not inflight:
                        break
                    finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        handle(fut.result())

    wanted = {t.id for t in modules}
    records = [r for r in records if r.module in wanted]
    labels = read_labels(labels_path) if labels_path and Path(labels_path).exists() else []
    names = [s.name for s in specs]
    res = EvalResults(methods=names, records=records, unavailable=unavailable,
                      setup={"coreset": setup.coreset, "broadcast": setup.broadcast, "timeout": timeout,
                             "verify_each": verify_each, "modules": len(modules), "jobs": jobs,
                             "cpu_count": os.cpu_count()})
    res.summary = summarize(names, records, labels, unavailable)
    return res
