"""The pool's risk table and the minimum-risk single answer: the table's arithmetic on a known
sweep, the expected-size order it gives, and the card that carries it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from clang_llm.errors import ModelError
from clang_llm.model.card import ModelCard, read_card, write_card
from clang_llm.model.risk import expected_losses, risk_order
from clang_llm.records import ObjectSize
from clang_llm.train.pool_risk import risk_table
from clang_llm.train.pool_sweep import PoolSizes


def _rec(mid: str, oz: int, texts: list[int | None]) -> PoolSizes:
    sizes = tuple(None if t is None else ObjectSize(t, t + 10, 1) for t in texts)
    return PoolSizes(id=mid, pool_sha="x", oz=ObjectSize(oz, oz + 10, 1), sizes=sizes)


def test_risk_table_averages_each_list_over_the_modules_another_list_wins() -> None:
    sweep = [
        _rec("a", 100, [100, 80, 120]),  # list 1 wins; list 2 grows it by 20 %
        _rec("b", 100, [100, 90, 90]),  # lists 1 and 2 tie: each gets half the module
        _rec("c", 100, [100, None, 50]),  # list 1 failed (counts as -Oz); list 2 wins
        _rec("bad", 0, [0, 0, 0]),  # no -Oz size to compare with: ignored
    ]
    r = risk_table(sweep, 3)
    la, lb = math.log(0.8), math.log(0.9)
    # list 1 wins a (weight 1) and half of b
    assert r[1][1] == pytest.approx((la + 0.5 * lb) / 1.5, abs=1e-6)
    assert r[1][2] == pytest.approx((math.log(1.2) + 0.5 * lb) / 1.5, abs=1e-6)
    # list 2 wins half of b and all of c, where list 1's failure is -Oz (0)
    assert r[2][1] == pytest.approx((0.5 * lb + 0.0) / 1.5, abs=1e-6)
    assert r[2][2] == pytest.approx((0.5 * lb + math.log(0.5)) / 1.5, abs=1e-6)
    # list 0 (-Oz) wins nowhere: its row is the mean over the usable modules
    assert r[0][2] == pytest.approx((math.log(1.2) + lb + math.log(0.5)) / 3, abs=1e-6)
    with pytest.raises(ValueError):
        risk_table([_rec("bad", 0, [0, 0, 0])], 3)


def test_the_minimum_risk_list_beats_a_likely_but_risky_one() -> None:
    # List 0 is most likely, but where it wins list 0 saves 10 % and where 1 wins list 0 grows 30 %.
    risk = [[-0.10, -0.05], [0.30, -0.08]]
    logp = [math.log(0.6), math.log(0.4)]
    e = expected_losses(logp, risk, 1.0)
    assert e == pytest.approx([0.6 * -0.10 + 0.4 * 0.30, 0.6 * -0.05 + 0.4 * -0.08])
    assert risk_order(logp, risk, 1.0) == [1, 0]
    # a very low temperature trusts the top choice alone: its row decides
    assert risk_order(logp, risk, 0.01) == [0, 1]
    with pytest.raises(ValueError):
        expected_losses(logp, [[0.0, 0.0]], 1.0)
    with pytest.raises(ValueError):
        expected_losses(logp, risk, 0.0)


def _card(**kw: object) -> dict:
    base = {"llvm_major": 22, "pass_vocabulary_version": "v", "prompt_format": "cllm-v2", "context_length": 64,
            "pool": ["Oz", "Os"]}
    return {**base, **kw}


def test_card_carries_a_square_finite_risk_table(tmp_path: Path) -> None:
    card = ModelCard.from_json(_card(pool_risk=[[0.0, -0.1], [0.2, -0.3]], risk_temperature=0.5))
    write_card(tmp_path, card)
    again = read_card(tmp_path)
    assert again.pool_risk == [[0.0, -0.1], [0.2, -0.3]] and again.risk_temperature == 0.5
    assert ModelCard.from_json(_card()).pool_risk == []  # older cards: ranked by likelihood
    for bad in ([[0.0]], [[0.0, 0.1], [0.2]], [[0.0, "x"], [0.1, 0.2]], [[0.0, math.inf], [0.0, 0.0]]):
        with pytest.raises(ModelError, match="pool_risk"):
            ModelCard.from_json(json.loads(json.dumps(_card(pool_risk=bad), allow_nan=True)))
    with pytest.raises(ModelError, match="risk_temperature"):
        ModelCard.from_json(_card(risk_temperature=-1))
