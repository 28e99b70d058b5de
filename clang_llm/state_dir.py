"""The state dir is the user's own: created 0700, its files 0600 (records keep command lines,
the log keeps paths, the daemon's socket lives there)."""

from __future__ import annotations

import os
from pathlib import Path


def private_state_dir(path: Path) -> None:
    """Create `path` (and missing parents) with `path` itself readable by the user only; an existing
    directory is left as it is (a shared CLANG_LLM_DIR is the user's choice, and the daemon checks its own)."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (sqlite and logging then keep it);
    one of ours that an older version left readable by others is made 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        try:
            st = path.stat()
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError:
            pass  # not ours to change (a read-only dir, another user's file): used as it is
        return
    os.close(fd)
