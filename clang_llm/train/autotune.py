"""Autotuner: per module, search vocabulary pass lists for a smaller object than clang -Oz.

Why: the model learns from (module, best pass list) pairs, and evaluation measures a method
against what a search can find. The objective is the object clang would ship: `.text` bytes,
then all allocated bytes, then IR instruction count (fewer IR instructions is not a smaller
object: most labels raise the count while `.text` falls, docs/data-card.md).
A candidate only counts if it is valid (opt -verify-each, codegen) and not larger than -Oz on
`.text` *and* alloc bytes (invariant 3), so every label is a list the driver may ship.

The per-module budget of opt evaluations is spent in phases, cheapest wins first:

1. broadcast -- lists known to win elsewhere (a fixed list + the best lists of modules already
   labelled, shared through the results file);
2. greedy -- append single passes to the best list (first improvement), from the best so far and,
   budget permitting, from `O1`/`Os` as other start points;
3. random -- mutations of the best list and fresh short random lists;
4. minimization -- drop passes of the winner that do not help.

Results are appended, one JSON line per module, to a JSONL(.gz) file (gzip members append
cleanly), so a run can be stopped and restarted: modules already recorded are skipped.

Usage::

    clang-llm-tool autotune --index build/corpus/out/index.jsonl.gz --out labels.jsonl.gz --budget 200 --fast
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol, TypeVar

from clang_llm import LLVM_MAJOR, ir
from clang_llm.build.tubuilder import TUBuilder
from clang_llm.errors import PassListError
from clang_llm.passes import OZ, PassList, Vocabulary, parse_pass_list
from clang_llm.progress import make_progress
from clang_llm.records import (
    Finding,
    LabelRecord,
    ListResult,
    ObjectSize,
    TrajectoryPoint,
    append_records,
    open_text,
    read_labels,
    repair,
)
from clang_llm.toolchain import Toolchain
from clang_llm.train.configs import AutotuneConfig
from clang_llm.train.fasteval import IncrementalEvaluator

log = logging.getLogger("clang_llm.autotune")

SCHEMA_VERSION = 1
SPLIT_ORDER = ("test", "validation", "train")
# Records that a restart runs again (later record wins): the bitcode was missing, or our own code
# failed on the module (retried once the bug is fixed, never silently kept as its label).
RETRY_REASONS = frozenset({"missing-bc", "internal"})

# Passes tried first by the greedy phase (known winners); the rest of the vocabulary follows.
GREEDY_FIRST: tuple[str, ...] = (
    "loop-reduce",
    "simplifycfg<hoist-common-insts;sink-common-insts>",
    "sink",
    "early-cse",
    "iroutliner",
    "separate-const-offset-from-gep",
    "gvn-sink",
    "gvn-hoist",
    "mergefunc",
    "instcombine<no-verify-fixpoint>",
    "simplifycfg",
    "dse",
)

Key = tuple[int, int, int]  # (.text, alloc, instructions): smaller is better


@dataclass
class ModuleTask:
    """One module to label: its unoptimized bitcode and how clang builds it."""

    id: str
    bc: str
    lang: str = "c"
    codegen_flags: list[str] = field(default_factory=list)
    split: str = ""
    package: str = ""
    instructions: int | None = None  # from the index, if known (saves parsing huge modules)


def key_of(f: Finding) -> Key:
    assert f.sizes is not None
    return (f.sizes.text, f.sizes.alloc, f.count_after or 0)


class Evaluator(Protocol):
    def evaluate(self, pass_list: PassList, verify_each: bool = ...) -> Finding: ...


class _Search:
    """Budgeted, memoized evaluation of pass lists for one module; tracks the best eligible list."""

    def __init__(self, builder: Evaluator, oz: Finding, cfg: AutotuneConfig, rng: random.Random) -> None:
        self.builder, self.oz, self.cfg, self.rng = builder, oz, cfg, rng
        self.deadline = time.monotonic() + cfg.module_timeout
        oz_key = key_of(oz)
        self.seen: dict[str, Key | None] = {str(OZ): oz_key}
        self.results: dict[str, Key] = {str(OZ): oz_key}  # eligible lists only
        self.best, self.best_key, self.best_phase = OZ, oz_key, "oz"
        self.evals = self.invalid = 0
        self.errors: Counter[str] = Counter()
        # Every new best: (evaluations so far, list, key) -- the gain-versus-budget curve of this
        # module, and (worse list, better list) pairs for feedback training.
        self.trajectory: list[tuple[int, str, Key]] = []

    def left(self) -> int:
        if time.monotonic() > self.deadline:
            return 0
        return self.cfg.budget - self.evals

    def known(self, pl: PassList) -> bool:
        return str(pl) in self.seen

    def evaluate(self, pl: PassList, phase: str) -> Key | None:
        """Key of an eligible list (memoized), None if invalid/larger than -Oz or out of budget."""
        s = str(pl)
        if s in self.seen:
            return self.seen[s]
        if self.left() <= 0:
            return None
        f = self.builder.evaluate(pl, verify_each=self.cfg.verify_each and not self.cfg.fast)
        self.evals += 1
        for p in (f.ir_path, f.object_path):  # keep the temp dir small on big modules
            if p is not None:
                p.unlink(missing_ok=True)
        assert self.oz.sizes is not None
        if not f.valid or f.sizes is None:
            self.invalid += 1
            self.errors[f.error_kind or "invalid"] += 1
            self.seen[s] = None
            return None
        if not f.sizes.not_larger_than(self.oz.sizes):
            self.seen[s] = None
            return None
        k = key_of(f)
        self.seen[s] = self.results[s] = k
        if k < self.best_key:
            self.best, self.best_key, self.best_phase = pl, k, phase
            self.trajectory.append((self.evals, s, k))
        return k


def _parse_all(texts: Iterable[str], vocab: Vocabulary) -> list[PassList]:
    out: list[PassList] = []
    for t in texts:
        try:
            pl = parse_pass_list(t, vocab)
        except PassListError:
            continue
        if pl not in out:
            out.append(pl)
    return out


def _interleave(a: list[PassList], b: list[PassList]) -> list[PassList]:
    out: list[PassList] = []
    for i in range(max(len(a), len(b))):
        for seq in (a, b):
            if i < len(seq) and seq[i] not in out:
                out.append(seq[i])
    return out


def _greedy(search: _Search, start: PassList, passes: list[str], quota: int) -> None:
    """First-improvement hill climb: append one pass at a time to the best list from `start`."""
    spent0 = search.evals
    cur = start
    cur_key = search.seen.get(str(start))
    if cur_key is None:
        return
    improved = True
    while improved and search.evals - spent0 < quota and search.left() > 0:
        improved = False
        for p in passes:
            if search.evals - spent0 >= quota or search.left() <= 0:
                return
            if len(cur.tokens) >= 16:
                return
            cand = PassList((*cur.tokens, p))
            k = search.evaluate(cand, "greedy")
            if k is not None and k < cur_key:
                cur, cur_key, improved = cand, k, True
                break


def _random_list(search: _Search, passes: list[str]) -> PassList:
    """A mutation of the best list (half the time) or a fresh short random list."""
    rng = search.rng
    if rng.random() < 0.5 and len(search.best.tokens) >= 1:
        toks = list(search.best.tokens)
        op = rng.choice(("append", "insert", "replace", "append2"))
        if op == "append":
            toks.append(rng.choice(passes))
        elif op == "append2":
            toks += rng.sample(passes, 2)
        elif op == "insert":
            toks.insert(rng.randint(1, len(toks)), rng.choice(passes))
        elif len(toks) > 1:
            toks[rng.randint(1, len(toks) - 1)] = rng.choice(passes)
        else:
            toks.append(rng.choice(passes))
        return PassList(tuple(toks))
    base = rng.choice(("Oz", "Oz", "Oz", "O1", "Os"))
    n = rng.randint(1, 3)
    return PassList((base, *(rng.choice(passes) for _ in range(n))))


def _minimize(search: _Search) -> None:
    """Drop passes of the winner, last first, while the result stays as good."""
    changed = True
    while changed and search.left() > 0:
        changed = False
        toks = list(search.best.tokens)
        for i in range(len(toks) - 1, 0, -1):  # never drop the leading base pipeline
            cand = PassList(tuple(toks[:i] + toks[i + 1:]))
            k = search.evaluate(cand, "minimize")
            if k is not None and k <= search.best_key:
                search.best, search.best_key = cand, k
                changed = True
                break
            if search.left() <= 0:
                return


def search_module(builder: Evaluator, oz: Finding, cfg: AutotuneConfig, broadcast: list[str],
                  seed_text: str = "") -> _Search:
    """Run the four phases on one module within `cfg.budget` evaluations; return the search state."""
    vocab = Vocabulary.default()
    rng = random.Random(f"{cfg.seed}:{seed_text}")
    search = _Search(builder, oz, cfg, rng)
    non_base = [t for t, lv in vocab.levels.items() if lv != "base"]
    first = [p for p in GREEDY_FIRST if p in vocab]
    rest = [p for p in non_base if p not in first]
    rng.shuffle(rest)
    greedy_passes = first + rest

    budget = cfg.budget
    # 1. broadcast: shared winners interleaved with the fixed list.
    n_b = max(1, round(budget * cfg.broadcast_share))
    cands = _interleave(_parse_all(broadcast, vocab), _parse_all(cfg.default_broadcast, vocab))
    spent = 0
    for pl in cands:
        if spent >= n_b or search.left() <= 0:
            break
        if not search.known(pl):
            search.evaluate(pl, "broadcast")
            spent += 1
    # 2. greedy from the best so far; a second start point (O1, then Os) if the budget allows.
    n_g = max(1, round(budget * cfg.greedy_share))
    starts = [search.best]
    if n_g >= 6:
        for alt in (PassList(("O1",)), PassList(("Os",))):
            if alt != search.best and search.seen.get(str(alt)) is not None:
                starts.append(alt)
                break
    per = [n_g] if len(starts) == 1 else [n_g - n_g // 3, n_g // 3]
    for start, quota in zip(starts, per, strict=True):
        _greedy(search, start, greedy_passes, quota)
    # 3. random, leaving room to minimize the winner.
    tries = 0
    while search.left() > min(4, max(0, len(search.best.tokens) - 2)) and tries < 50 * budget:
        tries += 1
        cand = _random_list(search, greedy_passes)
        if len(cand.tokens) > 16 or search.known(cand):
            continue
        search.evaluate(cand, "random")
    # 4. minimization of the winner.
    if len(search.best.tokens) > 2:
        _minimize(search)
    return search


def _cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _result(pass_list: str, k: Key) -> ListResult:
    return ListResult(pass_list=pass_list, text=k[0], alloc=k[1], count=k[2])


def _key(r: ListResult) -> Key:
    return (r.text, r.alloc, r.count or 0)


def top_lists(results: dict[str, Key], k: int) -> list[ListResult]:
    """The k best distinct outcomes, each with its shortest list: alternative training answers."""
    by_key: dict[Key, str] = {}
    for s, kk in results.items():  # insertion order: -Oz first, then as evaluated
        cur = by_key.get(kk)
        if cur is None or len(s.split()) < len(cur.split()):
            by_key[kk] = s
    return [_result(by_key[kk], kk) for kk in sorted(by_key)[:k]]


def verify_kept(builder: TUBuilder, oz: Finding, top: list[ListResult],
                verify_each: bool = True) -> tuple[list[ListResult], int]:
    """Re-run each kept list whole, from the source IR (with -verify-each): only what that run
    measures is stored. Returns the lists still eligible, best first, and how many measured
    otherwise than the search's cheaper evaluation said."""
    assert oz.sizes is not None
    kept: list[ListResult] = []
    mismatched = 0
    for entry in top:
        if entry.pass_list == str(OZ):
            kept.append(entry)
            continue
        f = builder.evaluate(parse_pass_list(entry.pass_list), verify_each=verify_each)
        for p in (f.ir_path, f.object_path):
            if p is not None:
                p.unlink(missing_ok=True)
        if not f.valid or f.sizes is None or not f.sizes.not_larger_than(oz.sizes):
            mismatched += 1
            continue
        k = key_of(f)
        mismatched += k != _key(entry)
        kept.append(_result(entry.pass_list, k))
    if not any(e.pass_list == str(OZ) for e in kept):  # -Oz is always a valid answer
        kept.append(_result(str(OZ), key_of(oz)))
    kept.sort(key=lambda e: (*_key(e), len(e.pass_list.split())))
    return kept, mismatched


