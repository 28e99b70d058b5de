"""One command from labelled corpus to shipped model: tokenizer → examples → training → int8 export.

Every stage writes its output atomically into the work dir and is skipped when present, so an
interrupted run resumes where it stopped (training itself resumes from its checkpoint). Given a
committed examples file and tokenizer instead of labels + corpus, it starts at training: that is
how the shipped model is reproduced from a clean checkout, where the train modules are not kept.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from clang_llm.atomic import atomic_path
from clang_llm.records import LabelRecord, open_text, read_labels
from clang_llm.train.configs import ModelRecipe


def make_model(labels_path: Path | None, modules_dir: Path | None, work: Path, out: Path, recipe: ModelRecipe,
               name: str = "clang-llm-default", force_export: bool = False, index_path: Path | None = None,
               examples_path: Path | None = None, tokenizer_path: Path | None = None) -> Path:
    """Stages (each skipped when its output exists): tokenizer, prompts, examples, training, export.

    `examples_path` (JSONL, optionally .xz/.gz) and `tokenizer_path` replace the first three stages.
    """
    from clang_llm.train.export import export
    from clang_llm.train.trainer import train

    work.mkdir(parents=True, exist_ok=True)
    tok_path, examples = work / "tokenizer.json", work / "examples.jsonl"
    if examples_path and tokenizer_path:
        _copy_text(tokenizer_path, tok_path)
        _copy_text(examples_path, examples)
        labels: list[LabelRecord] | None = None
    elif labels_path and modules_dir:
        labels = _prepare(labels_path, modules_dir, work, tok_path, examples, recipe, index_path)
    else:
        raise ValueError("make_model needs labels + corpus modules, or an examples file + tokenizer")
    pool = read_pool(examples) if recipe.prompt_format == "cllm-v2" else []
    t0 = time.monotonic()
    ckpt = train(examples, tok_path, work / "train", steps=recipe.steps, schedule_steps=recipe.schedule_steps,
                 batch_size=recipe.batch_size, seq_len=recipe.context, hidden_size=recipe.hidden_size,
                 num_layers=recipe.num_layers, num_heads=recipe.num_heads, lr=recipe.lr, seed=recipe.seed,
                 cpu_threads=recipe.cpu_threads, rank_weight=recipe.rank_weight,
                 risk_lambda=recipe.risk_lambda)
    training: dict[str, Any] = {
        "recipe": asdict(recipe), "labels": labels_path.name if labels_path else None,
        "data": _data_summary(labels, examples), "train_wall_seconds_this_run": round(time.monotonic() - t0, 1),
    }
    return export(ckpt, out, name=name, training=training, force=force_export, prompt_budget=recipe.prompt_budget,
                  prompt_format=recipe.prompt_format, pool=pool)


def load_pool(path: Path) -> list[str]:
    """A fixed pool: a model directory's card, or a JSON file / examples file whose first line is
    `{"pool": [...]}`."""
    if path.is_dir():
        from clang_llm.model.card import read_card

        return read_card(path).pool
    if path.suffix == ".json":
        return list(json.loads(path.read_text())["pool"])
    return read_pool(path)


def read_pool(examples: Path) -> list[str]:
    """The stored lists of a cllm-v2 model: the examples file's first line (`{"pool": [...]}`),
    so that a committed examples file alone rebuilds the model."""
    with open(examples, encoding="utf-8") as f:
        first = json.loads(f.readline() or "{}")
    if "pool" not in first:
        raise ValueError(f"{examples}: a cllm-v2 examples file starts with its pool record")
    return list(first["pool"])


def _prepare(labels_path: Path, modules_dir: Path, work: Path, tok_path: Path, examples: Path,
             recipe: ModelRecipe, index_path: Path | None) -> list[LabelRecord]:
    """Tokenizer → prompts → examples from the labelled train split; returns the labels."""
    from tokenizers import Tokenizer

    from clang_llm.optimizer.prompt import prompt_budgets
    from clang_llm.train.examples import model_pool, tokenizer_texts, write_examples, write_examples_v2, write_prompts
    from clang_llm.train.tokenizer import fit_tokenizer

    labels = read_labels(labels_path)
    train_ids = _train_ids(index_path or modules_dir.parent / "index.jsonl.gz", labels)
    split_of = {i: "train" for i in train_ids}
    labels = [replace(r, split=split_of.get(r.id, "other")) for r in labels]  # the index decides splits
    v2 = recipe.prompt_format == "cllm-v2"
    if not tok_path.exists():
        fit_tokenizer(tokenizer_texts(train_ids, labels, modules_dir, seed=recipe.seed, summary=v2), tok_path,
                      vocab_size=recipe.vocab_size, choice_tokens=v2)
    tok = Tokenizer.from_file(str(tok_path))

    def count(text: str) -> int:
        return len(tok.encode(text).ids)

    first_budget, _ = prompt_budgets(recipe.context, recipe.max_new_tokens, recipe.prompt_budget)
    prompts = write_prompts(train_ids, modules_dir, work / "prompts.jsonl", count, first_budget, summary=v2)
    if not examples.exists():
        if v2:
            pool = (load_pool(Path(recipe.pool_from)) if recipe.pool_from
                    else model_pool([r for r in labels if r.split == "train"], recipe.pool_size))
            from clang_llm.train.pool_sweep import read_sweep

            swept = read_sweep(Path(recipe.sweep), pool) if recipe.sweep else None
            write_examples_v2(labels, prompts, pool, examples, count, recipe.context, recipe.max_new_tokens,
                              seed=recipe.seed, sweep=swept)
        else:
            write_examples(labels, prompts, examples, count, recipe.context, recipe.max_new_tokens, seed=recipe.seed)
    return labels


def _copy_text(src: Path, dst: Path) -> None:
    """Copy (decompressing .xz/.gz) atomically; skipped when `dst` exists (resume)."""
    if dst.exists():
        return
    with atomic_path(dst) as tmp, open_text(src) as fin, open(tmp, "w", encoding="utf-8") as fout:
        shutil.copyfileobj(fin, fout)


def _train_ids(index_path: Path, labels: list[LabelRecord]) -> list[str]:
    """Ids of the train split: from the corpus index when there is one, else from the labels."""
    if index_path.exists():
        with open_text(index_path) as f:
            return [d["id"] for d in map(json.loads, f) if d.get("split") == "train"]
    return [r.id for r in labels if r.split == "train"]


def _data_summary(labels: list[LabelRecord] | None, examples: Path) -> dict[str, Any]:
    with open(examples) as f:
        exs = [d for d in map(json.loads, f) if "prompt" in d]  # a cllm-v2 file's pool line is no example
    kinds = dict(Counter(ex.get("kind", "?") for ex in exs))
    if labels is None:  # from a committed examples file: the modules it names
        return {"train_modules": len({ex["id"] for ex in exs if ex.get("id")}), "examples": kinds}
    train_recs = [r for r in labels if r.split == "train" and r.status == "ok"]
    return {"train_modules": len(train_recs), "packages": sorted({r.package for r in train_recs}),
            "examples": kinds}
