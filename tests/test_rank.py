"""cllm-v2 end to end with a real tiny model: a pool of stored lists in the card, ranking in one
forward pass, the loop trying the ranked lists (never one twice, never -Oz), samples written
after `<|new|>`, and the training loss that teaches a ranking instead of one answer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from model_fixture import compile_ir
from test_loop import _PromptSpy, _tu

from clang_llm import ir
from clang_llm.config import Settings
from clang_llm.model import load_model
from clang_llm.optimizer.loop import ModelLoop
from clang_llm.optimizer.prompt import build_prompt, prompt_budgets, render_answer
from clang_llm.prompt_format import NEW_MARK, pool_token

CONTEXT = 768
NEW_TOKENS = 64
POOL = ["Oz", "Oz gvn-sink", "Oz simplifycfg<hoist-common-insts;sink-common-insts>", "Os", "O1"]
SOURCES = {
    "sum": "int sum(const int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i]; return s; }\n",
    "pick": "int pick(int c, int a, int b) { if (c > 3) return a * 2 + b; return b - a; }\n",
}
# Each program's ranking target: sum likes list 3 (Os) most, then 1; pick likes 4 (O1), then 2.
TARGETS = {"sum": [(3, 0.7), (1, 0.3)], "pick": [(4, 0.8), (2, 0.2)]}


@pytest.fixture(scope="module")
def v2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from tokenizers import Tokenizer

    from clang_llm.train.export import export
    from clang_llm.train.tokenizer import fit_tokenizer
    from clang_llm.train.trainer import train

    work = tmp_path_factory.mktemp("v2-model")
    irs = {n: compile_ir(s, work, n) for n, s in SOURCES.items()}
    answers = {n: render_answer(POOL[t[0][0]], 30, 10, choice=pool_token(t[0][0])) for n, t in TARGETS.items()}
    novel = render_answer("Oz dse", 30, 9, choice=NEW_MARK)
    tok = fit_tokenizer(list(irs.values()) * 4 + list(answers.values()) * 4 + [novel] * 4, work / "tok.json",
                        vocab_size=900, choice_tokens=True)
    t = Tokenizer.from_file(str(tok))
    budget = prompt_budgets(CONTEXT, NEW_TOKENS)[0]
    with open(work / "ex.jsonl", "w") as f:
        f.write(json.dumps({"pool": POOL}) + "\n")  # a v2 examples file opens with its pool
        for n in SOURCES:
            prompt = build_prompt(str(ir.parse(irs[n])), budget, lambda s: len(t.encode(s).ids), summary=True)
            targets = [[pool_token(i), w] for i, w in TARGETS[n]]
            f.write(json.dumps({"prompt": prompt, "answer": answers[n], "targets": targets}) + "\n")
            f.write(json.dumps({"prompt": prompt, "answer": novel, "targets": targets}) + "\n")
    ckpt = train(work / "ex.jsonl", tok, work / "train", steps=120, batch_size=2, seq_len=CONTEXT, hidden_size=64,
                 num_layers=2, num_heads=4, lr=1e-2, warmup_steps=5, save_every=1000, log_every=20,
                 cpu_threads=1, progress=False)
    return export(ckpt, work / "model", name="rank-test", prompt_format="cllm-v2", pool=POOL)


def _prompt(model_dir: Path, name: str, work: Path) -> str:
    m = load_model(model_dir, intra_threads=1)
    from clang_llm.optimizer.formats import get_format

    text = compile_ir(SOURCES[name], work, name)
    return get_format(m.card.prompt_format).build_prompt(text, prompt_budgets(CONTEXT, NEW_TOKENS)[0],
                                                         m.count_tokens)


def test_card_pool_and_one_pass_ranking(v2_model: Path, tmp_path: Path) -> None:
    m = load_model(v2_model, intra_threads=1)
    assert m.card.prompt_format == "cllm-v2" and m.pool == POOL
    for name, targets in TARGETS.items():
        prompt = _prompt(v2_model, name, tmp_path)
        assert "; tu: insts " in prompt and "; ops: " in prompt
        scores = m.rank_pool(prompt)
        assert len(scores) == len(POOL) and all(s <= 0 and math.isfinite(s) for s in scores)
        order = sorted(range(len(POOL)), key=lambda i: -scores[i])
        assert order[:2] == [i for i, _ in targets]  # the trained ranking, both places


def test_loop_tries_the_ranked_lists_once_and_never_oz(v2_model: Path, tmp_path: Path) -> None:
    s = Settings(rounds=2, samples=0, rank=1, feedback="short", max_new_tokens=NEW_TOKENS, jobs=1)
    spy = _PromptSpy(load_model(v2_model, intra_threads=1))
    d = ModelLoop(spy, s).optimize(_tu("sum", tmp_path / "w", s))  # type: ignore[arg-type]
    tried = [c.pass_list for r in d.rounds for c in r.candidates]
    # round 1: sum's top stored list; round 2 ranks the feedback prompt again and skips it (and Oz)
    assert len(tried) == 2 and tried[0] == POOL[3] and tried[1] in POOL[1:3] + POOL[4:]
    assert d.rounds[0].candidates[0].answer.startswith(pool_token(3))
    assert [r.opt_evaluations for r in d.rounds] == [1, 1]
    assert spy.prompts == []  # samples=0: nothing generated
    assert d.chosen.sizes is not None and d.chosen.sizes.not_larger_than(_tu("sum", tmp_path / "o", s).oz.sizes)


def test_feedback_prompt_keeps_the_choice_token(v2_model: Path, tmp_path: Path) -> None:
    s = Settings(rounds=2, samples=1, rank=1, feedback="short", max_new_tokens=NEW_TOKENS, jobs=1)
    spy = _PromptSpy(load_model(v2_model, intra_threads=1))
    d = ModelLoop(spy, s).optimize(_tu("pick", tmp_path / "w", s))  # type: ignore[arg-type]
    assert all(p.endswith("<|answer|>\n" + NEW_MARK) for p in spy.prompts)  # samples are novel lists
    assert len(d.rounds) == 2
    second = spy.prompts[1]
    assert "feedback: " in second
    ranked = d.rounds[0].candidates[0]
    assert ranked.answer == pool_token(4) + "passes: O1"  # pick's top stored list, ranked first
    echoed = [c.answer.split("<|end|>")[0].rstrip() for c in d.rounds[0].candidates]
    assert any(a in second for a in echoed)  # the previous answer, its choice token intact
    assert "<\\7CL" not in second  # a choice token is one token, not escaped text


class _RankSpy(_PromptSpy):
    def __init__(self, model: object) -> None:
        super().__init__(model)
        self.ranked: list[str] = []

    def rank_pool(self, prompt: str) -> list[float]:
        self.ranked.append(prompt)
        return self.model.rank_pool(prompt)  # type: ignore[attr-defined]


def test_rank_zero_ignores_the_pool(v2_model: Path, tmp_path: Path) -> None:
    s = Settings(rounds=1, samples=1, rank=0, max_new_tokens=NEW_TOKENS, jobs=1)
    spy = _RankSpy(load_model(v2_model, intra_threads=1))
    d = ModelLoop(spy, s).optimize(_tu("sum", tmp_path / "w", s))  # type: ignore[arg-type]
    assert spy.ranked == [] and len(spy.prompts) == 1 and not spy.prompts[0].endswith(NEW_MARK)
    # free generation: the trained answer opens with sum's top choice and names its list
    assert d.rounds[0].candidates[0].pass_list == POOL[3]
    with_rank = _RankSpy(load_model(v2_model, intra_threads=1))
    s2 = Settings(rounds=1, samples=0, rank=2, max_new_tokens=NEW_TOKENS, jobs=1)
    ModelLoop(with_rank, s2).optimize(_tu("sum", tmp_path / "r", s2))  # type: ignore[arg-type]
    assert len(with_rank.ranked) == 1 and with_rank.prompts == []


def test_soft_ranking_loss_is_cross_entropy_for_a_one_hot_target() -> None:
    """One target of weight 1 is exactly the hard label's cross-entropy, so v1 examples (no
    targets) and v2 examples train on one scale; a spread target costs more than its best token."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from clang_llm.train.trainer import _batch, _Example, _loss

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=64))
    hard = _Example([1, 5, 6, 7, 20, 21, 22], n_prompt=4)
    soft = _Example(hard.ids, n_prompt=4, targets=((20, 1.0),))
    with torch.no_grad():
        want = model(**{k: v for k, v in _batch([hard], 0).items() if k in ("input_ids", "attention_mask",
                                                                           "labels")}).loss
        got_hard = _loss(model, _batch([hard], 0), rank_weight=1.0)
        got_soft = _loss(model, _batch([soft], 0), rank_weight=1.0)
        spread = _loss(model, _batch([_Example(hard.ids, 4, ((20, 0.5), (30, 0.5)))], 0), rank_weight=1.0)
    assert float(got_hard) == pytest.approx(float(want), rel=1e-5)
    assert float(got_soft) == pytest.approx(float(want), rel=1e-5)
    assert float(spread) != pytest.approx(float(want), rel=1e-3)


