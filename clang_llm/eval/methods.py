"""Evaluation methods: how each one picks a pass list for a module, given its -Oz baseline.

Method names (a ``+backup`` suffix keeps the -Oz object whenever the pick is larger than -Oz
on `.text` or alloc bytes, or invalid -- what the driver does; without it the pick ships as is,
and only a method with no valid candidate at all falls back to -Oz):

- ``oz``            clang -Oz (the baseline: every improvement is measured against it);
- ``autotune@B``    the autotuner's search with B opt evaluations (train-split winners broadcast);
- ``coreset@k``     the k lists that win most often on the TRAIN labels, each tried, best kept;
- ``model@k``       the model loop, k samples, one round;
- ``feedback-<fast|short|long>@R``  the model loop, one sample per round, R rounds of feedback;
- ``rank@R[sS][rN]``  R stored lists ranked by the model (a cllm-v2 model's pool in one forward
  pass; a model without a pool writes its lists instead), S lists it writes itself, N rounds of
  Short feedback (each round ranks again, skipping what was tried);
- ``default``       the model loop with the wrapper's own defaults (what `CC=clang-llm` does).

Opt evaluations counted for a method include the -Oz baseline (the driver always runs it).
Every method but the autotuner decides through the compile path's decision core
(`optimizer/decide.py`): the same TU context, the same `decide`, and with ``+backup`` the same
`what_ships` -- an evaluation measures what `CC=clang-llm` ships.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clang_llm.build.tubuilder import TUBuilder
from clang_llm.config import Settings
from clang_llm.errors import MethodError
from clang_llm.optimizer.base import Decision
from clang_llm.optimizer.decide import (
    StoredLists,
    base_runs,
    decide,
    reruns,
    tu_context,
    verified_choice,
    what_ships,
)
from clang_llm.records import Candidate, EvalRecord, Finding, ListResult, ModelStats
from clang_llm.train.autotune import search_module, top_lists
from clang_llm.train.configs import AutotuneConfig
from clang_llm.train.coreset import coreset_lists  # noqa: F401  (the coreset methods' lists)

if TYPE_CHECKING:
    from clang_llm.model import Model
    from clang_llm.optimizer.loop import ModelLoop

KINDS = ("oz", "autotune", "coreset", "model", "feedback", "rank", "default")
MODEL_KINDS = ("model", "feedback", "rank", "default")
_NAME = re.compile(r"^(oz|default|autotune@\d+|coreset@\d+|model@\d+|rank@\d+(s\d+)?(r\d+)?|"
                   r"feedback-(fast|short|long)@\d+)(\+backup)?$")
_RANK = re.compile(r"^(\d+)(?:s(\d+))?(?:r(\d+))?$")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name: kind, its number (B, k or R), feedback form, -Oz backup."""

    kind: str
    n: int = 0
    form: str = ""
    backup: bool = False
    samples: int = 0  # rank: lists the model writes beside the R ranked ones
    rounds: int = 1  # rank: rounds of feedback

    @property
    def name(self) -> str:
        if self.kind in ("oz", "default"):
            base = self.kind
        elif self.kind == "rank":
            base = f"rank@{self.n}" + (f"s{self.samples}" if self.samples else "") + (
                f"r{self.rounds}" if self.rounds > 1 else "")
        elif self.kind == "feedback":
            base = f"feedback-{self.form}@{self.n}"
        else:
            base = f"{self.kind}@{self.n}"
        return base + ("+backup" if self.backup and self.kind != "oz" else "")

    @property
    def family(self) -> str:
        """The curve this method belongs to in plots (name without the number)."""
        fam = f"feedback-{self.form}" if self.kind == "feedback" else self.kind
        if self.kind == "rank" and (self.samples or self.rounds > 1):
            fam += (f"-s{self.samples}" if self.samples else "") + (f"-r{self.rounds}" if self.rounds > 1 else "")
        return fam + ("+backup" if self.backup and self.kind != "oz" else "")

    @property
    def is_model(self) -> bool:
        return self.kind in MODEL_KINDS


def parse_method(text: str, backup: bool = False) -> MethodSpec:
    """Parse ``coreset@4+backup`` and friends; `backup` adds the -Oz backup to any method."""
    t = text.strip()
    if not _NAME.match(t):
        raise MethodError(f"unknown method {text!r} (oz, default, autotune@B, coreset@k, model@k, "
                          "rank@R[sS][rN], feedback-<fast|short|long>@R, optional +backup)")
    has_backup = t.endswith("+backup") or backup
    t = t.removesuffix("+backup")
    if t == "oz":
        return MethodSpec("oz")
    if t == "default":
        return MethodSpec("default", 0, "", has_backup)
    head, n = t.split("@")
    if head == "rank":
        m = _RANK.match(n)
        assert m is not None
        r, samples, rounds = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 1)
        if r < 1 or rounds < 1:
            raise MethodError(f"{text!r}: R and N must be >= 1")
        return MethodSpec("rank", r, "", has_backup, samples=samples, rounds=rounds)
    if int(n) < 1:
        raise MethodError(f"{text!r}: the number after @ must be >= 1")
    if head.startswith("feedback-"):
        return MethodSpec("feedback", int(n), head.removeprefix("feedback-"), has_backup)
    return MethodSpec(head, int(n), "", has_backup)


