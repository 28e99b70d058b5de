"""One progress bar for every long operation (autotune, eval, examples): rich, with an ETA and a
free-text `info` field. On a terminal it is drawn live; elsewhere (a background run's log, CI)
it writes one plain line at most once a minute, so such logs show progress and stay short."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY_S = 60.0


class _Progress(Progress):
    """A rich Progress that, when not live, logs a throttled plain line on every update."""

    def __init__(self, *columns: str | ProgressColumn, label: str, plain: bool, console: Console,
                 disable: bool) -> None:
        super().__init__(*columns, console=console, disable=disable)
        self._label, self._plain, self._last = label, plain, time.monotonic()

    def update(self, task_id: TaskID, **kwargs: float | str | bool | None) -> None:
        super().update(task_id, **kwargs)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def _log(self, task_id: TaskID, force: bool = False) -> None:
        now = time.monotonic()
        if not self._plain or (not force and now - self._last < PLAIN_EVERY_S):
            return
        self._last = now
        task = next((t for t in self.tasks if t.id == task_id), None)  # `tasks` copies under rich's lock
        if task is None:
            return
        total = f"/{task.total:.0f}" if task.total is not None else ""
        eta = task.time_remaining
        info = task.fields.get("info", "")
        when = f", ETA {eta / 60:.0f} min" if eta is not None else ""
        print(f"{self._label}: {task.completed:.0f}{total}{when} {info}".rstrip(), file=sys.stderr, flush=True)

    def stop(self) -> None:
        for task_id in self.task_ids:
            self._log(task_id, force=True)
        super().stop()


def make_progress(label: str, enabled: bool = True) -> tuple[Progress, bool]:
    """(the bar, whether it is live). Add tasks with `info=""` for the status text."""
    console = Console(stderr=True)
    live = enabled and console.is_terminal
    bar = _Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), label=label,
                    plain=enabled and not live, console=console, disable=not live)
    return bar, live
