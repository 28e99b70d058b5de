"""The typed records read and write exactly the JSON the files hold: every committed label and
evaluation record survives `from_json` → `to_json` unchanged, and a TU record survives the database."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from clang_llm.db import Database
from clang_llm.objsize import Sizes
from clang_llm.records import (
    Candidate,
    EvalRecord,
    Finding,
    LabelRecord,
    Prediction,
    Round,
    Timing,
    TURecord,
    append_records,
    read_eval_records,
    read_labels,
    read_records,
)

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = [("data/labels.jsonl.gz", LabelRecord), ("data/labels-v2.jsonl.gz", LabelRecord),
             ("docs/eval/cache.jsonl.gz", EvalRecord), ("docs/eval-v2/cache.jsonl.gz", EvalRecord)]


@pytest.mark.parametrize(("path", "cls"), COMMITTED, ids=[p for p, _ in COMMITTED])
def test_committed_records_round_trip(path: str, cls: type[LabelRecord] | type[EvalRecord]) -> None:
    with gzip.open(ROOT / path, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert len(rows) > 100
    changed = [r for r in rows if cls.from_json(r).to_json() != r]
    assert not changed, changed[:2]


def test_label_properties_and_files(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in gzip.open(ROOT / "data/labels-v2.jsonl.gz", "rt")][:20]
    recs = [LabelRecord.from_json(r) for r in rows]
    for r in recs:
        assert r.improved == (r.status == "ok" and r.best is not None and r.oz is not None
                              and r.best.text < r.oz.text)
        if r.ok:
            assert r.top and r.top[0].pass_list == r.best.pass_list  # type: ignore[union-attr]
    out = tmp_path / "l.jsonl.gz"
    append_records(out, recs[:10])
    append_records(out, recs[10:])  # a second gzip member: one stream for readers
    assert read_records(out)[0] == rows
    assert read_labels(out) == recs
    ev = tmp_path / "e.jsonl"
    erow = json.loads(gzip.open(ROOT / "docs/eval/cache.jsonl.gz", "rt").readline())
    append_records(ev, [EvalRecord.from_json(erow)])
    assert [r.to_json() for r in read_eval_records(ev)] == [erow]


def _finding(pl: str, text: int, **kw: object) -> Finding:
    return Finding(pass_list=pl, valid=True, count_before=40, count_after=30, sizes=Sizes(text, text + 50),
                   object_path=Path("/tmp/x.o"), **kw)  # type: ignore[arg-type]


def test_tu_record_round_trips_through_the_database(tmp_path: Path) -> None:
    oz = _finding("Oz", 100)
    cand = _finding("Oz gvn-sink", 90)
    rec = TURecord(object=str(tmp_path / "a.o"), source="a.c", cwd=str(tmp_path), argv=("-c", "a.c"),
                   llm_flags={"rounds": "2"}, oz=oz, chosen=cand, reason="beats-oz",
                   settings={"rounds": 2}, ir_hash="ab" * 32, count_before=40,
                   rounds=(Round(round=1, prompt_tokens=300,
                                 candidates=(Candidate(answer="passes: Oz gvn-sink", finding=cand,
                                                       pass_list="Oz gvn-sink",
                                                       prediction=Prediction(40, 31, True, None, 0.5)),
                                             Candidate(answer="garbage", finding=Finding("", False, error_kind="parse"),
                                                       problems=("no passes line",))),
                                 opt_evaluations=1, model_s=0.2, feedback="feedback: ..."),),
                   model_id="m", model_calls=1, seconds=1.5, timing=Timing(model_s=0.2, total_s=1.5),
                   opt_evaluations=2)
    db = Database(tmp_path / "state")
    db.put_record(rec)
    got = db.get_record(rec.object)
    assert got is not None
    # Temp paths are not part of the record (they are gone once the TU is done); all else is kept.
    assert got.chosen.object_path is None and got.chosen.sizes == cand.sizes
    assert got.to_json() == rec.to_json() and got.llm_flags == {"rounds": "2"}
    assert got.rounds[0].findings()[1].error_kind == "parse"
    assert got.rounds[0].candidates[0].prediction == Prediction(40, 31, True, None, 0.5)
    ev = got.event("optimized", "beats-oz")
    assert (ev.text, ev.oz_text, ev.opt_evals, ev.model_s, ev.cache_hit) == (90, 100, 2, 0.2, 0)


def test_older_records_without_new_fields_still_read() -> None:
    """A record written before a field existed (an older wrapper's database) reads with defaults."""
    old = {"object": "/o.o", "source": "a.c", "cwd": "/", "argv": [], "llm_flags": [], "reason": "too-small",
           "oz": {"pass_list": "Oz", "valid": True, "sizes": {"text": 1, "alloc": 2}},
           "chosen": {"pass_list": "Oz", "valid": True, "sizes": {"text": 1, "alloc": 2}},
           "rounds": [{"cache": "object"}], "timing": {"frontend_s": 0.1, "total_s": 0.2}}
    rec = TURecord.from_json(old)
    assert rec.remote_calls == 0 and rec.opt_evaluations is None and rec.rounds[0].cache == "object"
    assert rec.event("oz", "too-small").opt_evals is None
    # Schema 2 kept a candidate's predictions inside its finding: they are read into its Prediction.
    v2 = {**old, "rounds": [{"round": 1, "candidates": [{"answer": "passes: O1", "pass_list": "O1", "problems": [],
          "finding": {"pass_list": "O1", "valid": True, "count_after": 9, "predicted_before": 12,
                      "predicted_after": 9, "generated_ir_parses": None, "bleu": None}}]}]}
    cand = TURecord.from_json(v2).rounds[0].candidates[0]
    assert cand.prediction == Prediction(count_before=12, count_after=9) and cand.prediction.correct_count(cand.finding)
