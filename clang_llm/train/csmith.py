"""Random C programs from csmith, recorded like real builds.

Why: Debian packages give realistic but repetitive IR (gnulib, the same idioms); csmith
adds many distinct, control-flow- and arithmetic-heavy modules cheaply. Each program is
generated from a seed (``csmith --seed S``), so the corpus "file" is the seed and any
program can be regenerated.

The recording has the same shape as clang-llm's ``CLANG_LLM_RECORD`` mode: ``<name>.bc``
(unoptimized IR emitted with ``-Oz -Xclang -disable-llvm-passes``) beside ``<name>.json``
(source, cwd, output, lang, argv, ir_sha256) -- plus ``seed``. Programs whose IR takes
longer than ``compile_timeout_s`` to emit are skipped (some csmith outputs are huge).

Usage::

    clang-llm-tool corpus csmith --out build/corpus/record/csmith -n 2500
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clang_llm.atomic import atomic_path, atomic_write_text
from clang_llm.train.build_packages import DONE_FILE, META_FILE

PACKAGE = "csmith"
TEST_PACKAGE = "csmith-test"
VALIDATION_PACKAGE = "csmith-validation"
TEST_PERCENT = 10
# Seeds from here on form the validation slice. Why a range: the train and test seeds
# (1 .. a few thousand) were fixed before csmith had a validation slice, and a hashed slice
# would move programs a shipped model trained on; a range far above them moves nothing.
VALIDATION_FIRST_SEED = 1_000_000
CLANG = "clang-22"


def seed_split(seed: int) -> tuple[str, str]:
    """(pseudo-package, split) of program `seed`: validation above `VALIDATION_FIRST_SEED`,
    else the hashed 10 % test slice, else train."""
    if seed >= VALIDATION_FIRST_SEED:
        return VALIDATION_PACKAGE, "validation"
    if is_test_seed(seed):
        return TEST_PACKAGE, "test"
    return PACKAGE, "train"


def is_test_seed(seed: int) -> bool:
    """Whether `seed` belongs to the fixed 10 % csmith-test slice.

    Why a hash and not "the last 10 % of seeds": the slice stays the same whatever N is,
    so growing the corpus never moves a program from test into train.
    """
    h = hashlib.sha256(f"csmith-test:{seed}".encode()).digest()
    return int.from_bytes(h[:8], "big") % 100 < TEST_PERCENT


def csmith_include_dir() -> Path:
    """Folder holding csmith.h (Debian: /usr/include/csmith; source builds: .../csmith-X.Y)."""
    env = os.environ.get("CSMITH_INCLUDE")
    if env:
        return Path(env)
    for cand in sorted(glob.glob("/usr/include/csmith*")) + sorted(glob.glob("/usr/local/include/csmith*")):
        if Path(cand, "csmith.h").is_file():
            return Path(cand)
    raise FileNotFoundError("csmith.h not found; install csmith or set CSMITH_INCLUDE")


def csmith_version() -> str:
    """'2.3.0' from `csmith --version`, or '' when it cannot be read."""
    try:
        out = subprocess.run(["csmith", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"csmith\s+(\S+)", out)
    return m.group(1) if m else ""


@dataclass
class SeedResult:
    """What happened to one seed: recorded, or skipped with a reason."""

    seed: int
    ok: bool
    reason: str = ""


def record_seed(
    seed: int,
    out_dir: Path,
    include: Path,
    *,
    gen_timeout_s: float = 10.0,
    compile_timeout_s: float = 5.0,
    clang: str = CLANG,
) -> SeedResult:
    """Generate program `seed`, emit its unoptimized IR and write the recording pair."""
    name = f"csmith-{seed}"
    bc = out_dir / f"{name}.bc"
    meta_path = out_dir / f"{name}.json"
    if meta_path.exists() and bc.exists():
        return SeedResult(seed, True, "already recorded")
    src = out_dir / "src" / f"{seed}.c"
    src.parent.mkdir(parents=True, exist_ok=True)
    try:
        gen = subprocess.run(["csmith", "--seed", str(seed)], capture_output=True, timeout=gen_timeout_s)
    except subprocess.TimeoutExpired:
        return SeedResult(seed, False, "csmith timeout")
    if gen.returncode != 0 or not gen.stdout:
        return SeedResult(seed, False, f"csmith exit {gen.returncode}")
    src.write_bytes(gen.stdout)
    argv = [
        clang,
        "-w",
        f"-I{include}",
        "-Oz",
        "-Xclang",
        "-disable-llvm-passes",
        "-emit-llvm",
        "-c",
        str(src),
        "-o",
        str(bc),
    ]
    with atomic_path(bc) as tmp:  # clang writes the temp file; a failure removes it (nothing published)
        try:
            r = subprocess.run([*argv[:-1], str(tmp)], capture_output=True, timeout=compile_timeout_s)
        except subprocess.TimeoutExpired:
            tmp.unlink(missing_ok=True)
            src.unlink(missing_ok=True)
            return SeedResult(seed, False, "compile timeout")
        if r.returncode != 0:
            tmp.unlink(missing_ok=True)
            return SeedResult(seed, False, f"clang exit {r.returncode}")
        data = tmp.read_bytes()
    meta = {
        "source": str(src),
        "cwd": str(out_dir),
        "output": str(bc),
        "lang": "c",
        "argv": argv,
        "ir_sha256": hashlib.sha256(data).hexdigest(),
        "seed": seed,
    }
    atomic_write_text(meta_path, json.dumps(meta))
    return SeedResult(seed, True)


def generate(
    out_dir: Path,
    n: int,
    *,
    first_seed: int = 1,
    jobs: int = 2,
    compile_timeout_s: float = 5.0,
    console: Console | None = None,
) -> dict:
    """Record seeds first_seed .. first_seed+n-1 (resumable); return counts and skip reasons."""
    if shutil.which("csmith") is None:
        raise FileNotFoundError("csmith is not installed (apt-get install csmith)")
    console = console or Console(stderr=True)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    include = csmith_include_dir()
    (out_dir / META_FILE).write_text(
        json.dumps(
            {
                "package": PACKAGE,
                "version": csmith_version(),
                "split": "train",
                "test_package": TEST_PACKAGE,
                "test_percent": TEST_PERCENT,
                "validation_package": VALIDATION_PACKAGE,
                "validation_first_seed": VALIDATION_FIRST_SEED,
            },
            indent=1,
        )
    )
    seeds = range(first_seed, first_seed + n)
    ok = 0
    skipped: dict[str, int] = {}
    columns = (TextColumn("[bold]csmith"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress, ThreadPoolExecutor(jobs) as pool:
        task = progress.add_task("csmith", total=n)
        for res in pool.map(lambda s: record_seed(s, out_dir, include, compile_timeout_s=compile_timeout_s), seeds):
            if res.ok:
                ok += 1
            else:
                skipped[res.reason] = skipped.get(res.reason, 0) + 1
            progress.advance(task)
    summary = {"first_seed": first_seed, "n": n, "recorded": ok, "skipped": skipped}
    (out_dir / DONE_FILE).write_text(json.dumps(summary, indent=1))
    return summary