def test_a_choice_token_names_its_stored_list(v2_model: Path) -> None:
    from clang_llm.optimizer.prompt import parse_answer

    loop = ModelLoop(load_model(v2_model, intra_threads=1), Settings(rank=2))
    a = loop._stored(parse_answer("<|L2|>passes: Oz dse\ncount_before: 3\ncount_after: 2\n"))
    assert str(a.pass_list) == POOL[2] and any("not its stored list" in p for p in a.problems)
    b = loop._stored(parse_answer("<|L2|>passes: not-a-pass\n"))  # the text does not matter
    assert str(b.pass_list) == POOL[2] and not any(p.startswith("unknown pass") for p in b.problems)
    c = loop._stored(parse_answer("<|L60|>passes: Oz dse\n"))  # no such stored list: the text stands
    assert str(c.pass_list) == "Oz dse"
    d = loop._stored(parse_answer("<|new|>passes: Oz dse\n"))
    assert str(d.pass_list) == "Oz dse" and d.choice is None


def test_a_loss_table_puts_the_safest_list_first(v2_model: Path, tmp_path: Path) -> None:
    """The trained model ranks Os (list 3) first for `sum`; a loss table in which Os grows every
    train module and list 1 wins them all makes the first ranked try list 1; with nothing left to
    cover, the next try is the likeliest remaining list. Temperature 0 in the card ignores it."""
    import shutil

    import numpy as np

    from clang_llm.model.card import read_card, write_card
    from clang_llm.model.risk import LOSS_SCALE, LOSSES_FILE

    risky = tmp_path / "risky"
    shutil.copytree(v2_model, risky)
    table = np.zeros((6, len(POOL)), dtype=np.int16)
    table[:, 3], table[:, 1] = round(0.5 / LOSS_SCALE), round(-0.1 / LOSS_SCALE)
    np.save(risky / LOSSES_FILE, table)
    card = read_card(risky)
    card.risk_temperature = 1.0
    write_card(risky, card)
    s = Settings(rounds=1, samples=0, rank=2, stop=0.0, max_new_tokens=NEW_TOKENS, jobs=1)  # both lists run
    plain = ModelLoop(load_model(v2_model, intra_threads=1), s).optimize(_tu("sum", tmp_path / "p", s))
    safe = ModelLoop(load_model(risky, intra_threads=1), s).optimize(_tu("sum", tmp_path / "s", s))
    assert [c.pass_list for c in plain.rounds[0].candidates] == [POOL[3], POOL[1]]
    assert [c.pass_list for c in safe.rounds[0].candidates] == [POOL[1], POOL[3]]
    card.risk_temperature = 0.0
    write_card(risky, card)
    off = ModelLoop(load_model(risky, intra_threads=1), s).optimize(_tu("sum", tmp_path / "o", s))
    assert [c.pass_list for c in off.rounds[0].candidates] == [POOL[3], POOL[1]]


