"""Cheaper search evaluations: run only what a list adds to one already evaluated, and compile
each distinct optimized module once.

A search spends nearly all its evaluations on lists that extend one it has already run (greedy
appends, mutations of the best list), and many lists leave the IR exactly as a shorter one did.
So `IncrementalEvaluator` keeps the optimized bitcode of every list it ran, runs a new list's
passes after its longest evaluated prefix on that prefix's output, and memoizes count and sizes
by the hash of the optimized bitcode (identical IR, identical object: no second codegen). It runs
without `-verify-each`; the lists a search keeps are re-run in one piece from the source IR with
`-verify-each` (`verify_kept`), and only those results are stored.

Codegen, the largest share of an evaluation, runs in-process (llvmlite's TargetMachine with
clang's target options) when it measures the -Oz baseline exactly as clang's backend did; a
module whose flags it cannot express (e.g. `-ffunction-sections`) keeps clang's codegen.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import llvmlite.binding as llvm

from clang_llm import ir
from clang_llm.build.targetopts import TargetOptions
from clang_llm.build.tubuilder import TUBuilder, _trim, measuring, opt_failed
from clang_llm.objsize import Sizes, object_sizes
from clang_llm.passes import PassList, Vocabulary, render
from clang_llm.records import Finding
from clang_llm.toolchain import run

_RELOC = {"static": "static", "pic": "pic", "dynamic-no-pic": "dynamicnopic"}


def target_machine(triple: str, target: TargetOptions) -> llvm.TargetMachine | None:
    """llvmlite's TargetMachine for clang's target options; None if they hold one it lacks."""
    opts = dict(f.lstrip("-").split("=", 1) for f in target.opt_flags if "=" in f)
    if set(opts) - {"relocation-model", "code-model", "mcpu", "mattr"} or any("=" not in f for f in target.opt_flags):
        return None
    reloc = _RELOC.get(opts.get("relocation-model", "static"))
    if reloc is None:
        return None
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()  # inline asm: without a parser LLVM aborts the process
    return llvm.Target.from_triple(triple).create_target_machine(
        cpu=opts.get("mcpu", ""), features=opts.get("mattr", ""), opt=2, reloc=reloc,
        codemodel=opts.get("code-model", "default"))


def _digest(text: str) -> str:
    """The optimized module's identity: its text without the `; ModuleID` line (bitcode bytes of
    one module differ between a whole-pipeline run and a re-read, the IR does not)."""
    return hashlib.sha256(text[text.find("\n") + 1:].encode()).hexdigest()


@dataclass(frozen=True)
class _Built:
    count: int
    sizes: Sizes


class IncrementalEvaluator:
    """`evaluate(list) -> Finding` like `TUBuilder.evaluate(verify_each=False)`, cheaper."""

    def __init__(self, builder: TUBuilder, max_cached: int = 256) -> None:
        self.builder = builder
        self.max_cached = max_cached
        self._outputs: dict[tuple[str, ...], Path] = {}  # evaluated list -> its optimized bitcode
        self._by_digest: dict[str, _Built] = {}
        self._ids = itertools.count(1)
        self._tm: Any | None = None  # in-process codegen, once the baseline proved it exact
        self.opt_runs = self.codegen_runs = self.memo_hits = 0

    def seed(self, pass_list: PassList, finding: Finding) -> None:
        """Start from a list already built whole (the -Oz baseline): its output and its sizes."""
        if finding.valid and finding.ir_path is not None and finding.sizes is not None:
            kept = self.builder.workdir / f"seed{next(self._ids)}.bc"
            kept.write_bytes(finding.ir_path.read_bytes())
            module = ir.parse(kept)
            digest = _digest(str(module))
            self._by_digest[digest] = _Built(finding.count_after or 0, replace(finding.sizes))
            self._keep(pass_list.tokens, kept)
            self._calibrate(module, finding.sizes)

    def _calibrate(self, module: llvm.ModuleRef, clang_sizes: Sizes) -> None:
        """Use in-process codegen only if it gives this module's -Oz object clang's sizes. Inline
        asm keeps clang's codegen: an LLVM fatal error in it would end this process, not a child."""
        if "asm " in str(module):
            return
        try:
            tm = target_machine(module.triple, self.builder.target_options())
            if tm is not None and self._emit_sizes(tm, module) == clang_sizes:
                self._tm = tm
        except (RuntimeError, OSError, ValueError):
            self._tm = None

    def _emit_sizes(self, tm: llvm.TargetMachine, module: llvm.ModuleRef) -> Sizes:
        obj = self.builder.workdir / f"inproc{next(self._ids)}.o"
        obj.write_bytes(tm.emit_object(module))
        try:
            return object_sizes(obj)
        finally:
            obj.unlink(missing_ok=True)

    def _base_output(self, token: str) -> Path | None:
        """The output of a base pipeline alone (`O1`, `Os`…), run once: every list on that base
        then costs only its own passes."""
        b = self.builder
        out = b.workdir / f"base-{token}.bc"
        cmd = [b.opt, *b.target_options().opt_flags, f"-passes={b.base_pipeline(token)}", b.in_bc, "-o", out]
        res = run(cmd, timeout=b.timeout)
        self.opt_runs += 1
        if res.returncode != 0:
            return None
        self._keep((token,), out)
        return out

    def _prefix(self, tokens: tuple[str, ...]) -> tuple[Path, tuple[str, ...]]:
        """The longest evaluated proper prefix of `tokens` and what follows it (the source IR and
        the whole list when there is none)."""
        levels = Vocabulary.default().levels
        for i in range(len(tokens) - 1, 0, -1):
            if levels.get(tokens[i]) == levels.get(tokens[i - 1]) not in ("module", "base"):
                # `render` puts both in one `function(…)`/`loop(…)` wrapper: per function (per
                # loop) interleaved, which separate runs would not reproduce exactly.
                continue
            out = self._outputs.get(tokens[:i])
            if out is not None:
                rest = tokens[i:]
                if not any(levels.get(t) == "base" for t in rest):
                    return out, rest
        if len(tokens) > 1 and levels.get(tokens[0]) == "base" and not any(
                levels.get(t) == "base" for t in tokens[1:]):
            out = self._base_output(tokens[0])
            if out is not None:
                return out, tokens[1:]
        return self.builder.in_bc, tokens

    def evaluate(self, pass_list: PassList, verify_each: bool = False) -> Finding:
        if verify_each:  # a verified run is a whole run from the source IR
            return self.builder.evaluate(pass_list, verify_each=True)
        b = self.builder
        tag = f"i{next(self._ids)}"
        out_bc, out_o = b.workdir / f"{tag}.bc", b.workdir / f"{tag}.o"
        f = Finding(pass_list=str(pass_list), valid=False, count_before=b.count_before)
        with measuring(f):
            src, rest = self._prefix(pass_list.tokens)
            part = PassList(rest)
            bases = {t: b.base_pipeline(t) for t in part.bases}
            cmd = [b.opt, *b.target_options().opt_flags, f"-passes={render(part, bases)}", src, "-o", out_bc]
            res = run(cmd, timeout=b.timeout)
            self.opt_runs += 1
            if res.returncode != 0:
                return opt_failed(f, res)
            module = ir.parse(out_bc)
            text = str(module)  # printed once: the memo key and the instruction count
            digest = _digest(text)
            built = self._by_digest.get(digest)
            if built is None and self._tm is not None:
                count = ir.count_text(text)
                built = self._by_digest[digest] = _Built(count, self._emit_sizes(self._tm, module))
                self.codegen_runs += 1
            elif built is None:
                count = ir.count_text(text)
                res = run(b.codegen_command(out_bc, out_o), timeout=b.timeout)
                self.codegen_runs += 1
                if res.returncode != 0:
                    f.error_kind, f.error = "codegen", _trim(res.stderr) or "codegen failed"
                    return f
                built = self._by_digest[digest] = _Built(count, object_sizes(out_o))
                out_o.unlink(missing_ok=True)
            else:
                self.memo_hits += 1
            f.count_after, f.sizes, f.valid = built.count, replace(built.sizes), True
            self._keep(pass_list.tokens, out_bc)
        return f

    def _keep(self, tokens: tuple[str, ...], out_bc: Path) -> None:
        """Remember a list's output for its extensions; the oldest go when the cache is full."""
        self._outputs[tokens] = out_bc
        while len(self._outputs) > self.max_cached:
            old = next(iter(self._outputs))
            self._outputs.pop(old).unlink(missing_ok=True)
