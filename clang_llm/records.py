"""The records clang-llm writes and reads back, as typed dataclasses serialized here and only here.

- `Finding`: what the real toolchain said about one pass list (toolchain facts only).
- `Prediction`, `Candidate`, `Round`: what one answer of the model claimed, the answer with its
  list's finding, one round of the feedback loop.
- `TURecord`: the decision record of one compiled object (`clang-llm-tool explain`, the database).

`to_json` gives plain JSON-ready dicts; `from_json` reads what `to_json` wrote (and tolerates
records of older wrappers that lack newer fields). Label records (`autotune`) and evaluation
records (`eval`) are read through `LabelRecord` and `EvalRecord`.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from clang_llm.atomic import atomic_write_bytes
from clang_llm.objsize import Sizes
from clang_llm.safe_text import path_text, public_flags

log = logging.getLogger("clang_llm")

SCHEMA_VERSION = 3  # of TURecord; 1 had untyped rounds, 2 kept the model's predictions in each finding
JsonDict = dict[str, Any]


def _flags(d: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}


def _sizes(d: JsonDict | None) -> Sizes | None:
    return Sizes(**d) if d else None


@dataclass
class Finding:
    """What the real toolchain said about one pass list: toolchain facts only (the model's claims
    about an answer are its `Candidate`'s `Prediction`).

    Built up while its tools run (`build.tubuilder.measuring`); never changed after it is handed
    on, so candidates that name the same list share one finding."""

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
    verified: bool = False  # built by one run of `opt -verify-each` from the source IR (may ship as is)

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
class Prediction:
    """What the model claimed in one answer, and how the IR it generated (if any) fared."""

    count_before: int | None = None
    count_after: int | None = None
    ir_parses: bool | None = None  # None: the answer carried no IR
    ir_error: str | None = None
    bleu: float | None = None  # generated IR against the IR opt produced

    def correct_count(self, finding: Finding) -> bool:
        """The predicted instruction count after opt is the real one."""
        return self.count_after is not None and self.count_after == finding.count_after

    def to_json(self) -> JsonDict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: JsonDict) -> Prediction:
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


_V2_PREDICTION = {"count_before": "predicted_before", "count_after": "predicted_after",
                  "ir_parses": "generated_ir_parses", "ir_error": "generated_ir_error", "bleu": "bleu"}


@dataclass(frozen=True)
class Candidate:
    """One answer of the model: its text, the pass list read from it, what it predicted, and the
    list's finding (shared with every other answer that names the same list)."""

    answer: str
    finding: Finding
    pass_list: str | None = None  # None: the answer named no runnable list (see problems)
    problems: tuple[str, ...] = ()
    prediction: Prediction = field(default_factory=Prediction)

    def to_json(self) -> JsonDict:
        return {"answer": self.answer, "pass_list": self.pass_list, "problems": list(self.problems),
                "prediction": self.prediction.to_json(), "finding": self.finding.to_json()}

    @classmethod
    def from_json(cls, d: JsonDict) -> Candidate:
        if "prediction" in d:
            pred = Prediction.from_json(d["prediction"])
        else:  # schema 2 kept the predictions in the finding
            pred = Prediction(**{k: d["finding"].get(v) for k, v in _V2_PREDICTION.items()})
        return cls(answer=d.get("answer", ""), pass_list=d.get("pass_list"), problems=tuple(d.get("problems", ())),
                   finding=Finding.from_json(d["finding"]), prediction=pred)


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

    def all_candidates(self) -> list[Candidate]:
        """This round's candidates; a cache replay's list as one candidate without an answer."""
        if self.candidates:
            return list(self.candidates)
        return [Candidate(answer="", finding=self.finding, pass_list=self.pass_list)] if self.finding else []


@dataclass(frozen=True)
class Timing:
    """Where one TU's time went (seconds)."""

    frontend_s: float = 0.0
    oz_baseline_s: float = 0.0
    model_load_s: float = 0.0
    model_s: float = 0.0
    candidates_s: float = 0.0
    # Of the baseline's, the candidates' and the verified run's time, what clang's backend took
    # (the rest is opt); summed over every object built for the TU.
    codegen_s: float = 0.0
    verify_s: float = 0.0  # the chosen list's verified rerun (0 when its screening run was verified)
    total_s: float = 0.0


@dataclass(frozen=True)
class Event:
    """One row of the `events` table (`clang-llm-tool stats`): an outcome, its reason, and (for
    compiled TUs) its sizes."""

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
    opt_evals: int | None = None  # opt runs for the TU: the baseline, the candidates, the verified rerun
    model_s: float | None = None
    # Where the TU's time went (seconds; None: no opt ran, e.g. a stored object shipped).
    frontend_s: float | None = None
    oz_s: float | None = None
    candidates_s: float | None = None
    codegen_s: float | None = None
    verify_s: float | None = None
    total_s: float | None = None

    def columns(self) -> dict[str, int | float | str | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TURecord:
    """The decision record of one object: what was tried, what the toolchain said, what shipped."""

    object: str
    source: str
    cwd: str
    argv: tuple[str, ...]
    llm_flags: dict[str, str]  # the --llm-* flags of this command line, by name
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
    speculative: bool = False  # plain clang -Oz ran beside the IR step (a small source, an idle slot)
    schema: int = SCHEMA_VERSION

    @property
    def optimized(self) -> bool:
        """Shipped something other than clang's -Oz object."""
        return self.chosen.pass_list != "Oz"

    def to_json(self) -> JsonDict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        # Paths of any bytes as text; no credential of a URL flag (a record is no place for one).
        d.update(object=path_text(self.object), source=path_text(self.source), cwd=path_text(self.cwd),
                 argv=[path_text(a) for a in self.argv], llm_flags=public_flags(self.llm_flags),
                 oz=self.oz.to_json(),
                 chosen=self.chosen.to_json(), rounds=[r.to_json() for r in self.rounds],
                 timing=asdict(self.timing))
        return d

    @classmethod
    def from_json(cls, d: JsonDict) -> TURecord:
        known = {f.name for f in fields(cls)} - {"oz", "chosen", "rounds", "timing", "argv", "llm_flags"}
        timing = {k: v for k, v in (d.get("timing") or {}).items() if k in {f.name for f in fields(Timing)}}
        return cls(**{k: v for k, v in d.items() if k in known},
                   argv=tuple(d.get("argv", ())), llm_flags=_flags(d.get("llm_flags")),
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
                     opt_evals=self.opt_evaluations, **self._time_columns())

    def _time_columns(self) -> dict[str, float | None]:
        t = self.timing
        if self.opt_evaluations is None:
            return {"frontend_s": t.frontend_s or None, "total_s": t.total_s or None}
        return {"model_s": t.model_s, "frontend_s": t.frontend_s, "oz_s": t.oz_baseline_s,
                "candidates_s": t.candidates_s, "codegen_s": t.codegen_s, "verify_s": t.verify_s,
                "total_s": t.total_s}


# -- labels (`autotune`) and evaluation results (`eval`) -----------------------------------------

def _drop_none(d: JsonDict) -> JsonDict:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class ObjectSize:
    """What an object measured: `.text` and allocated bytes, and the IR instructions after opt."""

    text: int
    alloc: int
    count: int | None = None

    def to_json(self) -> JsonDict:
        return {"text": self.text, "alloc": self.alloc, "count": self.count}

    @classmethod
    def from_json(cls, d: JsonDict) -> ObjectSize:
        return cls(text=d["text"], alloc=d["alloc"], count=d.get("count"))


@dataclass(frozen=True)
class ListResult:
    """One pass list and the object it built (`phase`: the search phase that found it)."""

    pass_list: str
    text: int
    alloc: int
    count: int | None = None
    phase: str | None = None

    def to_json(self) -> JsonDict:
        d: JsonDict = {"pass_list": self.pass_list, "text": self.text, "alloc": self.alloc, "count": self.count}
        if self.phase is not None:
            d["phase"] = self.phase
        return d

    @classmethod
    def from_json(cls, d: JsonDict) -> ListResult:
        return cls(pass_list=d["pass_list"], text=d["text"], alloc=d["alloc"], count=d.get("count"),
                   phase=d.get("phase"))


@dataclass(frozen=True)
class TrajectoryPoint:
    """A new best of a search, with the evaluations spent when it was found."""

    evals: int
    pass_list: str
    text: int
    alloc: int
    count: int | None = None

    def to_json(self) -> JsonDict:
        return {"evals": self.evals, "pass_list": self.pass_list, "text": self.text, "alloc": self.alloc,
                "count": self.count}

    @classmethod
    def from_json(cls, d: JsonDict) -> TrajectoryPoint:
        return cls(evals=d["evals"], pass_list=d["pass_list"], text=d["text"], alloc=d["alloc"],
                   count=d.get("count"))


@dataclass(frozen=True)
class LabelRecord:
    """The autotuner's label of one module: -Oz, the best list, the top lists, the search's path."""

    id: str
    package: str = ""
    split: str = ""
    status: str = "ok"  # ok | skipped | error
    reason: str = ""
    budget: int = 0
    llvm: int = 0
    vocab: str = ""
    count_before: int | None = None
    oz: ObjectSize | None = None
    best: ListResult | None = None
    top: tuple[ListResult, ...] = ()  # distinct lists, best first (written whenever `best` is)
    evals: int | None = None
    trajectory: tuple[TrajectoryPoint, ...] | None = None  # None: a v1 label (no search path kept)
    invalid: int | None = None
    verify_mismatch: int | None = None
    errors: dict[str, int] | None = None  # error kinds met during the search, counted
    error: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    schema_version: int = 1

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.best is not None and self.oz is not None

    @property
    def improved(self) -> bool:
        """The best list gives a strictly smaller `.text` than -Oz."""
        return self.ok and self.best.text < self.oz.text  # type: ignore[union-attr]

    def to_json(self) -> JsonDict:
        d: JsonDict = {"schema_version": self.schema_version, "id": self.id, "package": self.package,
                       "split": self.split, "status": self.status, "reason": self.reason, "budget": self.budget,
                       "llvm": self.llvm, "vocab": self.vocab, "count_before": self.count_before,
                       "oz": self.oz.to_json() if self.oz else None, "verify_mismatch": self.verify_mismatch,
                       "best": self.best.to_json() if self.best else None,
                       "top": [t.to_json() for t in self.top] if self.best is not None else None,
                       "evals": self.evals,
                       "trajectory": None if self.trajectory is None else [p.to_json() for p in self.trajectory],
                       "invalid": self.invalid, "errors": self.errors, "error": self.error,
                       "wall_s": self.wall_s, "cpu_s": self.cpu_s}
        return _drop_none(d)

    @classmethod
    def from_json(cls, d: JsonDict) -> LabelRecord:
        traj = d.get("trajectory")
        return cls(id=d["id"], package=d.get("package", ""), split=d.get("split", ""), status=d.get("status", "ok"),
                   reason=d.get("reason", ""), budget=d.get("budget", 0), llvm=d.get("llvm", 0),
                   vocab=d.get("vocab", ""), count_before=d.get("count_before"),
                   oz=ObjectSize.from_json(d["oz"]) if d.get("oz") else None,
                   best=ListResult.from_json(d["best"]) if d.get("best") else None,
                   top=tuple(ListResult.from_json(t) for t in d.get("top") or ()), evals=d.get("evals"),
                   trajectory=None if traj is None else tuple(TrajectoryPoint.from_json(p) for p in traj),
                   invalid=d.get("invalid"), verify_mismatch=d.get("verify_mismatch"), errors=d.get("errors"),
                   error=d.get("error"), wall_s=d.get("wall_s", 0.0), cpu_s=d.get("cpu_s", 0.0),
                   schema_version=d.get("schema_version", 1))


@dataclass(frozen=True)
class ModelStats:
    """What a model method's candidates were like on one module (summed over modules in reports)."""

    candidates: int = 0
    valid: int = 0
    pred_n: int = 0  # candidates with a predicted and a real instruction count
    pred_exact: int = 0
    pred_abs_err: float = 0.0
    ir_n: int = 0  # candidates that generated IR
    ir_parsed: int = 0
    bleu_n: int = 0
    bleu_sum: float = 0.0

    def __add__(self, other: ModelStats) -> ModelStats:
        return ModelStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_json(self) -> JsonDict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: JsonDict) -> ModelStats:
        return cls(**{f.name: d.get(f.name, 0) for f in fields(cls)})


@dataclass(frozen=True)
class EvalRecord:
    """One method on one module: what it chose, against -Oz, and what it cost."""

    module: str
    method: str
    status: str  # ok | error | unavailable
    split: str | None = None
    package: str | None = None
    count_before: int | None = None
    oz: ObjectSize | None = None
    fp: str | None = None  # fingerprint of the method's setup (the cache key's third part)
    chosen: ListResult | None = None
    evals: int | None = None  # opt evaluations, the -Oz baseline included
    wall_s: float | None = None
    cache_schema: int | None = None
    model: ModelStats | None = None
    decision_reason: str | None = None
    model_calls: int | None = None
    # The screened pick whose verified rerun was refused (-Oz shipped instead): an opt timeout or
    # verifier failure that the driver would meet the same way.
    refused: str | None = None
    reason: str | None = None  # why not ok

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.chosen is not None and self.oz is not None

    def to_json(self) -> JsonDict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(oz=self.oz.to_json() if self.oz else None, chosen=self.chosen.to_json() if self.chosen else None,
                 model=self.model.to_json() if self.model else None)
        return _drop_none(d)

    @classmethod
    def from_json(cls, d: JsonDict) -> EvalRecord:
        known = {f.name for f in fields(cls)} - {"oz", "chosen", "model"}
        return cls(**{k: v for k, v in d.items() if k in known},
                   oz=ObjectSize.from_json(d["oz"]) if d.get("oz") else None,
                   chosen=ListResult.from_json(d["chosen"]) if d.get("chosen") else None,
                   model=ModelStats.from_json(d["model"]) if d.get("model") else None)


# -- results files: JSONL or JSONL.gz, appended one record at a time --------------------------------

def open_text(path: Path) -> io.TextIOBase:
    """A UTF-8 text file for reading, decompressed when it ends in .gz or .xz."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    if path.suffix == ".xz":
        import lzma  # only data files are .xz; the compile path never reads one

        return io.TextIOWrapper(lzma.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_records(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Every complete record in a results file, and whether a torn tail (crash mid-write) was seen."""
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records, False
    torn = False
    try:
        with open_text(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    torn = True
                    break
    except (EOFError, OSError, zlib.error):  # BadGzipFile is an OSError
        torn = True
    return records, torn


def read_labels(path: Path | str) -> list[LabelRecord]:
    """The records of a labels file (later records for the same id win)."""
    recs, _ = read_records(Path(path))
    by_id: dict[str, LabelRecord] = {}
    for r in recs:
        if "id" in r:
            by_id[r["id"]] = LabelRecord.from_json(r)
    return list(by_id.values())


def read_eval_records(path: Path | str) -> list[EvalRecord]:
    """The records of an evaluation cache, in file order."""
    return [EvalRecord.from_json(r) for r in read_records(Path(path))[0] if "module" in r and "method" in r]


def append_records(path: Path, records: Iterable[LabelRecord | EvalRecord]) -> None:
    """Append records; for .gz each call adds a gzip member (readers see one stream)."""
    data = "".join(json.dumps(r.to_json(), separators=(",", ":")) + "\n" for r in records).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
        f.flush()
        os.fsync(f.fileno())


def repair(path: Path) -> None:
    """Rewrite a file whose tail was torn by a crash, so later appends stay readable."""
    recs, torn = read_records(path)
    if not torn:
        return
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs).encode()
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    log.warning("%s: torn tail repaired (%d records kept)", path, len(recs))
