"""The model directory format and the CTranslate2 backend, on a real tiny model (no mocks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from model_fixture import CONTEXT, PROGRAMS, TinyModel, tiny_model  # noqa: F401  (session fixture)

from clang_llm import LLVM_MAJOR
from clang_llm.errors import ModelError
from clang_llm.model import CARD_FILE, MODEL_FILES, load_model, read_card
from clang_llm.optimizer.prompt import PROMPT_FORMAT, Answer, parse_answer
from clang_llm.passes import Vocabulary, parse_pass_list, split_tokens

# --------------------------------------------------------------------------- bad directories (no torch)


def _garbage_dir(path: Path, card: dict | None = None) -> Path:
    path.mkdir()
    for name in MODEL_FILES:
        (path / name).write_text("garbage")
    card = card or {
        "llvm_major": LLVM_MAJOR,
        "pass_vocabulary_version": Vocabulary.default().version,
        "prompt_format": PROMPT_FORMAT,
        "context_length": 512,
    }
    (path / CARD_FILE).write_text(json.dumps(card))
    return path


def _one_line_error(model_dir: Path, match: str) -> None:
    with pytest.raises(ModelError, match=match) as info:
        load_model(model_dir)
    assert "\n" not in str(info.value)


def test_missing_dir(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nope", "model directory not found")


def test_empty_dir(tmp_path: Path) -> None:
    _one_line_error(tmp_path, r"not a model directory \(missing model.bin, config.json")


def test_garbage_tokenizer(tmp_path: Path) -> None:
    _one_line_error(_garbage_dir(tmp_path / "m"), "unreadable tokenizer")


def test_bad_cards(tmp_path: Path) -> None:
    d = _garbage_dir(tmp_path / "a")
    (d / CARD_FILE).write_text("{not json")
    _one_line_error(d, "model-card.json: unreadable")
    good = json.loads(json.dumps(read_card_dict()))
    for i, (field, value, match) in enumerate(
        [
            ("llvm_major", LLVM_MAJOR - 3, f"model is for LLVM {LLVM_MAJOR - 3}"),
            ("prompt_format", "other-v9", "prompt format 'other-v9'"),
            ("context_length", "big", "field 'context_length' missing or not int"),
            ("context_length", 0, "context_length must be positive"),
            ("metrics", [1], "field 'metrics' must be an object"),
        ]
    ):
        card = dict(good, **{field: value})
        _one_line_error(_garbage_dir(tmp_path / f"c{i}", card), match)


def read_card_dict() -> dict:
    return {
        "llvm_major": LLVM_MAJOR,
        "pass_vocabulary_version": Vocabulary.default().version,
        "prompt_format": PROMPT_FORMAT,
        "context_length": 512,
    }


# --------------------------------------------------------------------------- the real tiny model


def test_load_and_card(tiny_model: TinyModel) -> None:  # noqa: F811
    model = load_model(tiny_model.model_dir, intra_threads=1)
    card = read_card(tiny_model.model_dir)
    assert model.context_length == card.context_length == CONTEXT
    assert card.prompt_format == PROMPT_FORMAT and card.llvm_major == LLVM_MAJOR
    assert card.training["steps"] == 50 and card.training["quantization"] == "int8"
    assert card.training["examples"] == 3 and card.training["params"] > 10_000
    assert model.warnings == []
    assert len(model.id) == 16 and model.id == load_model(tiny_model.model_dir).id
    assert model.count_tokens("define i32 @f()") > 0
    for prompt in tiny_model.prompts.values():
        assert model.count_tokens(prompt) <= model.context_length - 64


def _assert_parse_contract(text: str) -> Answer:
    """What `parse_answer` guarantees for any model text, whatever the model learned."""
    vocab = Vocabulary.default()
    a = parse_answer(text)
    assert isinstance(a, Answer)
    assert all(isinstance(p, str) and p and "\n" not in p for p in a.problems)  # one line each
    for n in (a.count_before, a.count_after):
        assert n is None or (isinstance(n, int) and n >= 0)
    assert a.ir is None or (a.ir.strip() and a.ir.endswith("\n"))
    if a.pass_list is None:
        assert a.problems  # a rejected answer always says why
    else:  # only vocabulary passes, a list the driver can run as it stands
        assert a.pass_list.tokens and all(t in vocab for t in a.pass_list.tokens)
        assert a.pass_text is not None and split_tokens(a.pass_text) == list(a.pass_list.tokens)
        assert parse_pass_list(str(a.pass_list), vocab) == a.pass_list
        assert not any(p.startswith(("unknown pass", "bad pass list", "could not parse")) for p in a.problems)
    return a


def test_greedy_is_reproducible_and_valid(tiny_model: TinyModel) -> None:  # noqa: F811
    model = load_model(tiny_model.model_dir, intra_threads=2)
    fresh = load_model(tiny_model.model_dir, intra_threads=1)
    for prompt in tiny_model.prompts.values():
        first = model.generate(prompt, k=1, seed=0, temperature=0.0, max_new_tokens=40)
        assert len(first) == 1 and isinstance(first[0], str)
        assert model.generate(prompt, k=1, seed=99, temperature=0.0, max_new_tokens=40) == first  # draws nothing
        assert fresh.generate(prompt, k=1, seed=5, temperature=0.0, max_new_tokens=40) == first
        _assert_parse_contract(first[0])


def test_sampling_is_reproducible_with_seed(tiny_model: TinyModel) -> None:  # noqa: F811
    model = load_model(tiny_model.model_dir, intra_threads=2)
    prompt = tiny_model.prompts["loop"]
    a = model.generate(prompt, k=4, seed=7, temperature=1.0, max_new_tokens=30)
    assert len(a) == 4
    assert model.generate(prompt, k=4, seed=7, temperature=1.0, max_new_tokens=30) == a
    fresh = load_model(tiny_model.model_dir, intra_threads=1)  # another process-like start
    assert fresh.generate(prompt, k=4, seed=7, temperature=1.0, max_new_tokens=30) == a
    # Another seed draws other samples: at a very high temperature the choice is nearly uniform, so
    # this does not hang on how sure the tiny model happens to be.
    hot = [model.generate(prompt, k=4, seed=s, temperature=50.0, max_new_tokens=30) for s in (7, 8)]
    assert hot[0] != hot[1]
    after_greedy = load_model(tiny_model.model_dir, intra_threads=2)  # greedy/beam draw nothing
    after_greedy.generate(prompt, k=1, seed=7, temperature=0.0, max_new_tokens=10)
    after_greedy.generate(prompt, k=2, seed=7, temperature=0.0, max_new_tokens=10)
    assert after_greedy.generate(prompt, k=4, seed=7, temperature=1.0, max_new_tokens=30) == a
    for text in [*a, *hot[0]]:  # whatever the model says, parsing holds
        _assert_parse_contract(text)
        _assert_parse_contract("passes: " + text)  # and the model's text read as a pass list


def test_batch_and_beam(tiny_model: TinyModel) -> None:  # noqa: F811
    model = load_model(tiny_model.model_dir, intra_threads=2)
    prompts = list(tiny_model.prompts.values())
    out = model.generate(prompts, k=2, seed=1, temperature=0.7, max_new_tokens=12)
    assert len(out) == 6
    beams = model.generate(prompts[0], k=3, seed=1, temperature=0.0, max_new_tokens=12)
    assert len(beams) == 3 and beams == model.generate(prompts[0], k=3, seed=2, temperature=0.0, max_new_tokens=12)
    assert model.generate([], k=2, seed=0, temperature=1.0, max_new_tokens=4) == []


def test_score_ranks_the_memorized_answer_first_and_obeys_the_chain_rule(tiny_model: TinyModel) -> None:  # noqa: F811
    """`score` is the log-likelihood of a continuation: the answer the model memorized for a
    program scores above the other programs' answers, and log p(x y) = log p(x) + log p(y | x)."""
    model = load_model(tiny_model.model_dir, intra_threads=1)
    answers = {name: f"passes: {pl}\n" for name, (_, pl) in PROGRAMS.items()}
    for name, prompt in tiny_model.prompts.items():
        scores = dict(zip(answers, model.score(prompt, list(answers.values())), strict=True))
        assert all(s <= 0 for s in scores.values())
        others = [scores[n] for n in answers if n != name and answers[n] != answers[name]]
        assert all(scores[name] > s for s in others), (name, scores)
    prompt = tiny_model.prompts["loop"]
    first, rest = answers["loop"], "count_before: 12\n"
    (whole,) = model.score(prompt, [first + rest])
    (a,) = model.score(prompt, [first])
    (b,) = model.score(prompt + first, [rest])
    assert whole == pytest.approx(a + b, abs=1e-3)
    assert model.score(prompt, []) == []
    with pytest.raises(ModelError, match="does not fit the context"):
        model.score(prompt, ["passes: " + "Oz " * 400])