def _model_identity(model_dir: str) -> str:
    """The model's content id: a retrained model is a different method, a moved copy is not."""
    try:
        from clang_llm.model import model_content_id
        from clang_llm.optimizer.factory import default_model_dir

        return model_content_id(Path(model_dir) if model_dir else default_model_dir())
    except Exception:
        return model_dir


def fingerprint(spec: MethodSpec, setup: MethodSetup) -> str:
    """What, besides the module, decides a method's result: part of the results-cache key."""
    parts: dict[str, Any] = {"name": spec.name, "timeout": setup.timeout, "verify": setup.verify_each}
    if not setup.verify_each:
        parts["confirm"] = 1  # unverified screening, the chosen list re-verified (what_ships)
    if spec.kind == "coreset":
        parts["lists"] = setup.coreset[: spec.n]
    if spec.kind == "autotune":
        parts["broadcast"], parts["seed"] = setup.broadcast, setup.seed
    if spec.is_model:  # rank@k too: another model ranks otherwise
        parts["model"] = _model_identity(str(setup.model_settings.get("model", "")))
        parts["settings"] = setup.model_settings
        if spec.kind == "default":  # the wrapper's defaults are part of what "default" means
            from clang_llm.config import Settings

            d = Settings()
            parts["defaults"] = [d.rounds, d.samples, d.rank, d.feedback, d.temperature, d.max_new_tokens, d.seed]
        from clang_llm.optimizer.loop import LOOP_VERSION

        parts["loop"] = LOOP_VERSION
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class MethodSetup:
    """Everything shared by all modules: lists from the train labels, timeouts, model settings."""

    coreset: list[str] = dataclasses.field(default_factory=list)  # enough for the largest k
    broadcast: list[str] = dataclasses.field(default_factory=list)  # train-split winners for autotune@B
    timeout: float = 20.0
    verify_each: bool = True
    seed: int = 0
    model_settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # Settings overrides


def _key(f: Finding) -> tuple[int, int, int]:
    assert f.sizes is not None
    return (f.sizes.text, f.sizes.alloc, f.count_after or 0)


def _shipped(builder: TUBuilder, oz: Finding, decision: Decision, backup: bool) -> tuple[Finding, str | None, int]:
    """What the method ships, the list its verified rerun refused (if one was), and the opt runs
    that rerun took (0 or 1, as the driver counts them). With the -Oz backup: exactly what the
    driver ships (`what_ships`). Without: the smallest valid candidate (-Oz only when none is
    valid) after the same verified rerun."""
    if backup:
        shipped = what_ships(builder, oz, decision)
        refused = decision.chosen.pass_list if shipped.chosen is oz and decision.chosen is not oz else None
        return shipped.chosen, refused, reruns(oz, decision.chosen)
    valid = [f for f in decision.findings if f.valid and f.sizes is not None]
    pick = min(valid, key=_key) if valid else oz
    chosen, why = verified_choice(builder, oz, pick)
    return chosen, (pick.pass_list if why else None), reruns(oz, pick)


def _outcome(f: Finding) -> ListResult:
    assert f.sizes is not None
    return ListResult(pass_list=f.pass_list, text=f.sizes.text, alloc=f.sizes.alloc, count=f.count_after)


# The method's part of a module's record (module and method are filled in by the run).
_result = functools.partial(EvalRecord, "", "")


_MODELS: dict[str, Model] = {}


def model_loop_class() -> type[ModelLoop]:
    """ModelLoop, imported lazily (a broken model package makes the model methods unavailable)."""
    from clang_llm.optimizer.loop import ModelLoop

    return ModelLoop


def load_model_cached(model_dir: str, threads: int = 1) -> Model:
    """One model per worker process and directory, shared by every model method."""
    from clang_llm.model import load_model
    from clang_llm.optimizer.factory import default_model_dir

    key = f"{model_dir}|{threads}"
    if key not in _MODELS:
        _MODELS[key] = load_model(Path(model_dir) if model_dir else default_model_dir(), intra_threads=threads)
    return _MODELS[key]


def _candidates(decision: Decision, recorded: list[Finding]) -> list[Candidate]:
    """Every candidate the loop produced, parse failures included (they are in its rounds)."""
    found = [c for r in decision.rounds for c in r.all_candidates()]
    return found if len(found) >= len(recorded) else [Candidate(answer="", finding=f) for f in recorded]


