"""The fast instruction count (a scan of the printed IR) against llvmlite's walk, on IR with every
line shape that is not an instruction: switch cases, landingpad clauses, debug records, labels,
comments, declarations."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import CLANG, SAMPLE_C, SAMPLE_CXX

from clang_llm import ir

SWITCHY = r"""
int pick(int x) { switch (x) { case 0: return 3; case 1: return 9; case 7: return 1; default: return x * 2; } }
int loop(const int *a, int n) {
  int s = 0; for (int i = 0; i < n; i++) { if (a[i] > 4) s += a[i]; else s -= 1; } return s; }
extern int ext(int);
int calls(int v) { return ext(v) + ext(v + 1); }
"""
EH = r"""
#include <stdexcept>
#include <string>
int risky(int x) { if (x > 3) throw std::runtime_error("big"); return x; }
int guarded(int x) {
  try { return risky(x); } catch (const std::exception &e) { return (int)std::string(e.what()).size(); } }
"""


@pytest.mark.parametrize(("name", "source", "flags"), [
    ("sample.c", SAMPLE_C, []), ("switchy.c", SWITCHY, ["-g"]), ("switchy-O2.c", SWITCHY, ["-O2", "-g"]),
    ("sample.cpp", SAMPLE_CXX, ["-std=c++17"]), ("eh.cpp", EH, ["-std=c++17", "-g"]),
])
def test_count_text_equals_the_walk(tmp_path: Path, name: str, source: str, flags: list[str]) -> None:
    src = tmp_path / name.replace("-O2", "")
    src.write_text(source)
    bc = tmp_path / "m.bc"
    cc = "clang++-22" if name.endswith(".cpp") else CLANG
    subprocess.run([cc, *flags, "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", str(src), "-o", str(bc)],
                   check=True)
    mod = ir.parse(bc)
    text = str(mod)
    walk = ir.count_walk(mod)
    assert walk > 10
    assert ir.count_text(text) == walk == ir.count_instructions(mod)
    if "-g" in flags:
        assert "#dbg_" in text  # the records are there, and not counted
    if name.startswith("switchy"):
        assert "switch i32" in text and "\n    i32 1, label" in text
    if name == "eh.cpp":
        assert "landingpad" in text


def test_count_text_ignores_what_is_outside_bodies() -> None:
    text = ("; ModuleID = 'x'\n@g = global i32 0\ndeclare i32 @f(i32)\n\ndefine i32 @h(i32 %x) {\nentry:\n"
            "  ; a comment\n  %y = add i32 %x, 1\n  switch i32 %y, label %d [\n    i32 0, label %d\n  ]\n\n"
            "d:                                                ; preds = %entry, %entry\n  ret i32 %y\n}\n")
    assert ir.count_text(text) == 3
    assert ir.count_walk(ir.parse(text)) == 3
