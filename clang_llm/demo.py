"""`clang-llm-tool demo`: build a C project with CC=clang-llm and with plain clang-22 -Oz, side by side.

Both builds run in a scratch copy of the project; sizes come from the objects themselves, so the
table is an independent check of what the wrapper's records claim.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clang_llm.db import Database
from clang_llm.objsize import object_sizes

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "textkit"


def _make(project: Path, env: dict[str, str], cc: str, cflags: str) -> None:
    subprocess.run(["make", "-s", "clean"], cwd=project, env=env, check=False, capture_output=True)
    subprocess.run(["make", "-s", "-j2", f"CC={cc}", f"CFLAGS={cflags}"], cwd=project, env=env, check=True)


def run_demo(project: Path = EXAMPLE, cflags: str = "-O2 -Wall", extra_flags: str = "") -> int:
    console = Console(width=None if sys.stdout.isatty() else 140)
    bindir = Path(sys.executable).parent
    wrapper = shutil.which("clang-llm", path=str(bindir)) or shutil.which("clang-llm") or "clang-llm"
    with tempfile.TemporaryDirectory(prefix="clang-llm-demo-") as tmp:
        work = Path(tmp)
        ref, ours = work / "ref", work / "ours"
        shutil.copytree(project, ref)
        shutil.copytree(project, ours)
        env = {**os.environ, "CLANG_LLM_DIR": str(work / "state")}
        _make(ref, env, "clang-22", f"{cflags} -Oz")
        _make(ours, env, wrapper, f"{cflags} {extra_flags}".strip())
        check = subprocess.run(["make", "-s", "check"], cwd=ours, env=env, capture_output=True, text=True)
        db = Database(work / "state")
        records = {Path(r.object).name: r for r in db.all_records()}
        t = Table(title=f"{project.name}: clang-llm vs clang-22 -Oz (.text bytes of each object)")
        for col in ("object", "-Oz .text", "clang-llm .text", "Δ .text", "Δ allocated", "pass list", "why"):
            t.add_column(col, justify="right" if "text" in col or "Δ" in col else "left")
        tot_ref = tot_ours = alloc_ref = alloc_ours = 0
        for obj in sorted(p.name for p in ours.glob("*.o")):
            a, b = object_sizes(ref / obj), object_sizes(ours / obj)
            tot_ref, tot_ours = tot_ref + a.text, tot_ours + b.text
            alloc_ref, alloc_ours = alloc_ref + a.alloc, alloc_ours + b.alloc
            rec = records.get(obj)
            t.add_row(obj, str(a.text), str(b.text), _pct(b.text, a.text), _pct(b.alloc, a.alloc),
                      rec.chosen.pass_list if rec else "?", rec.reason if rec else "no record")
        t.add_row("total", str(tot_ref), str(tot_ours), _pct(tot_ours, tot_ref), _pct(alloc_ours, alloc_ref), "", "")
        console.print(t)
        model = next((r.model_id for r in records.values()), None)
        console.print(f"model: {model}; project's own check: "
                      f"{'passed' if check.returncode == 0 else 'FAILED: ' + check.stdout + check.stderr}")
        return 0 if check.returncode == 0 and tot_ours <= tot_ref else 1


def _pct(a: int, b: int) -> str:
    return f"{100.0 * (a - b) / b:+.2f}%" if b else "-"
