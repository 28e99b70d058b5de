"""The path of one translation unit: IR → candidates → opt → object, never larger than -Oz.

Every failure inside raises `Fallback(reason)`; the caller then runs plain `clang -Oz` with the
user's flags, so the user always gets what clang would have shipped (invariant 1).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clang_llm import ir
from clang_llm.atomic import atomic_copy, atomic_write_bytes, atomic_write_text
from clang_llm.build.jobslots import JobSlots
from clang_llm.build.outputs import private_tempdir
from clang_llm.build.speculative import Speculative, small_source
from clang_llm.build.tubuilder import FactStore, TUBuilder
from clang_llm.clang_args import Invocation
from clang_llm.config import Settings
from clang_llm.db import Database
from clang_llm.errors import Fallback, ToolTimeout
from clang_llm.objsize import object_sizes
from clang_llm.optimizer.base import Decision, Optimizer
from clang_llm.optimizer.decide import decide, replay, tu_context, what_ships
from clang_llm.passes import OZ, Vocabulary
from clang_llm.records import Finding, Round, Timing, TURecord
from clang_llm.toolchain import Toolchain, run

log = logging.getLogger("clang_llm")


# Decisions made without the model's answers, or refused for a timeout that a later, less
# loaded build may not meet, are not remembered: the next build asks again.
_UNCACHED = frozenset({"optimizer-error", "model-error", "prompt-too-long", "verify-each-timeout"})


def _cacheable(reason: str) -> bool:
    return reason not in _UNCACHED and not reason.startswith("backend-")


OptimizerFactory = Callable[[Settings], Optimizer]
ModelIdOf = Callable[[Settings], str | None]


@dataclass
class Outcome:
    kind: str  # optimized | oz
    reason: str
    record: TURecord
    stdout: bytes = b""  # clang's own diagnostics from the IR step, shown once the TU is done
    stderr: bytes = b""


def _color_flags() -> list[str]:
    """We capture clang's stderr, so keep colours the user's terminal would have had."""
    if sys.stderr.isatty() and os.environ.get("TERM", "dumb") != "dumb":
        return ["-fcolor-diagnostics"]
    return []


def cache_key(ir_digest: str, settings: Settings, model_id: str, toolchain: Toolchain, codegen: list[str]) -> str:
    parts = {
        "ir": ir_digest, "model": model_id, "settings": settings.decision_key(),
        "toolchain": toolchain.identity, "vocab": Vocabulary.default().version, "codegen": codegen,
        "schema": 1,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def record_tu(record_dir: Path, inv: Invocation, emit_cmd: list[str], in_bc: Path) -> None:
    """CLANG_LLM_RECORD: keep the TU's unoptimized IR and the command line that reproduces it."""
    data = in_bc.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    stem = Path(inv.source or "tu").name
    name = f"{stem}.{digest[:12]}"
    record_dir.mkdir(parents=True, exist_ok=True)
    bc = record_dir / f"{name}.bc"
    if not bc.exists():
        atomic_write_bytes(bc, data)
    argv = [str(a) for a in emit_cmd]
    argv[-1] = str(bc)  # the command writes the recorded file itself
    meta = {
        "source": str(Path(inv.source or "").resolve()), "cwd": os.getcwd(),
        "output": str(Path(inv.output or "").resolve()), "lang": inv.lang,
        "argv": argv, "codegen_flags": inv.codegen_args(), "ir_sha256": digest,
    }
    atomic_write_text(record_dir / f"{name}.json", json.dumps(meta, indent=1))


def compile_tu(inv: Invocation, settings: Settings, toolchain: Toolchain, cxx: bool, db: Database,
               optimizer_factory: OptimizerFactory, model_id_of: ModelIdOf | None = None) -> Outcome:
    """Compile one TU to `inv.output`. Raises Fallback for anything that goes wrong, the user's own
    compile errors included (plain clang then reports them, exit code and all). `model_id_of`:
    the id the factory's model will have, told without loading it (a stored object then ships
    before any model loads), or None when only loading tells."""
    t0 = time.monotonic()
    compiler = toolchain.compiler(cxx)
    slots = JobSlots.from_env(os.environ, settings.state_dir / "cpu-slots", settings.heavy_jobs)
    try:
        tmpdir = private_tempdir(settings.state_dir, probe=True)
    except OSError as e:  # a full or read-only state dir: no work dir, no slots, no cache
        raise Fallback("state-dir-unwritable", str(e)) from e
    with tmpdir as tmp:
        work = Path(tmp)
        spec = None
        if small_source(inv.source, settings.speculate_bytes):
            # The user's command at -Oz, beside the IR step: it writes the depfile exactly as clang
            # does, and its object ships if the TU is too small for the model.
            # The IR step writes the depfile (it always runs to the end), so this run need not, and
            # a stored object can ship without waiting for it.
            spec = Speculative.start([str(compiler), *inv.emit_args(depfiles=False), "-Oz", *_color_flags(),
                                      "-o", str(work / PLAIN_OZ)], slots, os.environ)
        try:
            return _compile_tu(inv, settings, toolchain, compiler, db, optimizer_factory, model_id_of, slots, work,
                               spec, t0)
        finally:
            if spec is not None:
                spec.finish()  # never leave it running (or writing the depfile) after we return


