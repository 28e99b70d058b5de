"""The pool's loss table and the minimum-risk ranking: the table built from a known sweep, the
expected-size order it gives (a safe list before a likely but risky one, then coverage instead
of repetition), and the model directory that carries it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from clang_llm.model.risk import LOSS_SCALE, LOSSES_FILE, load_losses, module_weights, risk_order
from clang_llm.records import ObjectSize
from clang_llm.train.pool_risk import loss_table
from clang_llm.train.pool_sweep import PoolSizes


def _rec(mid: str, oz: int, texts: list[int | None]) -> PoolSizes:
    sizes = tuple(None if t is None else ObjectSize(t, t + 10, 1) for t in texts)
    return PoolSizes(id=mid, pool_sha="x", oz=ObjectSize(oz, oz + 10, 1), sizes=sizes)


def test_loss_table_holds_each_lists_log_ratio_with_failures_as_oz() -> None:
    sweep = [_rec("a", 100, [100, 80, 120]), _rec("b", 100, [100, None, 50]), _rec("bad", 0, [0, 0, 0]),
             _rec("short", 100, [100, 90])]  # another pool's record: left out
    t = loss_table(sweep, 3)
    assert t.dtype == np.int16 and t.shape == (2, 3)
    want = [[0.0, math.log(0.8), math.log(1.2)], [0.0, 0.0, math.log(0.5)]]
    assert np.allclose(t * LOSS_SCALE, want, atol=LOSS_SCALE)
    assert int(loss_table([_rec("gone", 100_000, [100_000, 1, 100_000])], 3)[0, 1]) == -32767
    with pytest.raises(ValueError):
        loss_table([_rec("bad", 0, [0, 0, 0])], 3)


# Four train modules, lists 0 (-Oz), 1, 2, 3. List 1 wins modules 0-1 big and grows 2-3 by 82 %;
# list 2 wins modules 2-3 a little and never grows anything; list 3 repeats list 1 exactly.
LOSSES = np.array([[0.0, -0.20, -0.01, -0.20],
                   [0.0, -0.20, -0.01, -0.20],
                   [0.0, 0.60, -0.05, 0.60],
                   [0.0, 0.60, -0.05, 0.60]])


def test_a_safe_list_goes_before_a_likely_but_risky_one() -> None:
    even = [math.log(0.1), math.log(0.4), math.log(0.3), math.log(0.2)]  # list 1 likeliest, but unsure
    w = module_weights(LOSSES, even, 1.0)
    assert w.sum() == pytest.approx(1.0) and (w > 0).all()
    order = risk_order(even, LOSSES, 1.0, 3, [1, 2, 3])
    # list 1's expected size is larger (+0.08 against -0.024): a third of the belief is on modules it grows
    assert order[0] == 2
    # then coverage: list 1 adds the big wins; list 3 repeats list 1 and adds nothing, so it comes last
    assert order == [2, 1, 3]
    # a confident model on list 1's kind of module: list 1 first
    sure = [math.log(0.01), math.log(0.97), math.log(0.01), math.log(0.01)]
    assert risk_order(sure, LOSSES, 0.1, 1, [1, 2, 3]) == [1]
    assert risk_order(sure, LOSSES, 1.0, 2, [2]) == [2]  # only the allowed lists
    assert risk_order(sure, LOSSES, 1.0, 0, [1, 2]) == []
    with pytest.raises(ValueError):
        module_weights(LOSSES, [0.0, 0.0], 1.0)
    with pytest.raises(ValueError):
        module_weights(LOSSES, even, 0.0)


def test_the_loss_file_is_checked_when_the_model_loads(tmp_path: Path) -> None:
    from clang_llm.errors import ModelError
    from clang_llm.model import load_model, model_content_id
    from clang_llm.optimizer.factory import default_model_dir

    src = default_model_dir()
    model = tmp_path / "m"
    shutil.copytree(src, model)
    (model / LOSSES_FILE).unlink(missing_ok=True)
    n = len(load_model(model, intra_threads=1).card.pool)
    plain_id = model_content_id(model)
    np.save(model / LOSSES_FILE, np.zeros((5, n), dtype=np.int16))
    assert load_model(model, intra_threads=1).pool_losses.shape == (5, n)
    assert model_content_id(model) != plain_id  # the table is part of the model's identity
    assert load_losses(model / LOSSES_FILE, n).dtype == np.float64
    for bad in (np.zeros((5, n + 1), dtype=np.int16), np.zeros((5, n), dtype=np.float32)):
        np.save(model / LOSSES_FILE, bad)
        with pytest.raises(ModelError, match=LOSSES_FILE):
            load_model(model, intra_threads=1)
    (model / LOSSES_FILE).write_bytes(b"not numpy")
    with pytest.raises(ModelError, match=LOSSES_FILE):
        load_model(model, intra_threads=1)


def test_pool_risk_command_writes_and_removes_the_table(tmp_path: Path) -> None:
    """`pool-risk` on a copy of the shipped model with the committed train sweep: the table has a
    row per usable swept module and a column per stored list; temperature 0 takes it away."""
    from typer.testing import CliRunner

    from clang_llm.cli import app
    from clang_llm.model import load_model, read_card
    from clang_llm.optimizer.factory import default_model_dir

    sweep = Path(__file__).resolve().parent.parent / "data" / "pool-sweep-v2-train.jsonl.gz"
    model = tmp_path / "m"
    shutil.copytree(default_model_dir(), model)
    runner = CliRunner()
    r = runner.invoke(app, ["pool-risk", "--model", str(model), "--sweep", str(sweep), "--temperature", "0.5"])
    assert r.exit_code == 0, r.output
    loaded = load_model(model, intra_threads=1)
    assert loaded.card.risk_temperature == 0.5 and loaded.pool_losses.shape[1] == len(loaded.card.pool)
    assert loaded.pool_losses.shape[0] == read_card(model).training["risk"]["modules"] > 1000
    one = loaded.pool_losses.shape[0]
    ext = sweep.with_name("pool-sweep-v2-train-ext.jsonl.gz")  # several sweeps: one table, every module once
    r = runner.invoke(app, ["pool-risk", "--model", str(model), "--sweep", str(sweep), "--sweep", str(ext),
                            "--sweep", str(sweep), "--temperature", "0.5"])
    assert r.exit_code == 0, r.output
    both = load_model(model, intra_threads=1).pool_losses
    assert one + 1000 < both.shape[0] == read_card(model).training["risk"]["modules"] <= one + 1621
    r = runner.invoke(app, ["pool-risk", "--model", str(model), "--sweep", str(sweep), "--temperature", "0"])
    assert r.exit_code == 0, r.output
    assert not (model / LOSSES_FILE).exists() and read_card(model).risk_temperature == 0
    r = runner.invoke(app, ["pool-risk", "--model", str(model), "--sweep", str(tmp_path / "none.jsonl"),
                            "--temperature", "1"])
    assert r.exit_code == 2 and "pool-risk" in r.output  # a usage error, the model left as it was
    assert not (model / LOSSES_FILE).exists() and read_card(model).risk_temperature == 0


def test_the_stop_rule_weighs_the_rest_against_the_best_found_so_far() -> None:
    """Two train modules, equally believed; list 0 wins 10 % on both, list 1 5 % on one. Before
    any run the rest is worth trying; after a 10 % win (in this round or an earlier one) list 1
    cannot lower the best any further, so the rule stops; after a list that found nothing (or
    grew the object: log ratio 0), list 1 is still worth it. Past the plan, written lists run."""
    import numpy as np

    from clang_llm.model.risk import further_gain, stop_rule

    losses = np.array([[-0.10, -0.05], [-0.10, 0.0]])
    w = np.array([0.5, 0.5])
    assert further_gain(w, losses, 0.0, [1]) == pytest.approx(0.025)
    assert further_gain(w, losses, -0.1, [1]) == 0.0 and further_gain(w, losses, 0.0, []) == 0.0
    go_on = stop_rule(w, losses, [0, 1], 0.01, lambda r: r)
    assert go_on([], 0) and go_on([0.0], 1) and not go_on([-0.1], 1)
    assert go_on([-0.1], 2)  # a list the model wrote, past the ranked plan
    earlier = stop_rule(w, losses, [0, 1], 0.01, lambda r: r, best=-0.1)  # an earlier round found -10 %
    assert not earlier([], 1) and not earlier([0.0], 1)
    assert stop_rule(w, losses, [0, 1], 0.03, lambda r: r)([0.0], 1) is False  # 0.025 < 0.03
