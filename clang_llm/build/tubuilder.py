"""Build steps of one TU inside its private temp dir: emit IR, query clang's pipeline, opt, codegen."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Literal

from clang_llm import ir
from clang_llm.build.jobslots import JobSlots
from clang_llm.build.targetopts import TargetOptions, derive
from clang_llm.errors import ToolTimeout
from clang_llm.objsize import object_sizes
from clang_llm.passes import PassList, PassListError, parse_pass_list, render
from clang_llm.records import Finding
from clang_llm.toolchain import run

log = logging.getLogger("clang_llm")

BASE_LEVELS = {"Oz": "-Oz", "Os": "-Os", "O1": "-O1", "O2": "-O2"}

# Why a verified rerun refused a list: `timeout` is the machine's state (a less loaded build may
# not meet it again); the others are the list's.
Refusal = Literal["timeout", "verify", "other-object", "bad-list"]


@contextmanager
def measuring(f: Finding) -> Iterator[Finding]:
    """Run one evaluation's tools: a timeout or a tool failure becomes `f`'s error (never an
    exception for the caller), and `f.seconds` is always set."""
    t0 = time.monotonic()
    try:
        yield f
    except ToolTimeout as e:
        f.error_kind, f.error = "timeout", str(e)
    except (RuntimeError, OSError, ValueError) as e:
        f.error_kind, f.error = f.error_kind or "internal", str(e)[:1500]
    finally:
        f.seconds = time.monotonic() - t0


def opt_failed(f: Finding, res: subprocess.CompletedProcess[bytes]) -> Finding:
    """Record a failed opt run on `f`: a crash (signal) or an error, with opt's message."""
    crashed = res.returncode < 0 or res.returncode > 128
    f.error_kind = "opt-crash" if crashed else "opt-error"
    f.error = _trim(res.stderr) or f"opt exited with status {res.returncode}"
    return f


def _trim(err: bytes, limit: int = 1500) -> str:
    text = err.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + " …"


class FactStore:
    """What clang answers for one flag set (pipeline strings, target options), kept across TUs.

    Both answers depend only on the toolchain and the codegen flags, never on the TU, so a build
    asks clang once per flag set instead of once per TU. `get`/`put` are the database's (or
    nothing: every TU asks)."""

    def __init__(self, toolchain_identity: str, get: Callable[[str], str | None],
                 put: Callable[[str, str], None]) -> None:
        self.identity, self._get, self._put = toolchain_identity, get, put

    def key(self, what: str, compiler: Path, flags: list[str], lang: str) -> str:
        parts = [self.identity, str(compiler), what, lang, *flags]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        return self._get(key)

    def put(self, key: str, value: str) -> None:
        self._put(key, value)


