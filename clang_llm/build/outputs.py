"""Private temp dirs for a compile (stale ones from killed runs are swept)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def private_tempdir(state_dir: Path) -> tempfile.TemporaryDirectory[str]:
    """A temp dir under the state dir (stale ones from killed runs are swept), else the system's."""
    base = state_dir / "tmp"
    try:
        base.mkdir(parents=True, exist_ok=True)
        _sweep_stale(base)
        return tempfile.TemporaryDirectory(prefix=f"{os.getpid()}-", dir=base)
    except OSError:
        return tempfile.TemporaryDirectory(prefix="clang-llm-")


def _sweep_stale(base: Path) -> None:
    """Remove temp dirs whose owning process is gone (a compile killed with SIGKILL)."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for e in entries:
        pid_s = e.name.split("-", 1)[0]
        if not pid_s.isdigit():
            continue
        try:
            os.kill(int(pid_s), 0)
        except ProcessLookupError:
            shutil.rmtree(e.path, ignore_errors=True)
        except OSError:
            pass
