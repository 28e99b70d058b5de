"""The search's cheaper evaluation measures exactly what a whole run from the source IR measures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SAMPLE_C

from clang_llm import ir
from clang_llm.build.tubuilder import TUBuilder
from clang_llm.passes import OZ, parse_pass_list
from clang_llm.toolchain import Toolchain
from clang_llm.train.autotune import ModuleTask, autotune_module
from clang_llm.train.configs import AutotuneConfig
from clang_llm.train.fasteval import IncrementalEvaluator

SOURCE = r"""
struct node { int v; struct node *next; };
static int sum(struct node *n) { int s = 0; for (; n; n = n->next) s += n->v; return s; }
int walk(struct node *n, int k) { int t = 0; for (int i = 0; i < k; i++) t += sum(n) * i; return t; }
int pick(int i) { switch (i) { case 0: return 11; case 1: return 23; case 2: return 5; case 3: return 81;
  case 4: return 2; case 5: return 9; default: return -1; } }
int same1(int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i] * 3; return s; }
int same2(int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i] * 3; return s; }
"""
LISTS = ["Oz sink", "Oz gvn-sink", "Oz gvn-sink dse", "Oz gvn-sink dse sink", "O1", "O1 gvn-hoist",
         "O1 gvn-hoist mergefunc", "Os", "Oz mergefunc",
         "Oz loop-reduce simplifycfg<hoist-common-insts;sink-common-insts>", "Oz mergefunc sink", "Oz dce",
         "Oz dce sink"]


def _bitcode(d: Path, flags: list[str], source: str = SOURCE) -> Path:
    (d / "m.c").write_text(source)
    subprocess.run(["clang-22", *flags, "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", "m.c",
                    "-o", "m.bc"], cwd=d, check=True)
    return d / "m.bc"


@pytest.fixture(scope="module")
def bitcode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bitcode(tmp_path_factory.mktemp("fasteval"), [])


def _builder(bc: Path, work: Path, flags: list[str] | None = None, opt: Path | None = None) -> TUBuilder:
    tc = Toolchain.discover()
    work.mkdir(exist_ok=True)
    b = TUBuilder(tc.compiler(False), opt or tc.opt, flags or [], "c", bc, work, 60.0)
    b.count_before = ir.count_file(bc)
    return b


# SAMPLE_C with -ffunction-sections/-fdata-sections: in-process codegen measures it otherwise than
# clang (3 bytes of .text), so the evaluator must notice on the -Oz baseline and keep clang's codegen.
@pytest.mark.parametrize(("flags", "source"), [([], SOURCE), (["-ffunction-sections", "-fdata-sections"], SAMPLE_C)],
                         ids=["plain", "sections"])
def test_incremental_results_equal_whole_runs(flags: list[str], source: str, tmp_path: Path) -> None:
    bitcode = _bitcode(tmp_path, flags, source)
    whole = _builder(bitcode, tmp_path / "a", flags)
    fast_b = _builder(bitcode, tmp_path / "b", flags)
    oz = fast_b.evaluate(OZ, verify_each=False)
    fast = IncrementalEvaluator(fast_b)
    fast.seed(OZ, oz)
    for text in LISTS:
        pl = parse_pass_list(text)
        a, b = whole.evaluate(pl, verify_each=True), fast.evaluate(pl)
        assert a.valid and b.valid, (text, a.error, b.error)
        assert (a.sizes, a.count_after) == (b.sizes, b.count_after), text
    assert fast.memo_hits > 0 or source is SAMPLE_C, "no list left the IR as another did?"
    assert fast.codegen_runs + fast.memo_hits == len(LISTS)
    assert fast.opt_runs <= len(LISTS) + 2  # one run per list, plus at most the O1/Os bases alone


def test_extensions_run_only_their_own_passes(bitcode: Path, tmp_path: Path) -> None:
    """An extension runs only what it adds, on the cached output of its prefix, unless the new
    pass would share a `function(...)` wrapper with the last one (then the group runs again)."""
    log = tmp_path / "opt.log"
    opt = tmp_path / "opt"
    opt.write_text(f'#!/bin/sh\nfor a in "$@"; do case "$a" in -passes=*) echo "$a" >> {log};; esac; done\n'
                   'exec opt-22 "$@"\n')
    opt.chmod(0o755)
    b = _builder(bitcode, tmp_path / "w", opt=opt)
    oz = b.evaluate(OZ, verify_each=False)
    fast = IncrementalEvaluator(b)
    fast.seed(OZ, oz)
    log.unlink()
    for text in ("Oz gvn-sink", "Oz gvn-sink mergefunc", "Oz gvn-sink mergefunc inline", "Oz gvn-sink dse"):
        assert fast.evaluate(parse_pass_list(text)).valid
    assert log.read_text().split() == ["-passes=function(gvn-sink)", "-passes=mergefunc", "-passes=cgscc(inline)",
                                       "-passes=function(gvn-sink,dse)"]


def test_labels_store_what_the_whole_run_measured(bitcode: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the cheap evaluation were wrong, the label still carries the verified run's sizes."""
    real = IncrementalEvaluator.evaluate

    def optimistic(self: IncrementalEvaluator, pass_list: object, verify_each: bool = False) -> object:
        f = real(self, pass_list, verify_each)  # type: ignore[arg-type]
        if f.valid and f.sizes is not None and not verify_each:
            f.sizes = type(f.sizes)(f.sizes.text - 1, f.sizes.alloc - 1)  # a one-byte lie
        return f

    monkeypatch.setattr(IncrementalEvaluator, "evaluate", optimistic)
    task = ModuleTask(id="m", bc=str(bitcode), lang="c", codegen_flags=[])
    rec = autotune_module(task, AutotuneConfig(budget=8, seed=1, fast=True)).to_json()
    assert rec["status"] == "ok" and rec["verify_mismatch"] > 0
    truth = autotune_module(task, AutotuneConfig(budget=8, seed=1)).to_json()
    by_list = {t["pass_list"]: t for t in truth["top"]}
    for t in rec["top"]:  # every stored size is the whole run's
        if t["pass_list"] in by_list:
            assert t == by_list[t["pass_list"]]


