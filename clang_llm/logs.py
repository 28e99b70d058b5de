"""Our own log goes to a file in the state dir, never to stderr (probes fail on unexpected output)."""

from __future__ import annotations

import logging
import os

from clang_llm.config import Settings

log = logging.getLogger("clang_llm")


def setup_logging(settings: Settings) -> None:
    if log.handlers:
        return
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        h: logging.Handler = logging.FileHandler(settings.state_dir / "clang-llm.log")
        h.setFormatter(logging.Formatter(f"%(asctime)s [{os.getpid()}] %(levelname)s %(message)s"))
    except OSError:
        h = logging.NullHandler()
    log.addHandler(h)