PLAIN_OZ = "plain-oz.o"  # the speculative plain clang -Oz's object, in the TU's work dir


# What clang says when it cannot write a file: in our work dir that is our failure, not the user's.
_WRITE_FAILURES = (b"No space left on device", b"Read-only file system", b"Disk quota exceeded")


def _ours(res: subprocess.CompletedProcess[bytes], work: Path) -> bool:
    """Whether a failed clang run failed on our files (the work dir named, or a full or read-only
    disk): then plain clang must run again to say what the user's compile really gives."""
    return os.fsencode(work) in res.stderr or any(m in res.stderr for m in _WRITE_FAILURES)


def _failed(spec: Speculative | None, settings: Settings, work: Path) -> tuple[int, bytes, bytes] | None:
    """The speculative plain clang -Oz's result if it failed on the user's input: then it is the
    call's answer (exactly as clang reports it) and nothing needs to run again."""
    done = spec.finish(timeout=max(600.0, settings.opt_timeout)) if spec is not None else None
    if done is None or done.returncode == 0 or _ours(done, work):
        return None
    return done.returncode, done.stdout, done.stderr


def _await(spec: Speculative | None, settings: Settings, work: Path) -> subprocess.CompletedProcess[bytes] | None:
    """The speculative plain clang -Oz, finished, before anything ships: its diagnostics are the
    ones to show (and its depfile is written); if it failed, so does the call, as clang's would."""
    if spec is None:
        return None
    done = spec.finish(timeout=max(600.0, settings.opt_timeout))
    if done is None:
        raise Fallback("oz-timeout", "the speculative clang -Oz did not finish")
    if done.returncode != 0:
        if _ours(done, work):
            raise Fallback("state-dir-write", done.stderr.decode(errors="replace")[-500:])
        raise Fallback("frontend-error", done=(done.returncode, done.stdout, done.stderr))
    return done


