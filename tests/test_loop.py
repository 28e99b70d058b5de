"""The feedback loop with a real (tiny) CTranslate2 model on real IR: rounds, feedback forms,
sampling, determinism, per-file rounds in a Makefile build, and the decision cache."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from model_fixture import CLANG, compile_ir

from clang_llm import ir
from clang_llm.build.tubuilder import TUBuilder
from clang_llm.config import Settings
from clang_llm.db import Database
from clang_llm.model import load_model
from clang_llm.optimizer.base import TUContext
from clang_llm.optimizer.loop import ModelLoop
from clang_llm.optimizer.prompt import build_prompt, prompt_budgets, render_answer
from clang_llm.passes import OZ

CONTEXT = 768
NEW_TOKENS = 64
GOOD_IR = "define i32 @f(i32 %x) {\n  %y = add i32 %x, 1\n  ret i32 %y\n}\n"
BAD_IR = "define i32 @f(i32 %x {\n  ret i32 %x\n"

SOURCES = {
    "sum": "int sum(const int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i]; return s; }\n",
    "pick": "int pick(int c, int a, int b) { if (c > 3) return a * 2 + b; return b - a; }\n",
}
# Each program's memorized answer: a valid pass list, deliberately wrong count predictions, and
# generated IR that parses (sum) or does not (pick), so every feedback element has something to say.
ANSWERS = {"sum": ("Oz gvn-sink", 9999, 7, GOOD_IR), "pick": ("Oz simplifycfg", 9999, 5, BAD_IR)}


@pytest.fixture(scope="module")
def loop_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from tokenizers import Tokenizer

    from clang_llm.train.export import export
    from clang_llm.train.tokenizer import fit_tokenizer
    from clang_llm.train.trainer import train

    work = tmp_path_factory.mktemp("loop-model")
    irs = {n: compile_ir(s, work, n) for n, s in SOURCES.items()}
    answers = {n: render_answer(p, b, a, x) for n, (p, b, a, x) in ANSWERS.items()}
    # Like the real tokenizer, fitted on feedback text too (feedback examples are training data).
    feedback = ("feedback: pass list valid\nfeedback: predicted count_before 9999, real 33\nfeedback: predicted "
                "count_after 7, real 13\nfeedback: beats -Oz no (.text 23 vs 23 bytes, alloc 71 vs 71 bytes)\n"
                "feedback: generated ir parses\nfeedback: bleu 0.000 (generated ir vs compiled ir)\n"
                "feedback: compiled ir:\nfeedback: generated ir does not parse: expected type\n")
    texts = list(irs.values()) * 4 + list(answers.values()) * 4 + [feedback] * 8
    tok = fit_tokenizer(texts, work / "tok.json", vocab_size=900)
    t = Tokenizer.from_file(str(tok))
    with open(work / "ex.jsonl", "w") as f:
        for n in SOURCES:
            # The loop's own prompt: same normalization, same budget.
            budget = prompt_budgets(CONTEXT, NEW_TOKENS)[0]
            prompt = build_prompt(str(ir.parse(irs[n])), budget, lambda s: len(t.encode(s).ids))
            f.write(json.dumps({"prompt": prompt, "answer": answers[n]}) + "\n")
    ckpt = train(work / "ex.jsonl", tok, work / "train", steps=80, batch_size=2, seq_len=CONTEXT, hidden_size=64,
                 num_layers=2, num_heads=4, lr=1e-2, warmup_steps=5, save_every=1000, log_every=20,
                 cpu_threads=1, progress=False)
    return export(ckpt, work / "model", name="loop-test")


def _tu(name: str, work: Path, settings: Settings, opt: str = "opt-22") -> TUContext:
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"{name}.c"
    src.write_text(SOURCES[name])
    bc = work / "in.bc"
    subprocess.run([CLANG, "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", str(src), "-o", str(bc)],
                   check=True)
    b = TUBuilder(Path(CLANG), Path(opt), [], "c", bc, work, 30)
    mod = ir.parse(bc)
    b.count_before = ir.count_instructions(mod)
    oz = b.evaluate(OZ, verify_each=False)
    return TUContext(ir_path=bc, ir_text=str(mod), count_before=b.count_before, baseline=oz, evaluate=b.evaluate,
                     settings=settings)


class _PromptSpy:
    """The real model, with the prompts it was given remembered (no mock: it still generates)."""

    def __init__(self, model: object) -> None:
        self.model, self.prompts, self.calls = model, [], []

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def generate(self, prompt: str, **kw: object) -> list[str]:
        self.prompts.append(prompt)
        self.calls.append(kw)
        return self.model.generate(prompt, **kw)  # type: ignore[attr-defined]


def _run(model_dir: Path, name: str, work: Path, form: str, opt: str = "opt-22", rounds: int = 2,
         samples: int = 1) -> tuple[object, _PromptSpy]:
    s = Settings(rounds=rounds, samples=samples, feedback=form, max_new_tokens=NEW_TOKENS, jobs=2)
    spy = _PromptSpy(load_model(model_dir, intra_threads=1))
    decision = ModelLoop(spy, s).optimize(_tu(name, work, s, opt))  # type: ignore[arg-type]
    return decision, spy


@pytest.mark.parametrize("form", ["fast", "short", "long"])
def test_round_two_prompt_carries_round_one_findings(loop_model: Path, tmp_path: Path, form: str) -> None:
    d, spy = _run(loop_model, "sum", tmp_path / "w", form)
    assert d.model_calls == 2 and len(spy.prompts) == 2 and len(d.rounds) == 2
    cand = d.rounds[0].candidates[0]
    first, claimed = cand.finding, cand.prediction
    assert first.pass_list == "Oz gvn-sink" and first.valid
    assert claimed.count_after == 7 and first.count_after != 7
    second = spy.prompts[1]
    assert second.startswith(spy.prompts[0].rsplit("<|answer|>", 1)[0])  # the original prompt, extended
    assert "passes: Oz gvn-sink" in second  # with the previous answer
    assert f"feedback: predicted count_after 7, real {first.count_after}" in second
    assert f"feedback: predicted count_before 9999, real {first.count_before}" in second
    if form == "fast":
        assert "generated ir" not in second and "bleu" not in second
    else:
        assert claimed.ir_parses is True and claimed.bleu is not None and 0 <= claimed.bleu <= 1
        assert "feedback: generated ir parses" in second and f"feedback: bleu {claimed.bleu:.3f}" in second
    assert ("feedback: compiled ir:" in second) == (form == "long")
    if form == "long":
        shown = second.split("feedback: compiled ir:", 1)[1].split("<|answer|>")[0].splitlines()
        assert any(ln.strip() and not ln.startswith(";") for ln in shown)  # real lines of opt's IR


def test_ir_parse_error_reaches_the_feedback(loop_model: Path, tmp_path: Path) -> None:
    d, spy = _run(loop_model, "pick", tmp_path / "w", "short")
    claimed = d.rounds[0].candidates[0].prediction
    assert claimed.ir_parses is False and claimed.ir_error
    assert "feedback: generated ir does not parse:" in spy.prompts[1]


def test_opt_error_text_reaches_the_feedback(loop_model: Path, tmp_path: Path) -> None:
    fake = tmp_path / "opt-rejects-gvn-sink"
    fake.write_text('#!/bin/sh\ncase "$*" in *gvn-sink*) echo "opt: injected failure in gvn-sink" >&2; exit 1;; '
                    'esac\nexec opt-22 "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    d, spy = _run(loop_model, "sum", tmp_path / "w", "short", opt=str(fake))
    first = d.rounds[0].candidates[0].finding
    assert first.valid is False and first.error_kind == "opt-error"
    assert "feedback: pass list invalid (opt-error)" in spy.prompts[1]
    assert "injected failure in gvn-sink" in spy.prompts[1]
    assert d.chosen.pass_list == "Oz"  # nothing valid beat it


def test_sampling_is_seeded(loop_model: Path, tmp_path: Path) -> None:
    a, _ = _run(loop_model, "sum", tmp_path / "a", "fast", rounds=1, samples=4)
    b, _ = _run(loop_model, "sum", tmp_path / "b", "fast", rounds=1, samples=4)
    assert a.model_calls == 1 and a.rounds[0].candidates
    assert [c.answer for c in a.rounds[0].candidates] == [c.answer for c in b.rounds[0].candidates]


def test_k_samples_start_with_the_greedy_answer_and_are_distinct(loop_model: Path, tmp_path: Path) -> None:
    one, _ = _run(loop_model, "sum", tmp_path / "one", "fast", rounds=1, samples=1)
    four, spy = _run(loop_model, "sum", tmp_path / "four", "fast", rounds=1, samples=4)
    cands = four.rounds[0].candidates
    assert cands[0].answer == one.rounds[0].candidates[0].answer
    assert spy.calls[0]["k"] == 1 and spy.calls[0]["temperature"] == 0.0
    lists = [c.pass_list for c in cands if c.finding.error_kind != "parse"]
    assert len(lists) == len(set(lists)) <= 4  # a repeated list is dropped, not evaluated again
    sampled = sum(int(c["k"]) for c in spy.calls[1:])
    assert all(c["temperature"] > 0 for c in spy.calls[1:])
    # the tiny model repeats itself, so sampling goes on to its cap of 4k draws, and no further
    assert len(lists) < 4 and 4 * 4 - 3 <= sampled <= 4 * 4 + 3


def _wrapper() -> list[str]:
    return [sys.executable, "-c", "from clang_llm.driver.main import main_c; main_c()"]


def test_two_builds_give_identical_objects(loop_model: Path, tmp_path: Path, state: Path) -> None:
    (tmp_path / "sum.c").write_text(SOURCES["sum"])
    env = {**os.environ, "CLANG_LLM_CACHE": "0", "CLANG_LLM_MAX_NEW_TOKENS": str(NEW_TOKENS),
           "CLANG_LLM_MIN_INSTRUCTIONS": "0"}
    objs = []
    for i in range(2):
        r = subprocess.run([*_wrapper(), "-c", "sum.c", "-o", f"o{i}.o", f"--llm-model={loop_model}",
                            "--llm-rounds=2", "--llm-samples=3"], cwd=tmp_path, env=env, capture_output=True)
        assert r.returncode == 0 and r.stderr == b""
        objs.append((tmp_path / f"o{i}.o").read_bytes())
    assert objs[0] == objs[1]
    rec = Database(state).get_record(str(tmp_path / "o0.o"))
    assert rec is not None and rec.model_calls == 2 and rec.model_id != "none"


MAKEFILE = """\
CC = clang-llm
CFLAGS = -O2 --llm-model={model} --llm-max-new-tokens={new}
OBJS = sum.o pick.o main.o
all: $(OBJS)
hot: all
pick.o: CFLAGS += --llm-rounds=3
%.o: %.c
\t$(CC) $(CFLAGS) -c $< -o $@
clean:
\trm -f $(OBJS)
"""


def test_makefile_per_file_rounds_and_cache(loop_model: Path, tmp_path: Path, state: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    for n, s in SOURCES.items():
        (proj / f"{n}.c").write_text(s)
    (proj / "main.c").write_text("int sum(const int*, int); int main(void) { int a[3] = {1,2,3}; return sum(a, 3); }\n")
    (proj / "Makefile").write_text(MAKEFILE.format(model=loop_model, new=NEW_TOKENS))
    bindir = Path(sys.executable).parent
    # These sources are a few instructions each: below the default `min_instructions` the model
    # is not asked at all, and this test is about what it is asked.
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "CLANG_LLM_MIN_INSTRUCTIONS": "0"}
    assert subprocess.run(["make", "-s", "-j2"], cwd=proj, env=env).returncode == 0
    db = Database(state)
    rounds = {Path(r.object).name: len(r.rounds) for r in db.all_records()}
    assert rounds["pick.o"] == 3 and rounds["sum.o"] == 1 and rounds["main.o"] == 1
    explain = subprocess.run([str(bindir / "clang-llm-tool"), "explain", str(proj / "pick.o")], env=env,
                             capture_output=True, text=True)
    assert explain.stdout.count("--- round") == 3
    first = {p.name: p.read_bytes() for p in proj.glob("*.o")}
    calls_before = db.size_totals()["model_calls"]
    assert calls_before >= 5
    subprocess.run(["make", "-s", "clean"], cwd=proj, env=env, check=True)
    assert subprocess.run(["make", "-s", "-j2"], cwd=proj, env=env).returncode == 0
    assert {p.name: p.read_bytes() for p in proj.glob("*.o")} == first
    totals = db.size_totals()
    assert totals["model_calls"] == calls_before  # the rebuild asked the model nothing
    assert totals["cache_hits"] == 3


class _Answers(_PromptSpy):
    """The real model's interface, answering with given texts (what the loop does with them is
    under test, not what the model would say)."""

    def __init__(self, model: object, texts: list[str]) -> None:
        super().__init__(model)
        self.texts = texts

    def generate(self, prompt: str, **kw: object) -> list[str]:
        self.prompts.append(prompt)
        return self.texts


def test_an_answer_of_oz_reuses_the_baseline(loop_model: Path, tmp_path: Path) -> None:
    """The baseline's own list costs no opt run: its candidate is the -Oz finding, not counted."""
    s = Settings(rounds=1, samples=2, max_new_tokens=NEW_TOKENS, jobs=2)
    tu = _tu("sum", tmp_path, s)
    ran: list[str] = []
    evaluate = tu.evaluate
    tu = replace(tu, evaluate=lambda pl: ran.append(str(pl)) or evaluate(pl))
    model = _Answers(load_model(loop_model, intra_threads=1),
                     [render_answer("Oz", 9, 5, GOOD_IR), render_answer("Oz gvn-sink", 9, 5, GOOD_IR)])
    decision = ModelLoop(model, s).optimize(tu)  # type: ignore[arg-type]
    assert ran == ["Oz gvn-sink"]
    (rnd,) = decision.rounds
    assert rnd.opt_evaluations == 1
    assert rnd.candidates[0].finding is tu.oz and rnd.candidates[1].finding.pass_list == "Oz gvn-sink"