def autotune_module(task: ModuleTask, cfg: AutotuneConfig, broadcast: list[str] | None = None,
                    toolchain: Toolchain | None = None) -> LabelRecord:
    """Label one module; always returns a record (status ok | skipped | error), never raises.

    The record's fields are gathered as the module goes (a failure at any step still leaves what
    was measured before it) and become a `LabelRecord` at the end."""
    t0, cpu0 = time.monotonic(), _cpu_seconds()
    rec: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "id": task.id, "package": task.package, "split": task.split,
        "status": "ok", "reason": "", "budget": cfg.budget, "llvm": LLVM_MAJOR,
        "vocab": Vocabulary.default().version,
    }

    def done(status: str, reason: str = "") -> LabelRecord:
        rec["status"], rec["reason"] = status, reason
        rec["wall_s"] = round(time.monotonic() - t0, 3)
        rec["cpu_s"] = round(_cpu_seconds() - cpu0, 3)
        return LabelRecord(**rec)

    try:
        if task.instructions is not None and task.instructions > cfg.max_instructions:
            rec["count_before"] = task.instructions
            return done("skipped", "too-large")
        if not Path(task.bc).is_file():  # e.g. the corpus is being rebuilt: retried on the next run
            return done("error", "missing-bc")
        tc = toolchain or Toolchain.discover()
        with tempfile.TemporaryDirectory(prefix="clang-llm-at-") as tmp:
            builder = TUBuilder(tc.compiler(task.lang == "c++"), tc.opt, list(task.codegen_flags),
                                task.lang or "c", Path(task.bc), Path(tmp), cfg.timeout)
            count_before = ir.count_file(Path(task.bc))
            builder.count_before = rec["count_before"] = count_before
            if count_before > cfg.max_instructions:
                return done("skipped", "too-large")
            oz = builder.evaluate(OZ, verify_each=False)
            if not oz.valid or oz.sizes is None:
                rec["error"] = (oz.error or "")[:500]
                return done("error", f"oz-{oz.error_kind or 'failed'}")
            oz_key = key_of(oz)
            rec["oz"] = ObjectSize(*oz_key)
            mcfg = cfg
            if count_before > cfg.large_instructions:  # big modules cost most per evaluation
                mcfg = replace(cfg, budget=effective_budget(count_before, cfg))
                rec["budget"] = mcfg.budget
            evaluator: Evaluator = builder
            if cfg.fast:
                evaluator = fast = IncrementalEvaluator(builder)
                fast.seed(OZ, oz)
            search = search_module(evaluator, oz, mcfg, broadcast or [], seed_text=task.id)
            top = top_lists(search.results, cfg.top_k)
            phase = search.best_phase
            if cfg.fast:
                top, mismatched = verify_kept(builder, oz, top, cfg.verify_each)
                rec["verify_mismatch"] = mismatched
                if _key(top[0]) != search.best_key:
                    phase = "verified"
            # The shortest list reaching the best outcome is the label.
            rec["best"] = replace(top[0], phase=phase)
            rec["top"] = tuple(top)
            rec["evals"] = search.evals + 1  # + the -Oz baseline
            rec["trajectory"] = tuple(TrajectoryPoint(n + 1, pl, *k) for n, pl, k in search.trajectory)
            rec["invalid"] = search.invalid
            if search.errors:
                rec["errors"] = dict(search.errors)
            return done("ok")
    except Exception as e:  # one broken module must not stop a 5,000-module run
        rec["error"] = f"{type(e).__name__}: {e}"[:500]
        return done("error", "internal")


