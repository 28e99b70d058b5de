"""Model commands: train and export (they need the `train` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clang_llm.cli.common import require
from clang_llm.train.configs import ModelRecipe

_R = ModelRecipe()  # every training default, defined once


def train_cmd(
    out: Annotated[Path, typer.Option(help="Model directory to write (CTranslate2 int8 + tokenizer + card)")],
    labels: Annotated[Path | None, typer.Option(help="Autotuner labels (labels.jsonl.gz)")] = None,
    corpus: Annotated[Path | None, typer.Option(help="Corpus dir holding modules/<id>.bc")] = None,
    examples: Annotated[Path | None, typer.Option(
        help="Ready examples (JSONL[.xz]) instead of labels + corpus, e.g. data/train-examples.jsonl.xz")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer to use with --examples")] = None,
    work: Annotated[Path, typer.Option(help="Resumable work dir: tokenizer, examples, checkpoints")] = Path(
        "build/train"),
    steps: int = _R.steps,
    schedule_steps: Annotated[int | None, typer.Option(
        help="Learning-rate schedule length when training stops before it ends (default: --steps)")]
        = _R.schedule_steps,
    batch_size: int = _R.batch_size, context: int = _R.context, prompt_budget: int = _R.prompt_budget,
    hidden_size: int = _R.hidden_size, num_layers: int = _R.num_layers,
    num_heads: int = _R.num_heads, vocab_size: int = _R.vocab_size, lr: float = _R.lr, seed: int = _R.seed,
    cpu_threads: Annotated[int | None, typer.Option(help="torch CPU threads (1 is fastest on a busy box)")]
        = _R.cpu_threads,
    name: str = "clang-llm-default",
    force: Annotated[bool, typer.Option(help="Replace an existing model directory")] = False,
    prompt_format: Annotated[str, typer.Option(
        help="cllm-v1, or cllm-v2 (TU summary in the prompt, a ranked pool of stored lists)")] = _R.prompt_format,
    pool_size: Annotated[int, typer.Option(help="cllm-v2: stored lists in the pool (Oz + coreset)")] = _R.pool_size,
    rank_weight: Annotated[float, typer.Option(help="cllm-v2: weight of the ranking loss")] = _R.rank_weight,
    risk_lambda: Annotated[float, typer.Option(
        help="cllm-v2: loss scale of examples with measured losses (the first token learns exp(-E[loss]/lambda))")]
        = _R.risk_lambda,
    pool: Annotated[Path | None, typer.Option(
        help="cllm-v2: a fixed pool (data/pool-v2.json, an examples file or a model) instead of the coreset")] = None,
    sweep: Annotated[Path | None, typer.Option(
        help="cllm-v2: the pool's sweep of the train modules (clang-llm-tool pool-sweep): ranking targets")] = None,
    index: Annotated[Path | None, typer.Option(
        help="Corpus index whose train split is used (default: the corpus's index.jsonl.gz)")] = None,
    risk_sweep: Annotated[list[Path] | None, typer.Option(
        help="cllm-v2: the train split's pool sweep, for the card's risk table (see `pool-risk`); repeatable")]
        = None,
    risk_temperature: Annotated[float, typer.Option(
        help="cllm-v2: temperature of the minimum-risk single answer (0: the likeliest list)")] = 0.0,
) -> None:
    """Tokenizer → examples (direct + feedback) → training (CPU or CUDA, resumable) → int8 export."""
    require("torch", "transformers")
    from clang_llm.optimizer.factory import default_model_dir
    from clang_llm.train.make_model import make_model

    if out.resolve().is_relative_to(default_model_dir().resolve().parent):
        raise typer.BadParameter(f"{out} is inside the package's shipped weights: write the new model elsewhere "
                                 "(e.g. build/clang-llm-new) and compare it before replacing anything")
    if (examples is None) != (tokenizer is None) or (examples is None and (labels is None or corpus is None)):
        raise typer.BadParameter("give --labels and --corpus, or --examples and --tokenizer")
    recipe = ModelRecipe(context=context, prompt_budget=prompt_budget, vocab_size=vocab_size, hidden_size=hidden_size,
                         num_layers=num_layers, num_heads=num_heads, steps=steps, schedule_steps=schedule_steps,
                         batch_size=batch_size, lr=lr, seed=seed, cpu_threads=cpu_threads,
                         prompt_format=prompt_format, pool_size=pool_size, rank_weight=rank_weight,
                         risk_lambda=risk_lambda,
                         pool_from=str(pool or ""), sweep=str(sweep or ""))
    if prompt_format not in ("cllm-v1", "cllm-v2"):
        raise typer.BadParameter("--prompt-format must be cllm-v1 or cllm-v2")
    if risk_lambda <= 0:
        raise typer.BadParameter("--risk-lambda must be > 0")
    if risk_sweep and risk_temperature <= 0:
        raise typer.BadParameter("--risk-sweep needs --risk-temperature > 0 (chosen with rank-offline)")
    path = make_model(labels, corpus / "modules" if corpus else None, work, out, recipe, name=name,
                      force_export=force, examples_path=examples, tokenizer_path=tokenizer, index_path=index)
    if risk_sweep:
        from clang_llm.train.pool_risk import attach_risk

        attach_risk(path, risk_sweep, risk_temperature)
    typer.echo(f"model written to {path}")


def pool_risk_cmd(
    model: Annotated[Path, typer.Option(help="A cllm-v2 model directory (its card is rewritten)")],
    sweep: Annotated[list[Path], typer.Option(
        help="The train split's pool sweep (clang-llm-tool pool-sweep); repeat for more")],
    temperature: Annotated[float, typer.Option(
        help="Temperature of the minimum-risk single answer, chosen on the validation split (rank-offline)")],
) -> None:
    """Put the pool's risk table in a model's card: the first ranked list becomes the one of
    smallest expected size under the model's belief, instead of the likeliest one."""
    from clang_llm.train.pool_risk import attach_risk

    try:
        card = attach_risk(model, sweep, temperature)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    risk = card.training.get("risk")
    typer.echo(f"{model}: loss table of {risk['modules']} train modules, temperature {temperature:g}" if risk
               else f"{model}: no loss table (ranked by likelihood)")


def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint dir written by train (work/train/checkpoint)")],
    out: Annotated[Path, typer.Argument(help="Model directory to write")],
    name: str = "clang-llm", force: bool = False,
    prompt_budget: Annotated[int, typer.Option(help="Round-1 prompt tokens the model was trained with")] = 640,
) -> None:
    """Checkpoint → CTranslate2 int8 model directory with model-card.json and tokenizer.json."""
    require("torch", "transformers")
    from clang_llm.train.export import export

    path = export(checkpoint, out, name=name, force=force, prompt_budget=prompt_budget)
    typer.echo(f"model written to {path}")
