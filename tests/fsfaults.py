"""File-system faults for tests: whether this machine lets a test mount a tmpfs, and filling one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def can_mount() -> bool:
    """Root with a working `mount -t tmpfs` (a container may refuse it)."""
    if os.getuid() != 0 or not shutil.which("mount"):
        return False
    d = Path(tempfile.mkdtemp())
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True)
        return ok.returncode == 0 and subprocess.run(["umount", str(d)], capture_output=True).returncode == 0
    finally:
        d.rmdir()


def fill(d: Path) -> None:
    """Fill the file system holding `d`: big writes, then single bytes, until it refuses."""
    fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (64 << 10, 1):
            try:
                while os.write(fd, bytes(chunk)):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