def _compile_tu(inv: Invocation, settings: Settings, toolchain: Toolchain, compiler: Path, db: Database,
                optimizer_factory: OptimizerFactory, model_id_of: ModelIdOf | None, slots: JobSlots, work: Path,
                spec: Speculative | None, t0: float) -> Outcome:
    in_bc = work / "in.bc"
    # The IR step writes the depfile as a plain compile would (the final object as target).
    emit_cmd = [str(compiler), *inv.emit_args(), *inv.depfile_args(), "-Oz",
                "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-o", str(in_bc)]
    try:
        res = run([*emit_cmd[:-2], *_color_flags(), *emit_cmd[-2:]], timeout=max(600.0, settings.opt_timeout))
    except ToolTimeout as e:
        raise Fallback("emit-timeout", str(e), done=_failed(spec, settings, work)) from e
    t_emit = time.monotonic() - t0
    if res.returncode != 0:
        if _ours(res, work):  # our work dir is full or read-only: plain clang, from scratch
            raise Fallback("state-dir-write", res.stderr.decode(errors="replace")[-500:])
        # The user's own error (or a flag clang rejects): plain clang says it, exit code and all
        # (the speculative run, when there is one, already is that run).
        raise Fallback("frontend-error", done=_failed(spec, settings, work))
    if settings.record:
        try:
            record_tu(Path(settings.record), inv, emit_cmd, in_bc)
        except OSError as e:
            log.warning("recording failed: %s", e)

    codegen = inv.codegen_args()
    facts = FactStore(toolchain.identity, lambda k: db.safe("facts", db.fact_get, k),
                      lambda k, v: db.safe("facts", db.fact_put, k, v))
    builder = TUBuilder(compiler, toolchain.opt, codegen, inv.lang or "c", in_bc, work, settings.opt_timeout,
                        facts, slots)
    try:
        module = ir.parse(in_bc)
        ir_text = str(module)
        ir_digest = ir.ir_hash(ir_text)  # once: the cache key and the record both use it
        builder.count_before = ir.count_text(ir_text)
        del module
    except Exception as e:
        raise Fallback("ir-parse", str(e)) from e
    if builder.count_before < settings.min_instructions:
        if spec is not None:
            return _too_small_done(inv, settings, builder, ir_digest, _await(spec, settings, work), t0, t_emit)
        return _too_small(inv, settings, builder, ir_digest, res, t0, t_emit)
    # A stored object is looked up before the model loads when its id is known without loading
    # it (a warm build then never loads the model).
    early_id = model_id_of(settings) if model_id_of is not None and settings.cache else None
    if early_id is not None:
        hit = _ship_stored(inv, settings, db, cache_key(ir_digest, settings, early_id, toolchain, codegen), early_id,
                           spec, res, t0, t_emit)
        if hit is not None:
            return hit
    t_load = time.monotonic()
    optimizer: Optimizer = optimizer_factory(settings)
    load_s = time.monotonic() - t_load
    model_id = getattr(optimizer, "model_id", None) or "none"
    use_cache = settings.cache and model_id != "none"
    key = cache_key(ir_digest, settings, model_id, toolchain, codegen) if use_cache else ""
    if use_cache and model_id != early_id:
        # The same IR, flags, toolchain, model and settings make the same object: ship the
        # stored one (ccache's way) instead of re-running the -Oz baseline and the list.
        hit = _ship_stored(inv, settings, db, key, model_id, spec, res, t0, t_emit)
        if hit is not None:
            return hit
    # The -Oz baseline runs beside the decision (on its own heavy-step slot, so make's bound
    # holds): the model's first prompt needs only the unoptimized IR, and the baseline is first
    # needed to judge the candidates.
    try:  # the toolchain facts on this thread, where the database connection is
        builder.base_pipeline("Oz")
        builder.target_options()
    except (RuntimeError, OSError, ValueError, ToolTimeout):
        pass  # the baseline's run meets the same failure and reports it as its own
    budget = _Budget(t0, t_emit, settings)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="oz-baseline") as pool:
        baseline = pool.submit(_baseline, builder, budget)
        decision, cache_hit, t_decide = _decide(builder, baseline, settings, optimizer, db, key, use_cache, inv,
                                                ir_text)
        oz = baseline.result()  # its Fallback, if the baseline failed, whatever the optimizer did
    decide_s = time.monotonic() - t_decide
    builder.deadline = budget.rerun_deadline()
    t_verify = time.monotonic()
    decision = what_ships(builder, oz, decision)  # invariants 2 and 3, and the verified rerun
    verify_s = time.monotonic() - t_verify
    chosen = decision.chosen
    assert chosen.object_path is not None and chosen.sizes is not None
    res = _await(spec, settings, work) or res
    try:
        atomic_copy(chosen.object_path, Path(inv.output or "a.o"))
    except OSError as e:
        raise Fallback("output-write", str(e)) from e

    kind = "optimized" if chosen is not oz and chosen.sizes.text <= oz.sizes.text else "oz"
    if use_cache and _cacheable(decision.reason):
        db.safe("object store", db.object_put, key, chosen.object_path.read_bytes(),
                StoredObject(oz=oz, chosen=chosen, reason=decision.reason, ir_hash=ir_digest,
                             count_before=builder.count_before).to_json(), settings.cache_max_entries)
    record = _record(inv, settings, oz=oz, chosen=chosen, reason=decision.reason, ir_hash=ir_digest,
                     count_before=builder.count_before, rounds=tuple(decision.rounds), model_id=model_id,
                     model_calls=decision.model_calls, remote_calls=decision.remote_calls,
                     backend=settings.public()["backend"], cache_hit=cache_hit,
                     seconds=round(time.monotonic() - t0, 3),
                     timing=replace(_timing(t_emit, oz.seconds, decide_s, decision.rounds, time.monotonic() - t0),
                                    model_load_s=round(load_s, 4), codegen_s=round(builder.codegen_s, 4),
                                    verify_s=round(verify_s, 4)),
                     opt_evaluations=builder.opt_runs,
                     speculative=spec is not None)
    return Outcome(kind=kind, reason=("cache-hit:" if cache_hit else "") + decision.reason, record=record,
                   stdout=res.stdout, stderr=res.stderr)


