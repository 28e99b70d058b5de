"""What the commands share: the console, option types, and the check for an optional extra."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

IndexOpt = Annotated[Path | None, typer.Option(help="Corpus index (index.jsonl.gz); bitcode in modules/<id>.bc "
                                                    "beside it.")]
RecordingsOpt = Annotated[Path | None, typer.Option(help="Instead of an index: a folder of X.bc + X.json "
                                                         "recordings (CLANG_LLM_RECORD format; they have no split).")]
SplitOpt = Annotated[list[str] | None, typer.Option("--split", help="Only modules of this split (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

# Which extra installs a module that the base install lacks.
EXTRA_OF = {"torch": "train", "transformers": "train", "matplotlib": "train", "ray": "distributed"}


def require(*modules: str) -> None:
    """Stop with the `pip install` line to run when a module of an optional extra is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        extras = sorted({EXTRA_OF.get(m, "train") for m in missing})
        spec = ",".join(extras)
        err_console.print(f"[red]this command needs {', '.join(missing)}[/]: "
                          + escape(f"pip install 'clang-llm[{spec}]'"), highlight=False)
        raise typer.Exit(2)


def need_source(index: Path | None, recordings: Path | None) -> None:
    """Modules come from exactly one place: a corpus index or a folder of recordings."""
    if (index is None) == (recordings is None):
        raise typer.BadParameter("give --index or --recordings (one of them)")
