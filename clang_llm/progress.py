"""One progress bar for every long operation (autotune, eval, examples): rich, with an ETA and a
free-text `info` field; drawn only on a terminal, so logs of background runs stay clean."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def make_progress(label: str, enabled: bool = True) -> tuple[Progress, bool]:
    """(the bar, whether it is live). Add tasks with `info=""` for the status text."""
    console = Console(stderr=True)
    live = enabled and console.is_terminal
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, disable=not live)
    return bar, live