# ---------------------------------------------------------------------------------------------
# Inputs: the corpus index or a folder of recordings.


def _order_key(seed: int, task: ModuleTask) -> tuple[int, str]:
    split_rank = SPLIT_ORDER.index(task.split) if task.split in SPLIT_ORDER else len(SPLIT_ORDER)
    h = hashlib.sha256(f"{seed}:{task.id}".encode()).hexdigest()
    return split_rank, h


def order_tasks(tasks: list[ModuleTask], seed: int = 0) -> list[ModuleTask]:
    """Deterministic shuffle, test split first, then validation, then train: a partial run is a
    fair sample of each split it reached."""
    return sorted(tasks, key=lambda t: _order_key(seed, t))


def _first(d: dict[str, Any], *keys: str) -> object:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def task_from_meta(meta: dict[str, Any], bc: Path, default_id: str) -> ModuleTask:
    """A task from an index line or a recording's .json (tolerant of either's key names)."""
    flags = _first(meta, "codegen_flags")
    if flags is None:
        from clang_llm.clang_args import strip_for_codegen

        argv = [str(a) for a in list(_first(meta, "argv") or [])[1:]]
        clean: list[str] = []  # the recording's own IR-emitting flags are not the user's
        i = 0
        while i < len(argv):
            if argv[i] == "-Xclang" and i + 1 < len(argv) and argv[i + 1] == "-disable-llvm-passes":
                i += 2
                continue
            if argv[i] != "-emit-llvm":
                clean.append(argv[i])
            i += 1
        flags = strip_for_codegen(clean)
    n = _first(meta, "instructions", "instruction_count", "count", "n_instructions", "insts")
    return ModuleTask(
        id=str(_first(meta, "id") or default_id), bc=str(bc), lang=str(_first(meta, "lang") or "c"),
        codegen_flags=[str(a) for a in flags], split=str(_first(meta, "split") or ""),
        package=str(_first(meta, "package") or ""), instructions=int(n) if n is not None else None,
    )


