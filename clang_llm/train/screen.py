"""Screen winning pipelines for miscompiles on csmith programs (after LLM Compiler's PassListEval).

Why: `-verify-each` only proves the IR is well formed; some passes produce valid but wrong code
(the Attributor family and structurizecfg do, which is why the vocabulary leaves them out).
Every winning list from the labels is built into a few dozen csmith programs; a program's
output (its checksum line) must match its `-O0` build.
A list that changes an output is bisected: passes are dropped one at a time while the output
stays wrong, leaving a minimal failing list whose passes are all implicated (dropping any one
makes the output right again). Programs whose `-O0` and `-Oz` outputs already differ (undefined
behaviour csmith did not avoid, or a clang bug) are left out, so blame lands on our passes.

This module reports implicated passes; it never edits the vocabulary file.

Usage::

    clang-llm-tool screen --labels labels.jsonl.gz --out screen-report.json
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clang_llm.build.tubuilder import TUBuilder
from clang_llm.errors import PassListError, ToolTimeout
from clang_llm.passes import OZ, PassList, Vocabulary, parse_pass_list
from clang_llm.records import LabelRecord, read_labels
from clang_llm.toolchain import Toolchain, run
from clang_llm.train.configs import ScreenConfig


@dataclass
class Program:
    seed: int
    dir: Path
    bc: Path
    expected: bytes
    ref_seconds: float


@dataclass
class CheckResult:
    pipeline: str
    seed: int
    outcome: str  # ok | wrong | timeout | crash | invalid
    detail: str = ""


@dataclass
class ScreenReport:
    programs: list[dict[str, Any]] = field(default_factory=list)
    pipelines: list[str] = field(default_factory=list)
    checks: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    implicated_passes: dict[str, int] = field(default_factory=dict)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def winning_pipelines(labels: Iterable[LabelRecord], n: int, include_top: bool = True) -> list[str]:
    """The n lists that win most often (strict .text wins); `include_top` counts runner-up lists too."""
    wins: Counter[str] = Counter()
    for r in labels:
        if not r.improved or r.best is None or r.oz is None:
            continue
        wins[r.best.pass_list] += 2
        if include_top:
            for t in r.top[1:]:
                if t.text < r.oz.text:
                    wins[t.pass_list] += 1
    return [s for s, _ in wins.most_common(n)]


def bisect_failure(tokens: tuple[str, ...], fails: Callable[[PassList], bool],
                   vocab: Vocabulary | None = None) -> tuple[tuple[str, ...], list[str]]:
    """Drop passes one at a time while the output stays wrong: (minimal failing list, implicated).

    In the minimal list, dropping any single pass makes the output right again (or the list
    empty); its non-base passes are implicated; if only base pipelines remain, they are.
    """
    vocab = vocab or Vocabulary.default()
    cur = list(tokens)
    i = len(cur) - 1
    while i >= 0 and len(cur) > 1:
        cand = cur[:i] + cur[i + 1:]
        if fails(PassList(tuple(cand))):
            cur = cand
        i -= 1
    non_base = [t for t in cur if vocab.levels.get(t) != "base"]
    return tuple(cur), (non_base or list(cur))


def _run_binary(exe: Path, timeout: float) -> tuple[str, bytes, float]:
    t0 = time.monotonic()
    try:
        p = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timeout", b"", time.monotonic() - t0
    if p.returncode < 0:
        return "crash", p.stdout, time.monotonic() - t0
    return "ok", p.stdout + f"\nexit={p.returncode}".encode(), time.monotonic() - t0


class Screener:
    """Builds and runs csmith programs with candidate pipelines."""

    def __init__(self, cfg: ScreenConfig, workdir: Path, toolchain: Toolchain | None = None) -> None:
        self.cfg, self.workdir = cfg, workdir
        self.tc = toolchain or Toolchain.discover()
        from clang_llm.train.csmith import csmith_include_dir

        self.include = csmith_include_dir()

    def prepare(self, seed: int) -> Program | str:
        """Generate, build at -O0 and run (the reference), emit IR; a str says why it was left out."""
        d = self.workdir / f"p{seed}"
        d.mkdir(parents=True, exist_ok=True)
        src, ref, bc = d / "p.c", d / "ref", d / "p.bc"
        try:
            gen = run(["csmith", "--seed", str(seed), "-o", src], timeout=20)
            if gen.returncode != 0:
                return "csmith failed"
            flags = ["-w", f"-I{self.include}"]
            r = run([self.tc.clang, *flags, "-O0", src, "-o", ref], timeout=60)
            if r.returncode != 0:
                return "O0 build failed"
            outcome, out, secs = _run_binary(ref, self.cfg.run_timeout)
            if outcome != "ok":
                return f"O0 run {outcome}"
            r = run([self.tc.clang, *flags, "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", src,
                     "-o", bc], timeout=60)
            if r.returncode != 0:
                return "IR emit failed"
        except ToolTimeout as e:
            return f"timeout: {e}"
        prog = Program(seed=seed, dir=d, bc=bc, expected=out, ref_seconds=secs)
        oz = self.check(prog, OZ)
        if oz.outcome != "ok":
            return f"-Oz differs from -O0 ({oz.outcome}): undefined behaviour or a clang bug"
        return prog

    def check(self, prog: Program, pl: PassList) -> CheckResult:
        """Build `prog` with `pl` (opt + codegen by TUBuilder), link, run, compare with -O0."""
        with tempfile.TemporaryDirectory(dir=prog.dir) as tmp:
            b = TUBuilder(self.tc.clang, self.tc.opt, ["-w"], "c", prog.bc, Path(tmp), self.cfg.opt_timeout)
            f = b.evaluate(pl, verify_each=self.cfg.verify_each and pl != OZ)
            if not f.valid or f.object_path is None:
                return CheckResult(str(pl), prog.seed, "invalid", f"{f.error_kind}: {(f.error or '')[:300]}")
            exe = Path(tmp) / "a.out"
            try:
                r = run([self.tc.clang, f.object_path, "-o", exe], timeout=60)
            except ToolTimeout:
                return CheckResult(str(pl), prog.seed, "invalid", "link timeout")
            if r.returncode != 0:
                return CheckResult(str(pl), prog.seed, "invalid", "link failed")
            outcome, out, _ = _run_binary(exe, 3 * max(prog.ref_seconds, self.cfg.run_timeout / 5) + 1)
        if outcome != "ok":
            return CheckResult(str(pl), prog.seed, outcome)
        if out != prog.expected:
            return CheckResult(str(pl), prog.seed, "wrong", out.decode(errors="replace")[-200:])
        return CheckResult(str(pl), prog.seed, "ok")


def screen(pipelines: list[str], cfg: ScreenConfig, progress: bool = True) -> ScreenReport:
    """Build every program with every pipeline; bisect failures; return the report."""
    t0 = time.monotonic()
    rep = ScreenReport()
    vocab = Vocabulary.default()
    lists: list[PassList] = []
    for s in pipelines:
        try:
            lists.append(parse_pass_list(s, vocab))
        except PassListError as e:
            rep.invalid.append({"pipeline": s, "error": str(e)})
    rep.pipelines = [str(p) for p in lists]
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="clang-llm-screen-") as tmp, \
            ThreadPoolExecutor(max(1, cfg.jobs)) as pool, \
            Progress(TextColumn("screen"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     console=console, disable=not (progress and console.is_terminal)) as bar:
        sc = Screener(cfg, Path(tmp))
        seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.programs))
        t_prep = bar.add_task("programs", total=len(seeds))
        programs: list[Program] = []
        for seed, res in zip(seeds, pool.map(sc.prepare, seeds), strict=True):
            bar.advance(t_prep)
            if isinstance(res, Program):
                programs.append(res)
                rep.programs.append({"seed": seed, "used": True})
            else:
                rep.programs.append({"seed": seed, "used": False, "reason": res})
        jobs = [(p, pl) for pl in lists for p in programs]
        t_chk = bar.add_task("checks", total=len(jobs))

        def one(job: tuple[Program, PassList]) -> CheckResult:
            r = sc.check(*job)
            bar.advance(t_chk)
            return r

        results = list(pool.map(one, jobs))
        rep.checks = len(results)
        rep.outcomes = dict(Counter(r.outcome for r in results))
        by_seed = {p.seed: p for p in programs}
        implicated: Counter[str] = Counter()
        for r in results:
            if r.outcome in ("ok", "invalid"):
                if r.outcome == "invalid":
                    rep.invalid.append(asdict(r))
                continue
            prog = by_seed[r.seed]

            def fails(pl: PassList, prog: Program = prog) -> bool:
                return sc.check(prog, pl).outcome in ("wrong", "timeout", "crash")

            minimal, culprits = bisect_failure(parse_pass_list(r.pipeline).tokens, fails, vocab)
            implicated.update(culprits)
            rep.failures.append({**asdict(r), "minimal": " ".join(minimal), "implicated": culprits})
        rep.implicated_passes = dict(implicated.most_common())
    rep.seconds = round(time.monotonic() - t0, 1)
    return rep


def run_screen(labels: Path | None, extra: list[str], cfg: ScreenConfig, out: Path,
               progress: bool = True) -> ScreenReport:
    """Pipelines from the labels (+ extra), screened; the report is written to `out` as JSON."""
    pipes = winning_pipelines(read_labels(labels), cfg.pipelines) if labels else []
    pipes += [p for p in extra if p not in pipes]
    rep = screen(pipes, cfg, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(rep), indent=1))
    return rep

