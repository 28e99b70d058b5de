"""Private temp dirs for a compile (stale ones from killed runs are swept)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from clang_llm.state_dir import private_state_dir

PROBE_BYTES = 64 << 10  # a work dir must take at least this much, or it is as good as full


def private_tempdir(state_dir: Path, probe: bool = False) -> tempfile.TemporaryDirectory[str]:
    """A temp dir under the state dir (stale ones from killed runs are swept). Raises OSError
    when the state dir cannot host one, or (`probe`) cannot take a first write: a compile then
    goes to plain clang rather than meet a full disk halfway."""
    base = state_dir / "tmp"
    private_state_dir(state_dir)
    base.mkdir(mode=0o700, exist_ok=True)
    _sweep_stale(base)
    tmp = tempfile.TemporaryDirectory(prefix=f"{os.getpid()}-", dir=base, ignore_cleanup_errors=True)
    if probe:
        try:
            with open(Path(tmp.name) / "probe", "wb") as f:
                f.write(bytes(PROBE_BYTES))
            os.unlink(Path(tmp.name) / "probe")
        except OSError:
            tmp.cleanup()
            raise
    return tmp


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
