"""Shared types of the optimizer: what a candidate is, what validating it found, the decision.

The driver hands an optimizer a `TUContext` (the unoptimized IR and an `evaluate` function that
runs the real opt + codegen); the optimizer returns a `Decision`. Shipped code is always the
object built by `evaluate` from a validated pass list — the model never writes shipped code.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from clang_llm.config import Settings
from clang_llm.passes import PassList
from clang_llm.records import Finding, Round

Evaluate = Callable[[PassList], Finding]


@dataclass
class TUContext:
    """Everything an optimizer may look at for one translation unit."""

    ir_path: Path  # unoptimized bitcode
    ir_text: str  # its textual form (normalized later for prompts)
    count_before: int
    # The -Oz baseline (always valid; what clang -Oz -c ships), or its run still going: the
    # driver starts it beside the model, whose first prompt needs only the unoptimized IR.
    baseline: Finding | Future[Finding]
    evaluate: Evaluate
    settings: Settings
    source: str = ""
    # The same evaluation with `opt -verify-each`, whose object may ship without a re-run: the
    # loop uses it for a decision's only candidate (the driver would re-run it verified anyway).
    evaluate_verified: Evaluate | None = None

    @property
    def oz(self) -> Finding:
        """The baseline, waiting for its run if need be (a failed run raises its error here)."""
        b = self.baseline
        return b.result() if isinstance(b, Future) else b


@dataclass
class Decision:
    """The optimizer's answer: the chosen finding (Oz when nothing beat it) and the transcript."""

    chosen: Finding
    reason: str  # why this one: "beats-oz", "no-candidate-beat-oz", "model-unavailable", ...
    rounds: list[Round] = field(default_factory=list)  # transcript for `explain`
    model_calls: int = 0
    remote_calls: int = 0  # requests sent to a model server (0 in-process)
    findings: list[Finding] = field(default_factory=list)  # every evaluated candidate, in order


class Optimizer(Protocol):
    def optimize(self, tu: TUContext) -> Decision: ...


class OzOnly:
    """The optimizer of last resort: no candidates, the -Oz object is the answer."""

    def __init__(self, reason: str = "oz-only") -> None:
        self.reason = reason

    def optimize(self, tu: TUContext) -> Decision:
        return Decision(chosen=tu.oz, reason=self.reason)


def select_best(oz: Finding, findings: list[Finding]) -> tuple[Finding, str]:
    """Pick the smallest validated object by .text (then alloc bytes, instruction count, order).

    A candidate is eligible only if it is valid and not larger than -Oz on .text *and* on all
    allocated bytes (invariant 3). Ties keep the earlier candidate, so the choice is deterministic.
    """
    assert oz.sizes is not None
    best, best_key = oz, (oz.sizes.text, oz.sizes.alloc, oz.count_after or 0, -1)
    for i, f in enumerate(findings):
        if not f.valid or f.sizes is None or not f.sizes.not_larger_than(oz.sizes):
            continue
        key = (f.sizes.text, f.sizes.alloc, f.count_after or 0, i)
        if key < best_key:
            best, best_key = f, key
    if best is oz:
        return oz, "no-candidate-beat-oz"
    return best, "beats-oz"
