"""The argument classifier: what is optimized, what passes straight through, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from clang_llm.clang_args import classify, expand_response_files, split_llm_flags, strip_for_codegen


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--version"], "info"),
        (["-v"], "info"),
        (["-dumpmachine"], "info"),
        (["-print-search-dirs"], "info"),
        (["-E", "x.c"], "preprocess"),
        (["-E", "-dM", "-"], "preprocess"),
        (["-M", "x.c"], "depfile-only"),
        (["-fsyntax-only", "x.c"], "syntax-only"),
        (["-S", "x.c"], "assembly-output"),
        (["-c", "-emit-llvm", "x.c"], "llvm-output"),
        (["-c", "x.s"], "assembler"),
        (["-c", "x.S"], "assembler"),
        (["-c", "-x", "assembler-with-cpp", "x.c"], "assembler"),
        (["-c", "x.ll"], "ir-input"),
        (["-c", "x.bc"], "ir-input"),
        (["-c", "-"], "stdin-input"),
        (["-c", "x.c", "-o", "-"], "stdout-output"),
        (["x.c", "-o", "x"], "link"),
        (["x.o", "y.o", "-o", "prog"], "link"),
        (["-c", "x.c", "y.c"], "multiple-sources"),
        (["-c", "x.c", "-fsanitize=address"], "sanitizer"),
        (["-c", "x.c", "--coverage"], "coverage"),
        (["-c", "x.c", "-fprofile-instr-generate"], "pgo"),
        (["-c", "x.c", "-flto=thin"], "lto"),
        (["-c", "x.c", "-fembed-bitcode"], "embed-bitcode"),
        (["-c", "x.c", "-save-temps"], "side-output"),
        (["-c", "x.c", "-MJ", "x.json"], "side-output"),
        (["-c", "x.c", "-ftime-trace"], "side-output"),
        (["-c", "x.c", "-gsplit-dwarf"], "side-output"),
        (["-c", "x.m"], "unsupported-language"),
        (["-c", "x.c", "-Xclang", "-foo"], "unsupported-flag"),
        (["-c", "x.c", "-mllvm", "-foo"], "unsupported-flag"),
        ([], "no-arguments"),
    ],
)
def test_passthrough_reasons(argv: list[str], reason: str) -> None:
    assert classify(argv).reason == reason


@pytest.mark.parametrize(
    ("argv", "lang", "output"),
    [
        (["-c", "x.c"], "c", "x.o"),
        (["-c", "dir/x.c", "-o", "out/y.o"], "c", "out/y.o"),
        (["-c", "x.cpp", "-oy.o"], "c++", "y.o"),
        (["-O2", "-g", "-fPIC", "-I", "inc", "-DX=1", "-c", "x.cc"], "c++", "x.o"),
        (["-x", "c", "-c", "weird.txt", "-o", "w.o"], "c", "w.o"),
        (["-c", "x.c", "-MD", "-MF", "x.d", "-MT", "t"], "c", "x.o"),
        (["-c", "x.c", "--llm-rounds=3", "--llm-off"], "c", "x.o"),
    ],
)
def test_single_tu_compiles(argv: list[str], lang: str, output: str) -> None:
    inv = classify(argv)
    assert inv.reason is None
    assert inv.lang == lang and inv.output == output


def test_llm_flags_are_removed_everywhere() -> None:
    inv = classify(["-c", "x.c", "--llm-rounds=3", "--llm-feedback=long", "--llm-off"])
    assert inv.llm_flags == {"rounds": "3", "feedback": "long", "off": "1"}
    assert not any(a.startswith("--llm") for a in inv.argv)
    rest, flags = split_llm_flags(["--version", "--llm-samples=8"])
    assert rest == ["--version"] and flags == {"samples": "8"}


def test_response_files_expand_with_quoting(tmp_path: Path) -> None:
    rsp = tmp_path / "args.rsp"
    inner = tmp_path / "inner.rsp"
    inner.write_text("-DINNER=1")
    rsp.write_text(f"-c 'my file.c' -DMSG=\"a b\" --llm-rounds=2 @{inner}\n")
    args = expand_response_files([f"@{rsp}", "-o", "x.o"])
    assert args == ["-c", "my file.c", "-DMSG=a b", "--llm-rounds=2", "-DINNER=1", "-o", "x.o"]
    inv = classify([f"@{rsp}", "-o", "x.o"])
    assert inv.source == "my file.c" and inv.llm_flags == {"rounds": "2"}


def test_codegen_flags_keep_codegen_options_only() -> None:
    argv = ["-O2", "-g", "-fPIC", "-I", "inc", "-c", "x.c", "-o", "x.o", "-MD", "-MF", "x.d", "-march=x86-64-v2"]
    # Preprocessor options (-I, -D, -include) do nothing once the IR exists: codegen drops them, so
    # its flags (and the cached pipeline strings keyed by them) are shared by TUs of one target.
    assert strip_for_codegen(argv) == ["-O2", "-g", "-fPIC", "-march=x86-64-v2"]