def test_prompt_over_context_is_model_error(tiny_model: TinyModel) -> None:  # noqa: F811
    model = load_model(tiny_model.model_dir, intra_threads=1)
    with pytest.raises(ModelError, match=f"does not fit the context of {CONTEXT}"):
        model.generate("define " * 400, k=1, seed=0, temperature=0.0, max_new_tokens=4)


def test_corrupt_model_bin_and_id_changes(tiny_model: TinyModel, tmp_path: Path) -> None:  # noqa: F811
    copy = tmp_path / "m"
    shutil.copytree(tiny_model.model_dir, copy)
    original = load_model(copy).id
    (copy / "model.bin").write_bytes(b"\0" * 100)
    _one_line_error(copy, "cannot load the CTranslate2 model")
    shutil.copyfile(tiny_model.model_dir / "model.bin", copy / "model.bin")
    card = json.loads((copy / CARD_FILE).read_text())
    card["pass_vocabulary_version"] = "llvm22-0000000000"
    (copy / CARD_FILE).write_text(json.dumps(card))
    changed = load_model(copy)
    assert changed.id != original and "pass vocabulary" in changed.warnings[0]


def test_model_path_never_imports_torch(tiny_model: TinyModel) -> None:  # noqa: F811
    code = (
        "import sys\n"
        "import clang_llm.model as m\n"
        "assert not {'torch', 'transformers'} & set(sys.modules), 'import'\n"
        f"model = m.load_model({str(tiny_model.model_dir)!r}, intra_threads=1)\n"
        f"model.generate({tiny_model.prompts['branch']!r}, k=2, seed=0, temperature=1.0, max_new_tokens=8)\n"
        "assert not {'torch', 'transformers'} & set(sys.modules), 'generate'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_import_without_torch_even_without_a_model() -> None:
    code = "import sys, clang_llm.model, clang_llm.optimizer.prompt; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_training_resumes_from_checkpoint(tiny_model: TinyModel, tmp_path: Path) -> None:  # noqa: F811
    pytest.importorskip("torch")
    from clang_llm.train.export import export
    from clang_llm.train.trainer import LOSS_LOG, train

    work = tiny_model.model_dir.parent
    run = tmp_path / "train"
    shutil.copytree(work / "train", run)
    log_before = (run / LOSS_LOG).read_text().splitlines()
    assert json.loads(log_before[-1])["step"] == 50
    common = dict(
        seq_len=CONTEXT, hidden_size=64, num_layers=2, num_heads=4, lr=1e-2, log_every=1, progress=False, cpu_threads=1
    )
    ckpt = train(work / "examples.jsonl", work / "tokenizer.json", run, steps=52, batch_size=3, **common)
    log = [json.loads(line) for line in (run / LOSS_LOG).read_text().splitlines()]
    assert [r["step"] for r in log][-3:] == [50, 51, 52]
    summary = json.loads((ckpt / "train-summary.json").read_text())
    assert summary["steps"] == 52
    # done already: returns at once, nothing changes
    mtime = (ckpt / "trainer_state.pt").stat().st_mtime_ns
    train(work / "examples.jsonl", work / "tokenizer.json", run, steps=52, batch_size=3, **common)
    assert (ckpt / "trainer_state.pt").stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError):
        export(ckpt, tiny_model.model_dir)
