"""The records clang-llm writes and reads back, as typed dataclasses serialized here and only here.

- `Finding`: what the real toolchain said about one pass list (plus, for a model candidate, what
  the model predicted about it).
- `Candidate`, `Round`: one answer of the model and its finding; one round of the feedback loop.
- `TURecord`: the decision record of one compiled object (`clang-llm-tool explain`, the database).
- `Event`: the counters one compile adds to the statistics (`clang-llm-tool stats`).

`to_json` gives plain JSON-ready dicts; `from_json` reads what `to_json` wrote (and tolerates
records of older wrappers that lack newer fields). Label records (`autotune`) and evaluation
records (`eval`) are read through `LabelRecord` and `EvalRecord`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from clang_llm.objsize import Sizes

SCHEMA_VERSION = 2  # of TURecord; 1 had untyped rounds
JsonDict = dict[str, Any]


def _sizes(d: JsonDict | None) -> Sizes | None:
    return Sizes(**d) if d else None


@dataclass
class Finding:
    """What the real toolchain said about one pass list (validation result).

    Built up while its tools run (`build.tubuilder.measuring`); never changed after it is
    handed on: a candidate with other predictions gets a copy (`with_predictions`)."""

    pass_list: str
    valid: bool  # every token in the vocabulary, opt accepted and ran it, codegen succeeded
    error: str | None = None  # parse / opt / codegen error text (trimmed)
    error_kind: str | None = None  # parse | unknown-pass | opt-error | opt-crash | timeout | codegen
    count_before: int | None = None  # real instruction count of the unoptimized IR
    count_after: int | None = None  # real instruction count after opt
    sizes: Sizes | None = None
    object_path: Path | None = None  # object built from this list (inside the private temp dir)
    ir_path: Path | None = None  # optimized bitcode (for Long feedback / BLEU)
    seconds: float = 0.0
    # Filled by the loop for model candidates:
    predicted_before: int | None = None
    predicted_after: int | None = None
    generated_ir_parses: bool | None = None
    generated_ir_error: str | None = None
    bleu: float | None = None

    def with_predictions(self, before: int | None, after: int | None) -> Finding:
        """A copy carrying a model's predicted counts (identical lists share one opt run)."""
        return replace(self, predicted_before=before, predicted_after=after, generated_ir_parses=None,
                       generated_ir_error=None, bleu=None)

    def to_json(self) -> JsonDict:
        d = asdict(self)
        d["object_path"] = d["ir_path"] = None  # temp files: meaningless once the TU is done
        return d

    @classmethod
    def from_json(cls, d: JsonDict) -> Finding:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known and k not in ("object_path", "ir_path", "sizes")}
        return cls(**kw, sizes=_sizes(d.get("sizes")))


@dataclass(frozen=True)
class Candidate:
    """One answer of the model: its text, the pass list read from it, and the list's finding."""

    answer: str
    finding: Finding
    pass_list: str | None = None  # None: the answer named no runnable list (see problems)
    problems: tuple[str, ...] = ()

    def to_json(self) -> JsonDict:
        return {"answer": self.answer, "pass_list": self.pass_list, "problems": list(self.problems),
                "finding": self.finding.to_json()}

    @classmethod
    def from_json(cls, d: JsonDict) -> Candidate:
        return cls(answer=d.get("answer", ""), pass_list=d.get("pass_list"), problems=tuple(d.get("problems", ())),
                   finding=Finding.from_json(d["finding"]))


@dataclass(frozen=True)
class Round:
    """One step of a decision: a model round, a replay from the cache, or an error that ended it."""

    round: int = 0  # 1-based model round; 0 for a cache replay or an error before any round
    prompt_tokens: int | None = None
    candidates: tuple[Candidate, ...] = ()
    opt_evaluations: int = 0  # distinct lists run through opt + codegen in this round
    model_s: float = 0.0
    candidates_s: float = 0.0
    feedback: str | None = None  # the feedback text the next round's prompt got
    stop: str | None = None  # why the rounds stopped here, if early
    error: str | None = None
    cache: str | None = None  # "hit" (decision replayed) or "object" (stored object shipped)
    pass_list: str | None = None  # the replayed list
    finding: Finding | None = None  # the replayed list's finding

    def to_json(self) -> JsonDict:
        d: JsonDict = {"round": self.round}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("round", "candidates", "finding") or v is None:
                continue
            d[f.name] = v
        if self.candidates:
            d["candidates"] = [c.to_json() for c in self.candidates]
        if self.finding is not None:
            d["finding"] = self.finding.to_json()
        return d

    @classmethod
    def from_json(cls, d: JsonDict) -> Round:
        known = {f.name for f in fields(cls)} - {"candidates", "finding"}
        return cls(**{k: v for k, v in d.items() if k in known},
                   candidates=tuple(Candidate.from_json(c) for c in d.get("candidates", ())),
                   finding=Finding.from_json(d["finding"]) if d.get("finding") else None)

    def findings(self) -> list[Finding]:
        """The findings of this round's candidates (the replayed one for a cache hit)."""
        return [c.finding for c in self.candidates] or ([self.finding] if self.finding else [])