@pytest.mark.parametrize("rounds", [1, 2])
def test_the_last_rounds_only_candidate_runs_verified(loop_model: Path, tmp_path: Path, rounds: int) -> None:
    """A decision's last round with one list evaluates it with -verify-each (if it wins it ships,
    and the driver would otherwise re-run it verified); earlier rounds' lists run unverified."""
    s = Settings(rounds=rounds, samples=1, feedback="fast", max_new_tokens=NEW_TOKENS, jobs=1)
    tu = _tu("sum", tmp_path, s)
    b = TUBuilder(Path(CLANG), Path("opt-22"), [], "c", tu.ir_path, tmp_path, 30)
    b.count_before = tu.count_before
    ran: list[tuple[str, bool]] = []

    def evaluate(pl: object, verify: bool) -> object:
        ran.append((str(pl), verify))
        return b.evaluate(pl, verify_each=verify)  # type: ignore[arg-type]

    tu = replace(tu, evaluate=lambda pl: evaluate(pl, False), evaluate_verified=lambda pl: evaluate(pl, True))
    model = _Answers(load_model(loop_model, intra_threads=1), [render_answer("Oz gvn-sink", 9999, 5, GOOD_IR)])
    decision = ModelLoop(model, s).optimize(tu)  # type: ignore[arg-type]
    assert ran == [("Oz gvn-sink", False)] * (rounds - 1) + [("Oz gvn-sink", True)]
    assert [r.candidates[0].finding.verified for r in decision.rounds] == [False] * (rounds - 1) + [True]
