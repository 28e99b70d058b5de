"""The whole model pipeline on a tiny dataset, for real: record a build with the wrapper → corpus →
autotuner labels → tokenizer/examples/training → int8 export → compile with the new model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from clang_llm.db import Database

SOURCES = {
    "sum.c": "int sum(const int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i]; return s; }\n",
    "pick.c": "int pick(int c, int a, int b) { switch (c) { case 0: return a; case 1: return b; case 2: return a+b;"
              " case 3: return a-b; default: return 0; } }\n",
    "copy.c": "void copy(char *d, const char *s, int n) { for (int i = 0; i < n; i++) d[i] = s[i]; }\n",
    "tree.c": "struct N { struct N *l, *r; int v; };\nint depth(struct N *n) { if (!n) return 0; int a = depth(n->l),"
              " b = depth(n->r); return 1 + (a > b ? a : b); }\n",
}


def _wrapper() -> list[str]:
    return [sys.executable, "-c", "from clang_llm.driver.main import main_c; main_c()"]


@pytest.mark.slow
def test_record_label_train_export_compile(tmp_path: Path, state: Path) -> None:
    pytest.importorskip("torch")
    from clang_llm.records import read_labels
    from clang_llm.train.autotune import autotune, load_tasks
    from clang_llm.train.configs import AutotuneConfig, ModelRecipe
    from clang_llm.train.corpus import META_FILE, build_corpus
    from clang_llm.train.make_model import make_model

    proj, rec = tmp_path / "proj", tmp_path / "record" / "tinypkg"
    proj.mkdir()
    rec.mkdir(parents=True)
    (rec / META_FILE).write_text(json.dumps({"package": "tinypkg", "split": "train"}))
    env = {**os.environ, "CLANG_LLM_RECORD": str(rec), "CLANG_LLM_OFF": "1"}
    for name, text in SOURCES.items():
        (proj / name).write_text(text)
        r = subprocess.run([*_wrapper(), "-O2", "-c", name, "-o", name + ".o"], cwd=proj, env=env)
        assert r.returncode == 0
    assert len(list(rec.glob("*.bc"))) == len(SOURCES)  # record mode: one entry per TU

    corpus = tmp_path / "corpus"
    summary = build_corpus([rec], corpus, jobs=1)
    assert summary["modules"] == len(SOURCES)
    labels = tmp_path / "labels.jsonl.gz"
    tasks = load_tasks(index=corpus / "index.jsonl.gz", modules_dir=corpus / "modules")
    autotune(tasks, labels, AutotuneConfig(budget=3), jobs=1, progress=False)
    recs = read_labels(labels)
    assert len(recs) == len(SOURCES) and all(r.status == "ok" for r in recs)

    recipe = ModelRecipe(context=512, prompt_budget=200, max_new_tokens=48, vocab_size=800, hidden_size=64,
                         prompt_format="cllm-v1",
                         num_layers=2, num_heads=4,
                         steps=40, batch_size=4, lr=1e-2, cpu_threads=1)
    model = make_model(labels, corpus / "modules", tmp_path / "work", tmp_path / "model", recipe, name="tiny")
    card = json.loads((model / "model-card.json").read_text())
    assert card["context_length"] == 512 and card["prompt_budget"] == 200
    assert card["training"]["data"]["train_modules"] == len(SOURCES)

    (proj / "new.c").write_text("int tri(int n) { int t = 0; while (n > 0) t += n--; return t; }\n")
    env = {**os.environ, "CLANG_LLM_MAX_NEW_TOKENS": "48", "CLANG_LLM_MIN_INSTRUCTIONS": "0"}  # tiny TUs
    r = subprocess.run([*_wrapper(), "-c", "new.c", "-o", "new.o", f"--llm-model={model}", "--llm-samples=2"],
                       cwd=proj, env=env, capture_output=True)
    assert r.returncode == 0 and r.stderr == b""
    record = Database(state).get_record(str(proj / "new.o"))
    assert record is not None and record.model_calls == 1 and record.model_id not in ("none", None)
    # --llm-samples=2: at most 2 distinct valid lists reach opt; a tiny model's unparsable or repeated
    # answers are kept in the record but fill no slot, and drawing stops after 4k samples (+ greedy).
    # An answer of Oz is the baseline's own finding: no opt run.
    first = record.rounds[0]
    lists = {c.pass_list for c in first.candidates
             if c.finding.error_kind not in ("parse", "unknown-pass") and c.pass_list != "Oz"}
    assert 1 <= len(first.candidates) <= 1 + 4 * 2
    assert first.opt_evaluations == len(lists) <= 2
    assert record.chosen.sizes.text <= record.oz.sizes.text

    # The same labels as a cllm-v2 model: a pool of stored lists (Oz first, then the coreset)
    # travels in the examples file and the card, and the wrapper ranks it.
    v2 = make_model(labels, corpus / "modules", tmp_path / "work2", tmp_path / "model2",
                    replace(recipe, prompt_format="cllm-v2", pool_size=4), name="tiny-v2")
    card2 = json.loads((v2 / "model-card.json").read_text())
    examples = [json.loads(s) for s in (tmp_path / "work2/examples.jsonl").read_text().splitlines()]
    assert card2["prompt_format"] == "cllm-v2" and card2["pool"] == examples[0]["pool"]
    assert card2["pool"][0] == "Oz" and 1 <= len(card2["pool"]) <= 4
    assert all(ex["targets"] and ex["prompt"].startswith("<|prompt|> cllm-v2 size\n; tu: ") for ex in examples[1:])
    r = subprocess.run([*_wrapper(), "-c", "new.c", "-o", "new2.o", f"--llm-model={v2}", "--llm-rank=2",
                        "--llm-samples=0"], cwd=proj, env=env, capture_output=True)
    assert r.returncode == 0 and r.stderr == b""
    record = Database(state).get_record(str(proj / "new2.o"))
    assert record is not None and record.model_calls == 1
    ranked = record.rounds[0].candidates
    assert len(ranked) == min(2, len(card2["pool"]) - 1)  # never Oz, never twice
    assert all(c.answer.startswith("<|L") and c.pass_list in card2["pool"][1:] for c in ranked)
    assert record.chosen.sizes.text <= record.oz.sizes.text


@pytest.mark.slow
def test_training_from_committed_examples_is_deterministic(tmp_path: Path) -> None:
    """The shipped model is reproduced from data/train-examples-v2.jsonl.xz + its tokenizer: the
    same examples, seed and recipe give the same weights (the pool travels on the examples' first
    line into the card), and a run stopped before its learning-rate schedule ends follows that
    schedule."""
    import lzma

    from clang_llm.train.configs import ModelRecipe
    from clang_llm.train.make_model import make_model
    from clang_llm.train.trainer import _lr_factor

    root = Path(__file__).resolve().parents[1]
    with lzma.open(root / "data/train-examples-v2.jsonl.xz", "rt") as f:
        lines = [next(f) for _ in range(25)]  # the pool line and 24 examples
    small = tmp_path / "examples.jsonl"
    small.write_text("".join(lines))
    tok = root / "clang_llm/weights/default/tokenizer.json"
    recipe = ModelRecipe(context=512, prompt_budget=200, max_new_tokens=48, hidden_size=32, num_layers=1,
                         num_heads=2, steps=6, schedule_steps=20, batch_size=2, lr=1e-2, cpu_threads=1,
                         prompt_format="cllm-v2")
    models = [make_model(None, None, tmp_path / f"work{i}", tmp_path / f"model{i}", recipe,
                         examples_path=small, tokenizer_path=tok) for i in (0, 1)]
    assert (models[0] / "model.bin").read_bytes() == (models[1] / "model.bin").read_bytes()
    card = json.loads((models[0] / "model-card.json").read_text())
    assert card["training"]["steps"] == 6 and card["training"]["schedule_steps"] == 20
    assert card["training"]["data"]["train_modules"] == len({json.loads(s)["id"] for s in lines[1:]})
    assert card["prompt_format"] == "cllm-v2" and card["pool"] == json.loads(lines[0])["pool"]
    log = [json.loads(s) for s in (tmp_path / "work0/train/loss.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6
    assert log[-1]["lr"] == pytest.approx(1e-2 * _lr_factor(5, 20, 2))  # warmup = schedule // 10
    assert log[-1]["lr"] != pytest.approx(1e-2 * _lr_factor(5, 6, 1))
