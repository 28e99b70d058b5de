"""Export a trained checkpoint to a model directory the driver can load (CTranslate2 int8).

The directory is built beside the target and renamed into place, and it is opened with
`load_model` before that, so a broken export never replaces a working model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from clang_llm import LLVM_MAJOR
from clang_llm.atomic import replace_dir
from clang_llm.model.card import ModelCard, write_card
from clang_llm.optimizer.prompt import PROMPT_FORMAT
from clang_llm.passes import Vocabulary

SUMMARY_FILE = "train-summary.json"


def export(
    checkpoint_dir: str | Path,
    out_dir: str | Path,
    *,
    quantization: str = "int8",
    name: str = "",
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    force: bool = False,
    prompt_budget: int = 0,
    prompt_format: str = PROMPT_FORMAT,
    pool: list[str] | None = None,
) -> Path:
    """Convert a Hugging Face checkpoint (from `train`) into ``out_dir``; returns ``out_dir``.

    The card's ``training`` section is the checkpoint's ``train-summary.json`` updated with
    ``training``; ``context_length`` is the model's ``max_position_embeddings``.
    """
    from ctranslate2.converters import TransformersConverter

    from clang_llm.model.ct2 import load_model

    src, out = Path(checkpoint_dir), Path(out_dir)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists (use force=True to replace it)")
    if not (src / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{src}: no tokenizer.json (not a checkpoint written by train)")
    config = json.loads((src / "config.json").read_text())
    summary = json.loads((src / SUMMARY_FILE).read_text()) if (src / SUMMARY_FILE).is_file() else {}
    summary.update(training or {})

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    TransformersConverter(str(src), load_as_float16=False).convert(str(tmp), quantization=quantization, force=True)
    shutil.copyfile(src / "tokenizer.json", tmp / "tokenizer.json")
    card = ModelCard(
        llvm_major=LLVM_MAJOR,
        pass_vocabulary_version=Vocabulary.default().version,
        prompt_format=prompt_format,
        pool=list(pool or []),
        context_length=int(config["max_position_embeddings"]),
        prompt_budget=prompt_budget,
        training=summary,
        metrics=dict(metrics or {}),
        name=name,
    )
    card.training["quantization"] = quantization
    write_card(tmp, card)
    load_model(tmp, intra_threads=1)  # raises ModelError before anything is replaced
    replace_dir(tmp, out)
    return out