def _ship_stored(inv: Invocation, settings: Settings, db: Database, key: str, model_id: str,
                 spec: Speculative | None, res: subprocess.CompletedProcess[bytes], t0: float,
                 t_emit: float) -> Outcome | None:
    """The stored object of `key` written to -o, with the IR step's diagnostics (the front
    end's, as for every TU too big to speculate); None when there is none."""
    stored = _stored_object(db, key, Path(inv.output or "a.o"))
    if stored is None:
        return None
    if spec is not None:  # the stored object is the answer: the speculative run is not needed
        spec.cancel()
    rec = _record(inv, settings, oz=stored.oz, chosen=stored.chosen, reason=stored.reason,
                  ir_hash=stored.ir_hash, count_before=stored.count_before,
                  rounds=(Round(cache="object"),), model_id=model_id, cache_hit=True,
                  seconds=round(time.monotonic() - t0, 3),
                  timing=Timing(frontend_s=round(t_emit, 4), total_s=round(time.monotonic() - t0, 4)),
                  speculative=spec is not None)
    return Outcome(kind="optimized" if rec.optimized else "oz", reason="cache-hit:object", record=rec,
                   stdout=res.stdout, stderr=res.stderr)


@dataclass
class _Budget:
    """The TU's time budget: a multiple of clang's own time for it (front end + the -Oz
    baseline's opt and codegen), with a floor; set on the builder once the baseline is known."""

    t0: float
    frontend_s: float
    settings: Settings
    seconds: float = 0.0

    def start(self, builder: TUBuilder, oz_seconds: float) -> None:
        s = self.settings
        self.seconds = max(s.time_budget_min, s.time_budget * (self.frontend_s + oz_seconds))
        builder.deadline = self.t0 + self.seconds

    def rerun_deadline(self) -> float:
        """The verified rerun may run until 1.5 budgets, and at least half a budget from now (a
        winner found at the deadline still gets its check)."""
        return max(self.t0 + 1.5 * self.seconds, time.monotonic() + 0.5 * self.seconds)


def _baseline(builder: TUBuilder, budget: _Budget) -> Finding:
    oz = builder.evaluate(OZ, verify_each=False)
    if not oz.valid or oz.sizes is None:
        raise Fallback(f"oz-{oz.error_kind or 'failed'}", oz.error or "")
    budget.start(builder, oz.seconds)
    return oz


def _decide(builder: TUBuilder, baseline: Future[Finding], settings: Settings, optimizer: Optimizer, db: Database,
            key: str, use_cache: bool, inv: Invocation, ir_text: str) -> tuple[Decision, bool, float]:
    """The decision (a cached list replayed, else the optimizer's), whether it came from the
    cache, and when deciding started. A failed baseline raises its Fallback here too."""
    cached = db.safe("cache lookup", db.cache_get, key) if use_cache else None
    tu = tu_context(builder, baseline, ir_text, settings, source=inv.source or "")
    decision = replay(cached[0], tu) if cached else None
    cache_hit = decision is not None
    t_decide = time.monotonic()
    if decision is None:
        decision = decide(optimizer, tu)
        if use_cache and _cacheable(decision.reason):
            db.safe("cache store", db.cache_put, key, decision.chosen.pass_list,
                    {"reason": decision.reason}, settings.cache_max_entries)
    return decision, cache_hit, t_decide


def _record(inv: Invocation, settings: Settings, **fields: object) -> TURecord:
    """The TU's record: where it was compiled and with what, and what the decision gave."""
    return TURecord(object=str(Path(inv.output or "").resolve()), source=str(Path(inv.source or "").resolve()),
                    cwd=os.getcwd(), argv=tuple(inv.argv), llm_flags=dict(inv.llm_flags),
                    settings=settings.public(), **fields)


def _too_small(inv: Invocation, settings: Settings, builder: TUBuilder, ir_digest: str,
               res: subprocess.CompletedProcess[bytes], t0: float, t_emit: float) -> Outcome:
    """A TU too small for any list to beat -Oz: clang's -Oz from the IR in one run (the same
    object as the opt + codegen baseline, one process fewer), no model."""
    obj = builder.workdir / "small.o"
    try:
        if builder.slots is None:
            done = run(builder.clang_oz_command(obj), timeout=settings.opt_timeout)
        else:
            with builder.slots.slot():
                done = run(builder.clang_oz_command(obj), timeout=settings.opt_timeout)
    except ToolTimeout as e:
        raise Fallback("oz-timeout", str(e)) from e
    if done.returncode != 0:
        raise Fallback("oz-codegen", done.stderr.decode(errors="replace")[-500:])
    return _ship_too_small(inv, settings, builder, ir_digest, obj, res, t0, t_emit, speculative=False)


