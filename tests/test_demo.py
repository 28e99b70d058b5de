"""The README's first command ends in `clang-llm-tool demo`: it must build the bundled example
with the default model and settings, pass the project's own check, and not be larger than -Oz."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_builds_the_example_and_reports(tmp_path: Path) -> None:
    tool = Path(sys.executable).parent / "clang-llm-tool"
    r = subprocess.run([str(tool), "demo"], capture_output=True, text=True, timeout=900,
                       env={"PATH": f"{tool.parent}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "project's own check: passed" in r.stdout
    total = next(ln for ln in r.stdout.splitlines() if "total" in ln)
    ref, ours = [int(x) for x in total.replace("│", " ").split()[1:3]]
    assert ours <= ref
