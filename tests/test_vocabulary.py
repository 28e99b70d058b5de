"""Every vocabulary token is accepted by opt-22 at its level, and the vocabulary keeps out the
passes known to break code (REFERENCE.md) or to change linkage/instrumentation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clang_llm.errors import PassListError
from clang_llm.passes import PassList, Vocabulary, parse_pass_list, render

FORBIDDEN = ("attributor", "attributor-light", "attributor-cgscc", "attributor-light-cgscc", "lower-invoke",
             "lower-atomic", "structurizecfg", "unify-loop-exits", "fix-irreducible", "internalize", "strip",
             "insert-gcov-profiling", "asan", "tsan", "msan", "pgo-instr-gen", "print", "verify", "metarenamer")


@pytest.fixture(scope="module")
def module_bc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("vocab")
    (d / "m.c").write_text("int g[8]; int f(int n) { int s = 0; for (int i = 0; i < n; i++) s += g[i & 7];"
                           " switch (n) { case 1: return s; case 2: return s * 2; default: return s + n; } }\n")
    subprocess.run(["clang-22", "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", str(d / "m.c"), "-o",
                    str(d / "m.bc")], check=True)
    return d / "m.bc"


def test_every_token_runs_in_opt(module_bc: Path) -> None:
    vocab = Vocabulary.default()
    bases = {t: "default<O1>" for t, lv in vocab.levels.items() if lv == "base"}
    tokens = [t for t, lv in vocab.levels.items() if lv != "base"]
    # One opt run with every token (each nested at its level), and -verify-each.
    pipeline = render(PassList(tuple(tokens)), bases)
    r = subprocess.run(["opt-22", "-verify-each", f"-passes={pipeline}", str(module_bc), "-o", "/dev/null"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for t in tokens:  # and alone, so an error names the token
        r = subprocess.run(["opt-22", f"-passes={render(PassList((t,)), bases)}", str(module_bc), "-o", "/dev/null"],
                           capture_output=True, text=True)
        assert r.returncode == 0, (t, r.stderr)


def test_dangerous_passes_are_kept_out() -> None:
    vocab = Vocabulary.default()
    for t in FORBIDDEN:
        assert t not in vocab
        with pytest.raises(PassListError):
            parse_pass_list(f"Oz {t}")
