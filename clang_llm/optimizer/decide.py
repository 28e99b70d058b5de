"""The decision core: which lists a TU tries and what ships, one code path for the compile and
for the evaluation.

The driver (`driver/pipeline.py`) and `clang-llm-tool eval` (`eval/methods.py`) both build the
TU's context with `tu_context`, get the optimizer's decision from `decide`, and ask
`what_ships` for the object that may leave the builder: an evaluation measures what
`CC=clang-llm` would ship, nothing re-implemented. Invariants 2 and 3 are checked here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace

from clang_llm.build.tubuilder import TUBuilder
from clang_llm.config import Settings
from clang_llm.errors import Fallback, ModelError, PassListError
from clang_llm.objsize import object_sizes
from clang_llm.optimizer.base import Decision, Optimizer, TUContext, select_best
from clang_llm.passes import PassList, parse_pass_list
from clang_llm.records import Finding, Round

log = logging.getLogger("clang_llm")

Recorder = Callable[[Finding], None]


def tu_context(builder: TUBuilder, baseline: Finding | Future[Finding], ir_text: str, settings: Settings,
               source: str = "", screen_verified: bool = False, record: Recorder | None = None) -> TUContext:
    """The context every optimizer sees. Candidates run without -verify-each (opt is 2-5x cheaper
    so; the one chosen to ship is re-run with it by `what_ships`), a list extending -Oz only its
    own passes on the baseline's output; a decision's only list runs verified in the first place
    (it needs no second run; `TUBuilder.verified` says which passes are verified).
    `screen_verified`: every candidate runs verified (an evaluation's
    --verify). `record` sees every finding, in order (an evaluation counts them)."""
    assert builder.count_before is not None

    def recorded(f: Finding) -> Finding:
        if record is not None:
            record(f)
        return f

    def verified(pl: PassList) -> Finding:
        return recorded(builder.evaluate_after(tu.oz, pl, verify_each=True))

    def screened(pl: PassList) -> Finding:
        return recorded(builder.evaluate_after(tu.oz, pl))

    tu = TUContext(ir_path=builder.in_bc, ir_text=ir_text, count_before=builder.count_before, baseline=baseline,
                   evaluate=verified if screen_verified else screened, settings=settings, source=source,
                   evaluate_verified=verified)
    return tu


def decide(optimizer: Optimizer, tu: TUContext) -> Decision:
    """The optimizer's decision; a failing model or optimizer gives -Oz with the reason (one log
    line), never an exception -- except the baseline's own failure (`Fallback`)."""
    try:
        return optimizer.optimize(tu)
    except Fallback:
        raise  # the baseline's own failure, met by the optimizer
    except ModelError as e:  # the model or its server failed: one line, no traceback
        log.warning("%s: model failed, using -Oz: %s", tu.source, e)
        return Decision(chosen=tu.oz, reason=e.reason)
    except Exception as e:  # noqa: BLE001  (a broken optimizer must not break the build)
        log.exception("optimizer raised")
        return Decision(chosen=tu.oz, reason="optimizer-error", rounds=[Round(error=repr(e)[:500])])


def replay(text: str, tu: TUContext) -> Decision | None:
    """A cached decision's list, rebuilt with no model call; None if it no longer parses."""
    if text.strip() == "Oz":
        return Decision(chosen=tu.oz, reason="cached-oz", rounds=[Round(cache="hit", pass_list="Oz")])
    try:
        pl = parse_pass_list(text)
    except PassListError:
        return None
    f = (tu.evaluate_verified or tu.evaluate)(pl)  # the one list: if it ships, this run is its verified one
    chosen, reason = select_best(tu.oz, [f])
    return Decision(chosen=chosen, reason=f"cached-{reason}", rounds=[Round(cache="hit", pass_list=text, finding=f)],
                    findings=[f])


def verified_choice(builder: TUBuilder, oz: Finding, chosen: Finding) -> tuple[Finding, str]:
    """`chosen` after its whole rerun with `opt -verify-each` from the source IR (`TUBuilder.verified`):
    (what may ship, "") or (-Oz, why the list was refused)."""
    if chosen is oz:
        return oz, ""
    again = builder.verified(chosen, oz)
    if isinstance(again, str):
        return oz, "verify-each-timeout" if again == "timeout" else "verify-each-failed"
    return again, ""


def base_runs(oz: Finding, tried: list[Finding]) -> int:
    """The opt runs of base pipelines other than -Oz that the lists in `tried` continued from
    (`TUBuilder.base_output`: one per base and TU), as the driver counts them."""
    bases = set()
    for f in tried:
        try:
            pl = parse_pass_list(f.pass_list)
        except PassListError:
            continue
        if TUBuilder.extends(pl) and pl.tokens[0] != oz.pass_list:
            bases.add(pl.tokens[0])
    return len(bases)


def reruns(oz: Finding, chosen: Finding) -> int:
    """The opt runs `verified_choice` spends on `chosen`: one, unless it is -Oz or its screening
    run was the verified one already."""
    return 0 if chosen is oz or chosen.verified else 1


def what_ships(builder: TUBuilder, oz: Finding, decision: Decision) -> Decision:
    """The decision as it may ship (invariants 2 and 3, checked again whatever the optimizer said):
    the chosen object must be one this builder made, re-measured not larger than -Oz in `.text`
    and in allocated bytes, and its list must pass a whole verified rerun; else -Oz, with the
    reason."""
    chosen, reason = decision.chosen, decision.reason
    if chosen is not oz and not (
        chosen.valid and chosen.object_path in builder.objects and oz.sizes is not None
        and object_sizes(chosen.object_path).not_larger_than(oz.sizes)
    ):
        chosen, reason = oz, "invalid-choice-replaced-by-oz"
    shipped, refused = verified_choice(builder, oz, chosen)
    return replace(decision, chosen=shipped, reason=refused or reason)


class StoredLists:
    """An optimizer without a model: the given stored lists, tried in their order (the model-free
    baselines: the coreset, a coverage order); the best validated object wins."""

    def __init__(self, lists: list[str]) -> None:
        self.lists = lists
        self.model_id = "none"

    def optimize(self, tu: TUContext) -> Decision:
        findings = []
        for text in self.lists:
            try:
                pl = parse_pass_list(text)
            except PassListError:
                continue
            findings.append(tu.evaluate(pl))
        chosen, reason = select_best(tu.oz, findings)
        return Decision(chosen=chosen, reason=reason, findings=findings)