@dataclass(frozen=True)
class Timing:
    """Where one TU's time went (seconds)."""

    frontend_s: float = 0.0
    oz_baseline_s: float = 0.0
    model_load_s: float = 0.0
    model_s: float = 0.0
    candidates_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class TURecord:
    """The decision record of one object: what was tried, what the toolchain said, what shipped."""

    object: str
    source: str
    cwd: str
    argv: tuple[str, ...]
    llm_flags: tuple[str, ...]
    oz: Finding  # clang -Oz's object (the reference)
    chosen: Finding  # what shipped
    reason: str
    settings: JsonDict = field(default_factory=dict)  # Settings.public(): no secrets
    ir_hash: str | None = None  # None: the IR was never built (--llm-off)
    count_before: int | None = None
    rounds: tuple[Round, ...] = ()
    model_id: str = "none"
    model_calls: int = 0
    remote_calls: int = 0
    backend: str = ""
    cache_hit: bool = False
    seconds: float = 0.0
    timing: Timing = field(default_factory=Timing)
    opt_evaluations: int | None = None  # opt + codegen runs incl. the -Oz baseline; None: none were run
    schema: int = SCHEMA_VERSION

    @property
    def optimized(self) -> bool:
        """Shipped something other than clang's -Oz object."""
        return self.chosen.pass_list != "Oz"

    def to_json(self) -> JsonDict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(argv=list(self.argv), llm_flags=list(self.llm_flags), oz=self.oz.to_json(),
                 chosen=self.chosen.to_json(), rounds=[r.to_json() for r in self.rounds],
                 timing=asdict(self.timing))
        return d

    @classmethod
    def from_json(cls, d: JsonDict) -> TURecord:
        known = {f.name for f in fields(cls)} - {"oz", "chosen", "rounds", "timing", "argv", "llm_flags"}
        timing = {k: v for k, v in (d.get("timing") or {}).items() if k in {f.name for f in fields(Timing)}}
        return cls(**{k: v for k, v in d.items() if k in known},
                   argv=tuple(d.get("argv", ())), llm_flags=tuple(d.get("llm_flags", ())),
                   oz=Finding.from_json(d["oz"]), chosen=Finding.from_json(d["chosen"]),
                   rounds=tuple(Round.from_json(r) for r in d.get("rounds", ())), timing=Timing(**timing))

    def event(self, kind: str, reason: str) -> Event:
        """The statistics this compile adds."""
        oz, ch = self.oz, self.chosen
        return Event(kind=kind, reason=reason, count_before=self.count_before, count_after=ch.count_after,
                     oz_count=oz.count_after, text=ch.sizes.text if ch.sizes else None,
                     alloc=ch.sizes.alloc if ch.sizes else None, oz_text=oz.sizes.text if oz.sizes else None,
                     oz_alloc=oz.sizes.alloc if oz.sizes else None, cache_hit=int(self.cache_hit),
                     model_calls=self.model_calls, remote_calls=self.remote_calls,
                     opt_evals=self.opt_evaluations,
                     model_s=self.timing.model_s if self.opt_evaluations is not None else None)


@dataclass(frozen=True)
class Event:
    """One row of the statistics: an outcome, its reason, and (for compiled TUs) its sizes."""

    kind: str  # optimized | oz | fallback | passthrough | daemon
    reason: str
    count_before: int | None = None
    count_after: int | None = None
    oz_count: int | None = None
    text: int | None = None
    alloc: int | None = None
    oz_text: int | None = None
    oz_alloc: int | None = None
    cache_hit: int = 0
    model_calls: int = 0
    remote_calls: int = 0
    opt_evals: int | None = None
    model_s: float | None = None

    def columns(self) -> dict[str, int | float | str | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
