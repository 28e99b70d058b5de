"""`clang-llm-tool train` / `export`: the model half of the data pipeline (needs the `train` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train_cmd(
    labels: Annotated[Path, typer.Option(help="Autotuner labels (labels.jsonl.gz)")],
    corpus: Annotated[Path, typer.Option(help="Corpus dir holding modules/<id>.bc")],
    out: Annotated[Path, typer.Option(help="Model directory to write (CTranslate2 int8 + tokenizer + card)")],
    work: Annotated[Path, typer.Option(help="Resumable work dir: tokenizer, examples, checkpoints")] = Path(
        "build/train"),
    steps: int = 3000, batch_size: int = 8, context: int = 2048, prompt_budget: int = 640,
    hidden_size: int = 256, num_layers: int = 4,
    num_heads: int = 4, vocab_size: int = 4096, lr: float = 1e-3, seed: int = 0,
    cpu_threads: Annotated[int | None, typer.Option(help="torch CPU threads (1 is fastest on a busy box)")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing model directory")] = False,
) -> None:
    """Tokenizer → examples (direct + feedback) → training (CPU or CUDA, resumable) → int8 export."""
    from clang_llm.train.make_model import ModelRecipe, make_model

    recipe = ModelRecipe(context=context, prompt_budget=prompt_budget, vocab_size=vocab_size, hidden_size=hidden_size,
                         num_layers=num_layers,
                         num_heads=num_heads, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                         cpu_threads=cpu_threads)
    path = make_model(labels, corpus / "modules", work, out, recipe, force_export=force)
    typer.echo(f"model written to {path}")


def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint dir written by train (work/train/checkpoint)")],
    out: Annotated[Path, typer.Argument(help="Model directory to write")],
    name: str = "clang-llm", force: bool = False,
    prompt_budget: Annotated[int, typer.Option(help="Round-1 prompt tokens the model was trained with")] = 640,
) -> None:
    """Checkpoint → CTranslate2 int8 model directory with model-card.json and tokenizer.json."""
    from clang_llm.train.export import export

    path = export(checkpoint, out, name=name, force=force, prompt_budget=prompt_budget)
    typer.echo(f"model written to {path}")
