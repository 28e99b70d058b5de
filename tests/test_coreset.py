"""Coreset v2: the k lists chosen greedily by the gain they add over the lists already chosen,
not the k most frequent winners; never from the test split."""

from __future__ import annotations

import pytest

from clang_llm.eval.methods import coreset_lists
from clang_llm.records import LabelRecord


def _rec(mid: str, tops: dict[str, int], split: str = "validation", alloc: int = 100) -> LabelRecord:
    top = [{"pass_list": s, "text": t, "alloc": alloc, "count": 1} for s, t in sorted(tops.items(), key=lambda x: x[1])]
    best = top[0]
    return LabelRecord.from_json({"id": mid, "split": split, "status": "ok", "oz": {"text": 100, "alloc": 100},
                                  "best": {**best, "phase": "x"}, "top": top})


def test_marginal_gain_beats_frequency() -> None:
    # "A" is the best list of three modules by 1 %; "B" wins 10 % on two others and also 1 % on m1.
    labels = [_rec("m1", {"A": 99, "B": 99}), _rec("m2", {"A": 99}), _rec("m3", {"A": 99}),
              _rec("m4", {"B": 90}), _rec("m5", {"B": 90})]
    assert coreset_lists(labels, 1, "validation") == ["B"]
    # The second pick is what B left: A still gains on m2, m3.
    assert coreset_lists(labels, 2, "validation") == ["B", "A"]


def test_lists_larger_in_alloc_are_no_win() -> None:
    r = _rec("m1", {"C": 80}, alloc=101)
    assert coreset_lists([r, _rec("m2", {"D": 95})], 1, "validation") == ["D"]


def test_never_from_the_test_split() -> None:
    with pytest.raises(ValueError):
        coreset_lists([_rec("m1", {"A": 90}, split="test")], 1, "test")