def _model_stats(cands: list[Candidate]) -> ModelStats:
    n = len(cands)
    pred = [(c.prediction.count_after, c.finding.count_after) for c in cands
            if c.prediction.count_after is not None and c.finding.count_after is not None]
    gen = [c.prediction.ir_parses for c in cands if c.prediction.ir_parses is not None]
    bleu = [c.prediction.bleu for c in cands if c.prediction.bleu is not None]
    return ModelStats(
        candidates=n, valid=sum(1 for c in cands if c.finding.valid),
        pred_n=len(pred), pred_exact=sum(1 for p, r in pred if p == r),
        pred_abs_err=float(sum(abs(p - r) for p, r in pred)),
        ir_n=len(gen), ir_parsed=sum(1 for g in gen if g),
        bleu_n=len(bleu), bleu_sum=float(sum(bleu)),
    )


def run_method(spec: MethodSpec, setup: MethodSetup, builder: TUBuilder, oz: Finding,
               ir_text: str | None = None, source: str = "", module_id: str = "") -> EvalRecord:
    """Run one method on one module whose -Oz baseline is `oz`."""
    t0 = time.monotonic()
    evals = 1  # the -Oz baseline
    assert oz.sizes is not None and builder.count_before is not None
    refused: str | None = None
    if spec.kind == "oz":
        chosen = oz
    elif spec.kind == "autotune":
        cfg = AutotuneConfig(budget=spec.n, timeout=setup.timeout, module_timeout=max(60.0, spec.n * setup.timeout),
                             seed=setup.seed, verify_each=setup.verify_each)
        search = search_module(builder, oz, cfg, setup.broadcast, seed_text=module_id)
        best = top_lists(search.results, 1)[0]
        return _result("ok", chosen=best, evals=evals + search.evals, wall_s=time.monotonic() - t0 + oz.seconds)
    elif spec.kind == "coreset":
        recorded: list[Finding] = []
        tu = tu_context(builder, oz, ir_text or "", Settings(), source=source, screen_verified=setup.verify_each,
                        record=recorded.append)
        decision = decide(StoredLists(setup.coreset[: spec.n]), tu)
        chosen, refused, rerun = _shipped(builder, oz, decision, spec.backup)
        evals += len(recorded) + base_runs(oz, recorded) + rerun
    else:
        return _run_model(spec, setup, builder, oz, ir_text, source, t0)
    return _result("ok", chosen=_outcome(chosen), evals=evals, wall_s=time.monotonic() - t0 + oz.seconds,
                   refused=refused)


def _run_model(spec: MethodSpec, setup: MethodSetup, builder: TUBuilder, oz: Finding, ir_text: str | None,
               source: str, t0: float) -> EvalRecord:
    """Thin adapter to the model loop: a TUContext whose evaluate records every candidate."""
    try:
        loop_cls = model_loop_class()
    except Exception as e:  # ImportError or a broken module: the method is unavailable
        return _result("unavailable", reason=f"ModelLoop import failed: {type(e).__name__}: {e}"[:300])
    overrides: dict[str, Any] = {"jobs": 1, **setup.model_settings}
    if spec.kind == "model":
        overrides.update(samples=spec.n, rounds=1, rank=0)
    elif spec.kind == "rank":
        overrides.update(rank=spec.n, samples=spec.samples, rounds=spec.rounds, feedback="short")
    elif spec.kind == "feedback":
        overrides.update(samples=1, rounds=spec.n, feedback=spec.form, rank=0)
    settings = Settings(**{k: v for k, v in overrides.items() if k in Settings.__dataclass_fields__})
    try:
        model = load_model_cached(settings.model, threads=int(overrides.get("threads", 1)))
        loop = loop_cls(model, settings)
    except Exception as e:
        return _result("unavailable", reason=f"model failed to load: {type(e).__name__}: {e}"[:300])
    if ir_text is None:
        from clang_llm import ir

        ir_text = str(ir.parse(builder.in_bc))
    recorded: list[Finding] = []
    tu = tu_context(builder, oz, ir_text, settings, source=source, screen_verified=setup.verify_each,
                    record=recorded.append)
    decision = decide(loop, tu)  # as the driver decides: a failing model or loop gives -Oz, with the reason
    if decision.reason == "optimizer-error":
        return _result("error", reason=f"the loop raised: {decision.rounds[-1].error if decision.rounds else ''}"[:300],
                       evals=1 + len(recorded), wall_s=time.monotonic() - t0 + oz.seconds)
    chosen, refused, rerun = _shipped(builder, oz, decision, spec.backup)
    cands = _candidates(decision, recorded)
    return _result("ok", chosen=_outcome(chosen), evals=1 + len(recorded) + base_runs(oz, recorded) + rerun,
                        wall_s=time.monotonic() - t0 + oz.seconds, model=_model_stats(cands),
                        decision_reason=decision.reason, model_calls=decision.model_calls, refused=refused)