def load_index(index_path: Path, modules_dir: Path | None = None,
               splits: Iterable[str] | None = None) -> list[ModuleTask]:
    """Tasks of the corpus index (``index.jsonl.gz``); bitcode at ``<modules_dir>/<id>.bc``."""
    modules_dir = modules_dir or index_path.parent / "modules"
    wanted = set(splits) if splits else None
    tasks: list[ModuleTask] = []
    with open_text(index_path) as f:
        for line in f:
            if not line.strip():
                continue
            meta = json.loads(line)
            if "id" not in meta:
                continue  # a header line
            if wanted and meta.get("split") not in wanted:
                continue
            bc = Path(meta["bc"]) if meta.get("bc") else modules_dir / f"{meta['id']}.bc"
            if not bc.is_absolute() and meta.get("bc"):
                bc = index_path.parent / bc
            tasks.append(task_from_meta(meta, bc, meta["id"]))
    return tasks


def load_recordings(folder: Path) -> list[ModuleTask]:
    """Tasks from a folder of recordings (``X.bc`` + ``X.json``, CLANG_LLM_RECORD's format)."""
    tasks = []
    for js in sorted(folder.rglob("*.json")):
        bc = js.with_suffix(".bc")
        if not bc.is_file():
            continue
        try:
            meta = json.loads(js.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        tasks.append(task_from_meta(meta, bc, str(bc.relative_to(folder).with_suffix(""))))
    return tasks


def load_tasks(index: Path | None = None, recordings: Path | None = None, modules_dir: Path | None = None,
               splits: Iterable[str] | None = None, limit: int | None = None, seed: int = 0) -> list[ModuleTask]:
    """Tasks from an index or recordings folder, in the deterministic shuffled order."""
    if index is not None:
        tasks = load_index(index, modules_dir, splits)
    elif recordings is not None:
        tasks = load_recordings(recordings)
        if splits:
            tasks = [t for t in tasks if t.split in set(splits)]
    else:
        raise ValueError("give an index or a recordings folder")
    tasks = order_tasks(tasks, seed)
    return tasks[:limit] if limit else tasks


# ---------------------------------------------------------------------------------------------
# The run: many modules, resumable, multi-process, with progress.


def shared_winners(records: Iterable[LabelRecord], n: int = 8) -> list[str]:
    """The lists that were best on most modules (strict .text wins only): the broadcast set."""
    wins: Counter[str] = Counter(r.best.pass_list for r in records if r.improved and r.best)
    return [s for s, _ in wins.most_common(n)]


@dataclass
class RunSummary:
    """What `autotune` did in this call (and in total, with earlier runs' records)."""

    total: int
    already_done: int
    done_now: int
    ok: int
    skipped: int
    errors: int
    improved: int
    geomean_text_ratio: float | None
    wall_s: float
    cpu_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _geomean_ratio(records: list[LabelRecord]) -> float | None:
    logs = [math.log(r.best.text / r.oz.text) for r in records
            if r.ok and r.best and r.oz and r.oz.text > 0 and r.best.text > 0]
    return math.exp(sum(logs) / len(logs)) if logs else None


def _worker(task: ModuleTask, cfg: AutotuneConfig, broadcast: list[str]) -> LabelRecord:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return autotune_module(task, cfg, broadcast)


def effective_budget(n_instructions: int, cfg: AutotuneConfig) -> int:
    """The budget of a module of this size: big modules get proportionally fewer evaluations."""
    if n_instructions <= cfg.large_instructions:
        return cfg.budget
    scaled = round(cfg.budget * cfg.large_instructions / n_instructions)
    return min(cfg.budget, max(cfg.min_budget, scaled))


def estimated_cost(task: ModuleTask, cfg: AutotuneConfig) -> float:
    """Rough CPU seconds for a module (fitted on a pilot run: fixed + per evaluation + per instruction)."""
    n = task.instructions if task.instructions is not None else 1000
    if n > cfg.max_instructions:
        return 0.01
    return 0.08 + (effective_budget(n, cfg) + 1) * (0.015 + 8.5e-5 * n)


def _crash_record(task: ModuleTask, cfg: AutotuneConfig, why: str) -> LabelRecord:
    return LabelRecord(schema_version=SCHEMA_VERSION, id=task.id, package=task.package, split=task.split,
                       status="error", reason="worker-crash", error=why[:500], budget=cfg.budget, llvm=LLVM_MAJOR,
                       vocab=Vocabulary.default().version)


C = TypeVar("C")  # what every module's worker gets: a search config, a pool of lists
B = TypeVar("B")  # what each submission gets fresh: the current broadcast lists
R = TypeVar("R")  # one module's record


def _run_pool(pending: list[ModuleTask], cfg: C, jobs: int, broadcast: Callable[[], B],
              handle: Callable[[R], None], worker: Callable[[ModuleTask, C, B], R] | None = None,
              crash: Callable[[ModuleTask, C, str], R] | None = None) -> None:
    """Modules through a process pool, at most 2*jobs in flight (each gets the current broadcast).

    A worker that dies (an LLVM abort inside llvmlite, the OOM killer) breaks the pool: the
    modules that were in flight are then rerun one at a time, each alone in a fresh worker, so
    a module that kills its worker is recorded (by `crash`) as an error instead of stopping a
    long run. Labelling and the pool sweep share it (their worker, config and records differ).
    """
    work: Callable[[ModuleTask, C, B], R] = worker or _worker  # type: ignore[assignment]
    died: Callable[[ModuleTask, C, str], R] = crash or _crash_record  # type: ignore[assignment]
    queue: list[ModuleTask] = list(reversed(pending))
    ctx = get_context("forkserver")
    while queue:
        suspects: list[ModuleTask] = []
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            inflight: dict[Future[R], ModuleTask] = {}
            try:
                while (queue or inflight) and not suspects:
                    while queue and len(inflight) < jobs * 2:
                        t = queue.pop()
                        inflight[pool.submit(work, t, cfg, broadcast())] = t
                    finished, _ = wait(set(inflight), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        t = inflight.pop(fut)
                        try:
                            handle(fut.result())
                        except BrokenProcessPool:
                            suspects.append(t)
                suspects += inflight.values()  # lost with the broken pool
            except BaseException:
                for fut in inflight:
                    fut.cancel()
                raise
        if suspects:
            log.warning("a worker died; rerunning %d modules one at a time", len(suspects))
        for t in suspects:
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as solo:
                try:
                    handle(solo.submit(work, t, cfg, broadcast()).result())
                except BrokenProcessPool as e:
                    handle(died(t, cfg, repr(e)))


def autotune(tasks: list[ModuleTask], out_path: Path, cfg: AutotuneConfig, jobs: int | None = None,
             progress: bool = True, on_record: Callable[[LabelRecord], None] | None = None,
             ray_address: str | None = None) -> RunSummary:
    """Label `tasks` (in the given order) into `out_path`, skipping ids already recorded there;
    on the Ray cluster at `ray_address` when given, else in a local process pool."""
    jobs = jobs or os.cpu_count() or 1
    t0 = time.monotonic()
    out_path = Path(out_path)
    repair(out_path)
    previous = [r for r in read_labels(out_path) if r.reason not in RETRY_REASONS]
    done_ids = {r.id for r in previous}
    pending = [t for t in tasks if t.id not in done_ids]
    wins: Counter[str] = Counter(r.best.pass_list for r in previous if r.improved and r.best)
    new: list[LabelRecord] = []
    stats = Counter[str]()

    bar, live = make_progress("autotune", progress)
    last_log = [time.monotonic()]

    def info() -> str:
        ok = stats["ok"]
        gm = _geomean_ratio(new)
        gm_s = f"{(1 - gm) * 100:+.2f}%" if gm else "n/a"
        return f"improved {stats['improved']}/{ok} · gm .text gain {gm_s} · err {stats['error']}"

    def handle(rec: LabelRecord) -> None:
        append_records(out_path, [rec])
        new.append(rec)
        stats[rec.status] += 1
        if rec.improved and rec.best:
            stats["improved"] += 1
            wins[rec.best.pass_list] += 1
        if on_record:
            on_record(rec)
        bar.update(tid, advance=1, info=info())
        now = time.monotonic()
        if progress and not live and (now - last_log[0] > 30 or len(new) == len(pending)):
            last_log[0] = now
            el = now - t0
            done_cost = sum(cost[r.id] for r in new if r.id in cost)
            eta = el / done_cost * (total_cost - done_cost) if done_cost else 0.0
            bar.console.print(f"[autotune] {len(new)}/{len(pending)} this run ({len(done_ids)} before) "
                          f"elapsed {el / 60:.1f} min, ETA {eta / 60:.1f} min · {info()}",
                          highlight=False, markup=False,
                          soft_wrap=True)

    def shared() -> list[str]:
        """The lists that won most so far, tried first on the next module (off: none, so a
        module's label does not depend on which modules finished before it)."""
        return [s for s, _ in wins.most_common(8)] if cfg.share_winners else []

    # ETA weighted by each module's expected cost: the test split (big csmith modules) runs first.
    cost = {t.id: estimated_cost(t, cfg) for t in pending}
    total_cost = sum(cost.values())
    with bar:
        tid = bar.add_task("autotune", total=len(pending), info="")
        if ray_address:
            from clang_llm.train.ray_pool import run_on_ray

            run_on_ray(pending, cfg, ray_address, lambda: shared(), handle, _worker, _crash_record)
        elif jobs <= 1:
            for t in pending:
                handle(autotune_module(t, cfg, shared()))
        else:
            _run_pool(pending, cfg, jobs, shared, handle)
    return RunSummary(
        total=len(tasks), already_done=len(tasks) - len(pending), done_now=len(new), ok=stats["ok"],
        skipped=stats["skipped"], errors=stats["error"], improved=stats["improved"],
        geomean_text_ratio=_geomean_ratio(new), wall_s=round(time.monotonic() - t0, 2),
        cpu_s=round(sum(r.cpu_s for r in new), 2),
    )