def test_fast_labels_are_verified_whole(bitcode: Path, tmp_path: Path) -> None:
    task = ModuleTask(id="m", bc=str(bitcode), lang="c", codegen_flags=[])
    slow = autotune_module(task, AutotuneConfig(budget=16, seed=1)).to_json()
    fast = autotune_module(task, AutotuneConfig(budget=16, seed=1, fast=True)).to_json()
    assert slow["status"] == fast["status"] == "ok"
    assert fast["verify_mismatch"] == 0
    assert fast["best"]["pass_list"] == slow["best"]["pass_list"]
    keys = ("text", "alloc", "count")
    assert {k: fast["best"][k] for k in keys} == {k: slow["best"][k] for k in keys}
    assert [t["pass_list"] for t in fast["top"]] == [t["pass_list"] for t in slow["top"]]


def test_inline_asm_module_is_evaluated_without_killing_the_process(tmp_path: Path) -> None:
    """In-process codegen of inline asm once aborted the whole labelling worker (LLVM fatal error)."""
    src = 'int f(int x) { int y; __asm__ volatile ("mov %1, %0" : "=r"(y) : "r"(x)); return y + 1; }\n'
    bitcode = _bitcode(tmp_path, [], src)
    whole, fast_b = _builder(bitcode, tmp_path / "a"), _builder(bitcode, tmp_path / "b")
    oz = fast_b.evaluate(OZ, verify_each=False)
    fast = IncrementalEvaluator(fast_b)
    fast.seed(OZ, oz)
    for text in ("Oz sink", "O1", "Oz dce"):
        a, b = whole.evaluate(parse_pass_list(text), verify_each=True), fast.evaluate(parse_pass_list(text))
        assert a.valid and b.valid and (a.sizes, a.count_after) == (b.sizes, b.count_after), text


def test_labels_fall_back_to_oz_when_no_kept_list_verifies(bitcode: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big module whose kept lists all fail the whole verified run (timeouts) is labelled -Oz,
    not lost to an error."""
    real = TUBuilder.evaluate

    def whole_runs_fail(self: TUBuilder, pass_list: object, verify_each: bool = True) -> object:
        f = real(self, pass_list, verify_each)  # type: ignore[arg-type]
        if verify_each and str(pass_list) != "Oz":
            f.valid, f.error_kind = False, "timeout"
        return f

    monkeypatch.setattr(TUBuilder, "evaluate", whole_runs_fail)
    task = ModuleTask(id="m", bc=str(bitcode), lang="c", codegen_flags=[])
    rec = autotune_module(task, AutotuneConfig(budget=12, seed=1, fast=True, top_k=1)).to_json()  # -Oz not kept
    assert rec["status"] == "ok", rec.get("error")
    assert rec["best"]["pass_list"] == "Oz" and rec["best"]["text"] == rec["oz"]["text"]
