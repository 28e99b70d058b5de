"""Our own log goes to a file in the state dir, never to stderr (probes fail on unexpected output).

A log that cannot be written (a full disk, a read-only or vanished state dir, odd bytes) loses
its line and nothing else: logging's default handler would print a traceback to stderr.
"""

from __future__ import annotations

import logging
import os

from clang_llm.config import Settings
from clang_llm.safe_text import redact
from clang_llm.state_dir import private_file, private_state_dir

log = logging.getLogger("clang_llm")


class _QuietFileHandler(logging.FileHandler):
    """A file handler that drops a record it cannot write and redacts URL credentials."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass  # a full disk or a vanished file: the line is lost, the build is not


def setup_logging(settings: Settings) -> None:
    if log.handlers:
        return
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        private_state_dir(settings.state_dir)
        path = settings.state_dir / "clang-llm.log"
        private_file(path)
        h: logging.Handler = _QuietFileHandler(path, encoding="utf-8", errors="backslashreplace")
        h.setFormatter(logging.Formatter(f"%(asctime)s [{os.getpid()}] %(levelname)s %(message)s"))
    except (OSError, ValueError):
        h = logging.NullHandler()
    log.addHandler(h)