def _with_losses(v2_model: Path, dest: Path, table: np.ndarray) -> Path:
    import shutil

    from clang_llm.model.card import read_card, write_card
    from clang_llm.model.risk import LOSSES_FILE

    shutil.copytree(v2_model, dest)
    np.save(dest / LOSSES_FILE, table)
    card = read_card(dest)
    card.risk_temperature = 1.0
    write_card(dest, card)
    return dest


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_stop_rule_skips_a_tu_the_model_expects_nothing_from_and_stops_after_a_big_win(
        v2_model: Path, tmp_path: Path, jobs: int) -> None:
    """A loss table in which no list ever helps: with `stop` > 0 no list runs at all (-Oz ships);
    with stop 0 both ranked lists run. A table in which list 1 wins 10 % and list 3 never
    helps further: after list 1 the rule stops whatever its own result, and `jobs` changes
    nothing of what is tried."""
    from clang_llm.model.risk import LOSS_SCALE

    nothing = _with_losses(v2_model, tmp_path / "nothing", np.zeros((6, len(POOL)), dtype=np.int16))
    s = Settings(rounds=1, samples=0, rank=2, stop=0.001, max_new_tokens=NEW_TOKENS, jobs=jobs)
    skipped = ModelLoop(load_model(nothing, intra_threads=1), s).optimize(_tu("sum", tmp_path / "a", s))
    assert skipped.rounds[0].opt_evaluations == 0 and skipped.rounds[0].candidates == ()
    assert skipped.rounds[0].stop and "stop = 0.001" in skipped.rounds[0].stop
    assert skipped.chosen.pass_list == "Oz" and skipped.findings == []
    s0 = Settings(rounds=1, samples=0, rank=2, stop=0.0, max_new_tokens=NEW_TOKENS, jobs=jobs)
    both = ModelLoop(load_model(nothing, intra_threads=1), s0).optimize(_tu("sum", tmp_path / "b", s0))
    assert both.rounds[0].opt_evaluations == 2 and both.rounds[0].stop is None

    table = np.zeros((6, len(POOL)), dtype=np.int16)
    table[:, 1] = round(-0.1 / LOSS_SCALE)
    first_wins = _with_losses(v2_model, tmp_path / "first", table)
    one = ModelLoop(load_model(first_wins, intra_threads=1), s).optimize(_tu("sum", tmp_path / "c", s))
    assert one.rounds[0].opt_evaluations == 1 and [c.pass_list for c in one.rounds[0].candidates] == [POOL[1]]
    assert one.rounds[0].stop
