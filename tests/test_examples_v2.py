"""cllm-v2 training examples from labels: ranking targets weighted by real sizes, choice tokens,
and feedback examples built from the search's own trajectory."""

from __future__ import annotations

import math
import random

from clang_llm.records import LabelRecord, ListResult, ObjectSize, TrajectoryPoint
from clang_llm.train.examples import examples_v2_for, model_pool, rank_targets, risk_losses
from clang_llm.train.pool_sweep import PoolSizes, pool_sha

POOL = ["Oz", "Oz gvn-sink", "Os", "O1"]
INDEX = {s: i for i, s in enumerate(POOL)}


def _rec(top: list[tuple[str, int, int]], trajectory: list[tuple[int, str, int]] = (), oz: int = 1000,
         rid: str = "m1") -> LabelRecord:
    tops = tuple(ListResult(p, text, alloc, 50) for p, text, alloc in top)
    best = min(tops, key=lambda t: (t.text, t.alloc)) if tops else ListResult("Oz", oz, 2000, 60)
    traj = tuple(TrajectoryPoint(e, p, text, 2000, 55) for e, p, text in trajectory)
    return LabelRecord(id=rid, package="p", split="train", count_before=100, oz=ObjectSize(oz, 2000, 60),
                       best=best, top=tops or (best,), evals=200, trajectory=traj)


def _count(text: str) -> int:
    return len(text) // 4 + 1


def test_targets_weight_lists_by_how_close_they_come_to_the_best() -> None:
    rec = _rec([("Os", 900, 2000), ("Oz gvn-sink", 909, 2000), ("Oz dse", 950, 2000), ("O1", 990, 2100)])
    t = dict(rank_targets(rec, INDEX))
    assert math.isclose(sum(t.values()), 1.0, abs_tol=1e-3)
    # O1 is larger in allocated bytes than -Oz: never a target; Oz dse is not stored: <|new|>
    assert "<|L3|>" not in t and set(t) == {"<|L2|>", "<|L1|>", "<|new|>"}
    assert t["<|L2|>"] > t["<|L1|>"] > t["<|new|>"]
    # 1 % larger than the best gets about e^-1 of its weight
    assert math.isclose(t["<|L1|>"] / t["<|L2|>"], math.exp(-math.log(909 / 900) / 0.01), rel_tol=0.02)


def test_nothing_beats_oz_targets_the_oz_choice() -> None:
    rec = _rec([("Oz", 1000, 2000), ("Os", 1010, 2000)])
    assert rank_targets(rec, INDEX) == [("<|L0|>", 1.0)]


def test_examples_direct_new_and_feedback_from_the_trajectory() -> None:
    rec = _rec([("Os", 900, 2000), ("Oz dse", 950, 2000)], trajectory=[(12, "Oz gvn-sink", 980), (40, "Os", 900)])
    prompt = "<|prompt|> cllm-v2 size\n; tu: insts 100\n<|answer|>\n"
    exs = examples_v2_for(rec, prompt, INDEX, _count, 1024, 96, random.Random(0))
    kinds = [e["kind"] for e in exs]
    assert kinds == ["direct", "new", "feedback"]
    direct, new, fb = exs
    assert direct["answer"].startswith("<|L2|>passes: Os\n") and direct["prompt"] == prompt
    assert new["answer"].startswith("<|new|>passes: Oz dse\n")
    # the worse list is the trajectory's earlier best, echoed as the loop records a ranked list
    assert fb["prompt"].startswith(prompt) and "<|L1|>passes: Oz gvn-sink\n<|end|>\n<|feedback|>" in fb["prompt"]
    assert "feedback: beats -Oz yes (.text 980 vs 1000 bytes" in fb["prompt"]
    assert "<|L1|>" not in dict(fb["targets"])  # what was tried is not a target again
    assert fb["answer"] == direct["answer"]


def test_pool_starts_with_oz_then_the_coreset() -> None:
    recs = [_rec([("Os", 900, 2000)], rid="a"), _rec([("Os", 800, 2000), ("O1", 850, 2000)], rid="b"),
            _rec([("O1", 700, 2000)], rid="c")]
    pool = model_pool(recs, 3)
    assert pool[0] == "Oz" and set(pool[1:]) == {"Os", "O1"} and len(pool) == 3


def test_a_sweep_adds_every_stored_lists_size_to_the_targets() -> None:
    from clang_llm.train.examples import with_sweep
    from clang_llm.train.pool_sweep import PoolSizes, pool_sha

    rec = _rec([("Oz dse", 950, 2000)])  # the search kept only a list that is not stored
    assert dict(rank_targets(rec, INDEX)) == {"<|new|>": 1.0}
    sizes = PoolSizes("m1", pool_sha(POOL), ObjectSize(1000, 2000, 60),
                      (ObjectSize(1000, 2000, 60), ObjectSize(940, 2000, 50), None, ObjectSize(900, 2100, 50)))
    swept = with_sweep(rec, sizes, POOL)
    t = dict(rank_targets(swept, INDEX))
    # Oz gvn-sink (940) beats the search's own best; O1 is larger in allocated bytes; Os failed
    assert set(t) == {"<|L1|>", "<|new|>"} and t["<|L1|>"] > t["<|new|>"]
    assert with_sweep(rec, None, POOL) is rec


def _swept(oz: int, texts: list[int | None]) -> PoolSizes:
    return PoolSizes("m1", pool_sha(POOL), ObjectSize(oz, 2000, 60),
                     tuple(None if t is None else ObjectSize(t, 2000, 50) for t in texts))


def test_risk_losses_measure_every_stored_list_oz_and_losers_included() -> None:
    # Os grows .text (a loser is a lesson too); O1 failed on the module: left out
    got = dict(risk_losses(_swept(1000, [1000, 950, 1100, None]), POOL))
    assert set(got) == {"<|L0|>", "<|L1|>", "<|L2|>"}
    assert got["<|L0|>"] == 0.0
    assert math.isclose(got["<|L1|>"], math.log(0.95), abs_tol=1e-6)
    assert math.isclose(got["<|L2|>"], math.log(1.1), abs_tol=1e-6)
    assert "<|new|>" not in got  # what the model would write is never measured
    assert "<|L1|>" not in dict(risk_losses(_swept(1000, [1000, 950, 1100, None]), POOL, frozenset({"Oz gvn-sink"})))
    assert risk_losses(_swept(1000, [1000, 950]), POOL) == []  # another pool's sweep


def test_risk_examples_carry_losses_instead_of_targets() -> None:
    rec = _rec([("Os", 900, 2000), ("Oz dse", 950, 2000)], trajectory=[(12, "Oz gvn-sink", 980), (40, "Os", 900)])
    prompt = "<|prompt|> cllm-v2 size\n; tu: insts 100\n<|answer|>\n"
    sweep = _swept(1000, [1000, 980, 900, 1010])
    exs = examples_v2_for(rec, prompt, INDEX, _count, 1024, 96, random.Random(0), risk=(sweep, POOL))
    assert [e["kind"] for e in exs] == ["direct", "new", "feedback"]
    assert all("targets" not in e for e in exs)
    assert dict(exs[0]["losses"]) == dict(risk_losses(sweep, POOL))
    assert "<|L1|>" not in dict(exs[2]["losses"])  # the feedback prompt's tried list
    # the answers are those of the plain examples
    plain = examples_v2_for(rec, prompt, INDEX, _count, 1024, 96, random.Random(0))
    assert [e["answer"] for e in exs] == [e["answer"] for e in plain]
