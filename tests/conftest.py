"""Shared fixtures: a private state dir per test and helpers to run the real wrapper."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLANG = "clang-22"

SAMPLE_C = r"""
#include <stdio.h>
#include <string.h>
static int helper(int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i] * i; return s; }
int foo(int *a, int n) { if (n > 3) return helper(a, n) + 1; return helper(a, n / 2); }
const char *msg = "INFO:hello";
int table[4] = {1, 2, 3, 4};
int main(int c, char **v) { int a[10]; memset(a, 0, sizeof a); printf("%d %s\n", foo(a, c), msg); return 0; }
"""

SAMPLE_CXX = r"""
#include <vector>
#include <string>
struct Shape { virtual ~Shape() = default; virtual int area() const = 0; };
struct Sq : Shape { int s; explicit Sq(int x) : s(x) {} int area() const override { return s * s; } };
int total(const std::vector<Shape*>& v) { int t = 0; for (auto* p : v) t += p->area(); return t; }
std::string greet(const std::string& n) { return "hi " + n; }
"""


def wrapper_cmd(cxx: bool = False) -> list[str]:
    fn = "main_cxx" if cxx else "main_c"
    return [sys.executable, "-c", f"import sys; from clang_llm.driver.main import {fn}; {fn}()"]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("CLANG_LLM_DIR", str(d))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for k in list(os.environ):
        if k.startswith("CLANG_LLM_") and k != "CLANG_LLM_DIR":
            monkeypatch.delenv(k)
    # The wrapper as users run it: the shipped model at the default settings (a test that needs
    # no model says so with `no_model`; one that needs a list to win uses a fake optimizer).
    return d


@pytest.fixture
def no_model(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state dir whose compiles find no model: the wrapper's -Oz path (counted model-unavailable)."""
    monkeypatch.setenv("CLANG_LLM_MODEL", str(tmp_path / "no-model"))
    return state


@pytest.fixture
def winner(tmp_path: Path) -> Path:
    """A real source on which the shipped model's lists beat -Oz (textkit's base64.c)."""
    d = tmp_path / "win"
    d.mkdir()
    for name in ("base64.c", "textkit.h"):
        shutil.copy(ROOT / "examples" / "textkit" / name, d / name)
    return d / "base64.c"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "prog.c"
    p.write_text(SAMPLE_C)
    return p


def run_wrapper(args: list[str], cwd: Path, cxx: bool = False, env: dict[str, str] | None = None,
                **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*wrapper_cmd(cxx), *args], cwd=cwd, capture_output=True, env=env, **kw)  # type: ignore[call-overload]


def run_clang(args: list[str], cwd: Path, cxx: bool = False) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["clang++-22" if cxx else CLANG, *args], cwd=cwd, capture_output=True)
