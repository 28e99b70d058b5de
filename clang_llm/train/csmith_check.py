"""Which csmith programs terminate: each is regenerated from its seed, built at -O0 and run with a
time limit; a program that does not finish (or crashes) is no module to measure code size on.

Why: a program that loops forever lets a pass list prove everything after the loop dead (one test
program went from 2,834 to 96 bytes of `.text`), a gain no real program has; a handful of such
programs carried most of the lead of every method over another. The result file (JSONL, one line
a seed, resumable) names the seeds every split must drop (`nonterminating`).

    clang-llm-tool corpus csmith-check --index data/corpus-index-v2.jsonl.gz --out data/csmith-check.jsonl.gz
"""

from __future__ import annotations

import gzip
import json
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from clang_llm.progress import make_progress
from clang_llm.toolchain import ToolTimeout, run

CHECKSUM = re.compile(rb"checksum = ([0-9A-Fa-f]+)")
STATUSES = ("terminates", "timeout", "crash", "no-checksum", "build-error", "csmith-error")


@dataclass(frozen=True)
class CsmithCheck:
    """One program's run: `terminates` with its checksum, else why not."""

    seed: int
    status: str
    seconds: float = 0.0
    checksum: str = ""

    @property
    def dropped(self) -> bool:
        """Whether the program must leave every split (it did not run to its checksum)."""
        return self.status not in ("terminates", "csmith-error", "build-error")


def check_source(seed: int, src: Path, include: Path, timeout_s: float, work: Path) -> CsmithCheck:
    """Build `src` at -O0 and run it for at most `timeout_s` seconds (its whole process group)."""
    exe = work / f"p{seed}"
    try:
        built = run(["clang-22", "-O0", "-w", f"-I{include}", str(src), "-o", str(exe)], timeout=120)
    except ToolTimeout:
        return CsmithCheck(seed, "build-error")
    if built.returncode != 0:
        return CsmithCheck(seed, "build-error")
    t0 = time.monotonic()
    try:
        ran = run([str(exe)], timeout=timeout_s)
    except ToolTimeout:
        return CsmithCheck(seed, "timeout", round(time.monotonic() - t0, 2))
    finally:
        exe.unlink(missing_ok=True)
    seconds = round(time.monotonic() - t0, 2)
    if ran.returncode != 0:
        return CsmithCheck(seed, "crash", seconds)
    m = CHECKSUM.search(ran.stdout)
    if not m:
        return CsmithCheck(seed, "no-checksum", seconds)
    return CsmithCheck(seed, "terminates", seconds, m.group(1).decode())


def check_seed(seed: int, include: Path, timeout_s: float) -> CsmithCheck:
    """Regenerate program `seed` (`csmith --seed`, as the corpus did) and check it."""
    with tempfile.TemporaryDirectory(prefix="csmith-check-") as d:
        work = Path(d)
        try:
            gen = run(["csmith", "--seed", str(seed)], timeout=30)
        except ToolTimeout:
            return CsmithCheck(seed, "csmith-error")
        if gen.returncode != 0 or not gen.stdout:
            return CsmithCheck(seed, "csmith-error")
        src = work / f"{seed}.c"
        src.write_bytes(gen.stdout)
        return check_source(seed, src, include, timeout_s, work)


def read_checks(path: Path) -> dict[int, CsmithCheck]:
    """The checks so far (a missing file: none; a torn last line is skipped)."""
    out: dict[int, CsmithCheck] = {}
    if not path.exists():
        return out
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:  # type: ignore[operator]
        for line in f:
            try:
                c = CsmithCheck(**json.loads(line))
            except (ValueError, TypeError):
                continue
            out[c.seed] = c
    return out


def nonterminating(path: Path) -> set[int]:
    """The seeds whose programs must leave every split."""
    return {s for s, c in read_checks(path).items() if c.dropped}


def csmith_seeds(index_lines: Iterable[dict[str, object]]) -> Iterator[tuple[int, str]]:
    """(seed, split) of every csmith module of a corpus index."""
    for row in index_lines:
        if str(row.get("package", "")).startswith("csmith"):
            try:
                yield int(str(row.get("file", ""))), str(row.get("split", ""))
            except ValueError:
                continue


def check_all(seeds: list[int], out: Path, include: Path, timeout_s: float = 10.0, jobs: int = 2,
              progress: bool = True) -> dict[str, int]:
    """Check every seed not yet in `out` (plain JSONL, appended line by line: resumable)."""
    done = read_checks(out)
    todo = [s for s in seeds if s not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    bar, _ = make_progress("csmith-check", enabled=progress)
    with open(out, "a") as f, ThreadPoolExecutor(jobs) as pool, bar:
        task = bar.add_task("csmith-check", total=len(todo), info="")
        for c in pool.map(lambda s: check_seed(s, include, timeout_s), todo):
            f.write(json.dumps(asdict(c)) + "\n")
            f.flush()
            done[c.seed] = c
            bar.advance(task)
    counts: dict[str, int] = {}
    for s in seeds:
        st = done[s].status
        counts[st] = counts.get(st, 0) + 1
    return counts