class TUBuilder:
    """Runs opt and codegen for candidate pass lists of one TU; every result is a Finding."""

    def __init__(self, compiler: Path, opt: Path, codegen_flags: list[str], lang: str, in_bc: Path,
                 workdir: Path, timeout: float, facts: FactStore | None = None,
                 slots: JobSlots | None = None) -> None:
        self.compiler, self.opt = compiler, opt
        self.facts = facts
        self.slots = slots  # bounds concurrent evaluations (make's jobserver, or per machine)
        self.codegen_flags, self.lang = codegen_flags, lang
        self.in_bc, self.workdir, self.timeout = in_bc, workdir, timeout
        self._pipelines: dict[str, str] = {}
        self._target: TargetOptions | None = None
        self._ids = itertools.count(1)  # thread-safe: candidates are validated in parallel
        self.count_before: int | None = None
        self.objects: set[Path] = set()  # every object this builder made (the only ones that may ship)
        # Unverified runs by the digest of their optimized module: a list that leaves the IR as
        # another did (about half of a pool's lists on a TU) gets that run's object, no codegen.
        self._built: dict[str, Finding] = {}
        self.codegen_skipped = 0
        self.codegen_s = 0.0  # seconds in clang's backend, all evaluations together
        # opt runs started: the baseline, every candidate, the verified rerun (`TURecord.opt_evaluations`)
        self.opt_runs = 0
        self._count_lock = threading.Lock()
        # Base pipelines' outputs (Os, O1, O2) by token, for the lists that continue from them.
        self._bases: dict[str, Finding] = {}
        self._base_lock = threading.Lock()
        # When the TU's time budget ends (time.monotonic()); None: only the per-run timeout.
        # An evaluation that starts later is refused at once (`budget`), a running one is cut.
        self.deadline: float | None = None

    def time_left(self) -> float:
        """The timeout of the next tool run: the per-run limit, cut to what is left of the budget."""
        if self.deadline is None:
            return self.timeout
        return min(self.timeout, self.deadline - time.monotonic())

    def _remembered(self, what: str, ask: Callable[[], str]) -> str:
        """`ask()` clang, or reuse its answer for this toolchain and flag set."""
        if self.facts is None:
            return ask()
        key = self.facts.key(what, self.compiler, self.codegen_flags, self.lang)
        known = self.facts.get(key)
        if known is not None:
            return known
        value = ask()
        self.facts.put(key, value)
        return value

    def base_pipeline(self, token: str) -> str:
        """clang's own pipeline at -Oz/-Os/-O1/-O2 for this TU's flags (what `clang -c` would run)."""
        if token not in self._pipelines:
            self._pipelines[token] = self._remembered(f"pipeline:{token}", lambda: self._ask_pipeline(token))
        return self._pipelines[token]

    def _ask_pipeline(self, token: str) -> str:
        """Ask clang for its pipeline at `token` with these flags (on /dev/null, else on the IR)."""
        cmd = [self.compiler, *self.codegen_flags, BASE_LEVELS[token], "-x", self.lang, "-c", "/dev/null",
               "-o", "/dev/null", "-mllvm", "-print-pipeline-passes", "-Wno-unused-command-line-argument"]
        res = run(cmd, timeout=self.timeout)
        text = res.stdout.decode().strip()
        if res.returncode != 0 or not text:
            # Flags that need the real source (e.g. -include of a relative header): ask on the IR.
            cmd = [self.compiler, *self.codegen_flags, BASE_LEVELS[token], "-x", "ir", "-c", self.in_bc,
                   "-o", "/dev/null", "-mllvm", "-print-pipeline-passes", "-Wno-unused-command-line-argument"]
            res = run(cmd, timeout=self.timeout)
            text = res.stdout.decode().strip()
            if res.returncode != 0 or not text:
                raise RuntimeError(f"cannot get clang's {token} pipeline: {_trim(res.stderr)}")
        return text.splitlines()[-1]

    def target_options(self) -> TargetOptions:
        """clang's backend options for these flags (relocation model, code model, CPU), for opt."""
        if self._target is None:
            text = self._remembered("target", lambda: json.dumps(
                derive(self.compiler, self.codegen_flags, self.lang, self.timeout).opt_flags))
            self._target = TargetOptions(tuple(json.loads(text)))
        return self._target

    def opt_command(self, pass_list: PassList, out_bc: Path, verify_each: bool,
                    source: Path | None = None) -> list[str | Path]:
        """opt with clang's pipeline strings for the list's bases and clang's target options, on
        the source IR (or on `source`, the output of a list this one extends)."""
        bases = {t: self.base_pipeline(t) for t in pass_list.bases}
        cmd: list[str | Path] = [self.opt, *self.target_options().opt_flags,
                                 f"-passes={render(pass_list, bases)}", source or self.in_bc, "-o", out_bc]
        if verify_each:
            cmd.insert(1, "-verify-each")
        return cmd

    def codegen_command(self, in_bc: Path, out_o: Path) -> list[str | Path]:
        """clang's backend on optimized IR, with the TU's flags (no further IR passes)."""
        return [self.compiler, *self.codegen_flags, "-Oz", "-c", "-x", "ir", in_bc, "-o", out_o,
                "-Xclang", "-disable-llvm-passes", "-Wno-unused-command-line-argument"]

    def clang_oz_command(self, out_o: Path) -> list[str | Path]:
        """clang's own -Oz on the source IR in one run: the object `clang -Oz -c` ships."""
        return [self.compiler, *self.codegen_flags, "-Oz", "-c", "-x", "ir", self.in_bc, "-o", out_o,
                "-Wno-unused-command-line-argument"]

    def evaluate(self, pass_list: PassList, verify_each: bool = True) -> Finding:
        """opt with the list (-verify-each, timeout), count instructions, codegen, measure sizes."""
        return self._in_slot(lambda: self._evaluate(pass_list, verify_each))

    def _in_slot(self, run_it: Callable[[], Finding]) -> Finding:
        """A heavy step (opt + codegen) within this machine's slots, when there are any."""
        if self.slots is None:
            return run_it()
        with self.slots.slot():
            return run_it()

    def verified(self, chosen: Finding, oz: Finding) -> Finding | Refusal:
        """The chosen list re-run with `opt -verify-each` (`evaluate_after`: a list extending a
        base pipeline runs its own passes verified on that base's output, any other list runs
        whole from the source IR): its object, if the verifier passes every step and the object is byte for
        byte the one measured -- or another object that run built that is not larger than the -Oz
        object `oz`; else why not (`Refusal`). A finding that came from such a run already is its
        own verified run. (What may ship after unverified screening: the driver and the
        evaluation both ask this.)

        Why the base pipeline is not verified pass by pass: it is clang's own pipeline, which
        `clang -Oz -c` (or -Os, -O1, -O2) runs with no verifier between passes, and its output is verified when opt
        reads it; the passes a list adds are the unusual part, and each of them is verified.
        (`benchmarks/bench_verify.py` compares this with the whole verified run: same verdicts
        and objects, at a fraction of the cost.)

        Why accept another object: a list run whole keeps the base pipeline's cached analyses
        (scalar evolution, for one) where a run on the baseline's output starts without them,
        so passes after the base can build a slightly different object; that object is verified
        and measured here, so shipping it keeps every guarantee the screened one had."""
        if chosen.verified:
            return chosen
        try:
            pl = parse_pass_list(chosen.pass_list)
        except PassListError:
            return "bad-list"
        again = self.evaluate_after(oz, pl, verify_each=True)
        if not again.valid or again.object_path is None or chosen.object_path is None:
            log.warning("%s failed opt -verify-each: %s", chosen.pass_list, (again.error or "")[:300])
            return "timeout" if again.error_kind in ("timeout", "budget") else "verify"
        if again.object_path.read_bytes() != chosen.object_path.read_bytes():
            if oz.sizes is not None and again.sizes is not None and again.sizes.not_larger_than(oz.sizes):
                log.info("%s: the verified run built another object, not larger than -Oz: shipped",
                         chosen.pass_list)
                return again
            log.warning("%s: the verified run built another object", chosen.pass_list)
            return "other-object"
        return again

    @staticmethod
    def extends(pass_list: PassList) -> bool:
        """Whether `pass_list` is one base pipeline (-Oz, -Os, -O1, -O2) followed by passes of
        its own: then it can continue from that base's output."""
        rest = pass_list.tokens[1:]
        return bool(rest) and pass_list.tokens[0] in BASE_LEVELS and not PassList(rest).bases

    def base_output(self, token: str, oz: Finding) -> Finding | None:
        """clang's own `token` pipeline on the source IR, its optimized IR kept for the lists that
        continue from it: the -Oz baseline itself for `Oz`, else one opt run per base and TU (no
        codegen), whichever thread asks first. None when it failed."""
        if token == oz.pass_list:
            got: Finding | None = oz
        else:
            with self._base_lock:  # never held by a thread that holds a slot: no deadlock
                if token not in self._bases:
                    self._bases[token] = self._in_slot(
                        lambda: self._evaluate(PassList((token,)), False, objects=False))
                got = self._bases[token]
        if got is None or not got.valid or got.ir_path is None or not got.ir_path.is_file():
            return None
        return got

    def evaluate_after(self, oz: Finding, pass_list: PassList, verify_each: bool = False) -> Finding:
        """A candidate, cheaper when it extends a base pipeline: `Oz X Y` runs only `X Y` on the
        -Oz baseline's optimized IR (`oz`), `Os X Y` on clang's -Os output, run once per TU
        (`base_output`). That is exact: a base pipeline ends before the next pass begins, so the
        optimized module and its object are byte for byte a whole run's
        (`tests/test_tubuilder_incremental.py`). Any other list, or one whose base failed, runs
        whole from the source IR. `verify_each`: the list's own passes run with `opt -verify-each`."""
        start = self.base_output(pass_list.tokens[0], oz) if self.extends(pass_list) else None
        if start is None:
            return self.evaluate(pass_list, verify_each=verify_each)
        source = start.ir_path
        assert source is not None
        rest = PassList(pass_list.tokens[1:])
        return self._in_slot(lambda: self._evaluate(pass_list, verify_each, rest, source))

    def _evaluate(self, pass_list: PassList, verify_each: bool, run_list: PassList | None = None,
                  source: Path | None = None, objects: bool = True) -> Finding:
        """One opt run (`run_list` on `source`, by default the whole list on the source IR), then,
        unless `objects` is False (a base's output kept for others), count, codegen and sizes."""
        tag = f"c{next(self._ids)}"
        out_bc, out_o = self.workdir / f"{tag}.bc", self.workdir / f"{tag}.o"
        f = Finding(pass_list=str(pass_list), valid=False, count_before=self.count_before)
        if self.time_left() <= 0:
            f.error_kind, f.error = "budget", "the TU's time budget was spent before this list ran"
            return f
        with measuring(f):
            with self._count_lock:
                self.opt_runs += 1
            res = run(self.opt_command(run_list or pass_list, out_bc, verify_each, source), timeout=self.time_left())
            if res.returncode != 0:
                return opt_failed(f, res)
            f.ir_path = out_bc
            if not objects:
                f.valid = True
                return f
            digest = None
            if verify_each:
                f.count_after = ir.count_file(out_bc)
            else:
                text = str(ir.parse(out_bc))
                f.count_after = ir.count_text(text)
                digest = hashlib.sha256(text[text.find("\n") + 1:].encode()).hexdigest()  # no ModuleID line
                same = self._built.get(digest)
                if same is not None and same.sizes is not None and same.object_path is not None:
                    f.sizes, f.object_path, f.valid = replace(same.sizes), same.object_path, True
                    self.codegen_skipped += 1
                    return f
            t_codegen = time.monotonic()
            try:
                res = run(self.codegen_command(out_bc, out_o), timeout=max(0.001, self.time_left()))
            finally:
                self.codegen_s += time.monotonic() - t_codegen
            if res.returncode != 0:
                f.error_kind, f.error = "codegen", _trim(res.stderr) or "codegen failed"
                return f
            f.sizes = object_sizes(out_o)
            f.object_path = out_o
            self.objects.add(out_o)
            f.valid = True
            f.verified = verify_each
            if digest is not None:
                self._built[digest] = f
        return f