def _too_small_done(inv: Invocation, settings: Settings, builder: TUBuilder, ir_digest: str,
                    done: subprocess.CompletedProcess[bytes] | None, t0: float, t_emit: float) -> Outcome:
    """A TU too small for the model whose plain clang -Oz already ran beside the IR step: that
    run's object ships as it is (its depfile is written)."""
    assert done is not None
    return _ship_too_small(inv, settings, builder, ir_digest, builder.workdir / PLAIN_OZ, done, t0, t_emit,
                           speculative=True)


def _ship_too_small(inv: Invocation, settings: Settings, builder: TUBuilder, ir_digest: str, obj: Path,
                    shown: subprocess.CompletedProcess[bytes], t0: float, t_emit: float,
                    speculative: bool) -> Outcome:
    """Ship clang's -Oz object `obj` of a too-small TU, with `shown`'s diagnostics, and record it."""
    try:
        sizes = object_sizes(obj)
    except (OSError, ValueError) as e:
        raise Fallback("oz-codegen", str(e)) from e
    try:
        atomic_copy(obj, Path(inv.output or "a.o"))
    except OSError as e:
        raise Fallback("output-write", str(e)) from e
    oz = Finding(pass_list=str(OZ), valid=True, count_before=builder.count_before, sizes=sizes)
    record = _record(inv, settings, oz=oz, chosen=oz, reason="too-small", ir_hash=ir_digest,
                     count_before=builder.count_before, seconds=round(time.monotonic() - t0, 3),
                     timing=Timing(frontend_s=round(t_emit, 4), total_s=round(time.monotonic() - t0, 4)),
                     speculative=speculative)
    return Outcome(kind="oz", reason="too-small", record=record, stdout=shown.stdout, stderr=shown.stderr)


@dataclass(frozen=True)
class StoredObject:
    """What the object cache keeps beside an object's bytes."""

    oz: Finding
    chosen: Finding
    reason: str
    ir_hash: str | None
    count_before: int | None

    def to_json(self) -> dict[str, Any]:
        return {"oz": self.oz.to_json(), "chosen": self.chosen.to_json(), "reason": self.reason,
                "ir_hash": self.ir_hash, "count_before": self.count_before}


def _stored_object(db: Database, key: str, dest: Path) -> StoredObject | None:
    """Write the stored object of `key` to `dest`; what was stored with it, or None (no entry, or
    one that is not the object it claims to be: then the TU is built as if never seen)."""
    got = db.safe("object lookup", db.object_get, key)
    if got is None:
        return None
    data, meta = got
    try:
        with private_tempdir(db.path.parent) as tmp:
            probe = Path(tmp) / "stored.o"
            probe.write_bytes(data)
            sizes = object_sizes(probe)
            stored = StoredObject(oz=Finding.from_json(meta["oz"]), chosen=Finding.from_json(meta["chosen"]),
                                  reason=str(meta.get("reason", "")), ir_hash=meta.get("ir_hash"),
                                  count_before=meta.get("count_before"))
            want, oz_sizes = stored.chosen.sizes, stored.oz.sizes
            if want is None or oz_sizes is None or (sizes.text, sizes.alloc) != (want.text, want.alloc) \
                    or not sizes.not_larger_than(oz_sizes):
                return None
            atomic_copy(probe, dest)
    except (OSError, KeyError, TypeError, ValueError) as e:
        log.warning("stored object of %s unusable: %s", dest, e)
        return None
    return stored


def _timing(emit_s: float, oz_s: float, decide_s: float, rounds: list[Round], total_s: float) -> Timing:
    """Where one TU's time went: the front end, the -Oz baseline, the model, the candidates'
    opt + codegen (the rest: IR parsing, the cache, the copy, bookkeeping)."""
    model_s = sum(r.model_s for r in rounds)
    cand_s = sum(r.candidates_s for r in rounds)
    if not model_s and not cand_s:
        cand_s = decide_s  # a cache replay or -Oz only: the decision is opt + codegen, no model
    return Timing(frontend_s=round(emit_s, 4), oz_baseline_s=round(oz_s, 4), model_s=round(model_s, 4),
                  candidates_s=round(cand_s, 4), total_s=round(total_s, 4))
