"""cmake/clang-llm-toolchain.cmake and cmake/ClangLLM.cmake on a tiny project: compilers and
archivers are ours, per-source settings reach the wrapper without touching compile_commands.json,
changing them rebuilds just that object, and dropping them removes the generated file."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from .support import CMAKE_DIR, REPO, build_env, records, require_tools, run, wrapper_bin_dir

pytestmark = pytest.mark.slow

TOP = """\
cmake_minimum_required(VERSION 3.16)
project(tiny C CXX)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)
add_subdirectory(src)
"""
SUB = """\
add_library(tiny STATIC a.c b.cpp)
{settings}
"""


def _project(root: Path, settings: str) -> None:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "CMakeLists.txt").write_text(TOP)
    (root / "src" / "CMakeLists.txt").write_text(SUB.format(settings=settings))
    (root / "src" / "a.c").write_text("int fa(int x) { return x * 3 + 1; }\n")
    (root / "src" / "b.cpp").write_text("int fb(int x) { return x * 5 - 2; }\n")


def _compiler(build: Path, lang: str) -> str:
    """The compiler CMake settled on (a toolchain file's set() never reaches CMakeCache.txt)."""
    (f,) = build.glob(f"CMakeFiles/*/CMake{lang}Compiler.cmake")
    m = re.search(rf'set\(CMAKE_{lang}_COMPILER "([^"]*)"\)', f.read_text())
    assert m, f
    return m.group(1)


def test_toolchain_and_source_settings(tmp_path: Path) -> None:
    require_tools("cmake", "make", "clang-22", "clang++-22")
    bin_dir = wrapper_bin_dir()
    root, build, state, log = tmp_path / "p", tmp_path / "b", tmp_path / "state", tmp_path / "log"
    env = build_env(state, bin_dir)
    _project(root, 'clang_llm_source_settings(a.c ROUNDS 3 FEEDBACK long)\n'
                   'clang_llm_source_settings(a.c rounds 4)')
    configure = ["cmake", "-S", str(root), "-B", str(build), "-G", "Unix Makefiles",
                 f"-DCMAKE_TOOLCHAIN_FILE={CMAKE_DIR / 'clang-llm-toolchain.cmake'}",
                 f"-DCLANG_LLM_BIN_DIR={bin_dir}"]
    run(configure, tmp_path, env, log)
    cache = (build / "CMakeCache.txt").read_text()
    assert _compiler(build, "C") == str(bin_dir / "clang-llm")
    assert _compiler(build, "CXX") == str(bin_dir / "clang++-llm")
    ar = shutil.which("llvm-ar-22")
    if ar:
        assert f"CMAKE_AR:FILEPATH={ar}" in cache

    toml = (build / ".clang-llm.toml").read_text()
    a_src = str(root / "src" / "a.c")
    assert toml.count(f'[files."{a_src}"]') == 1  # two calls, one section
    assert "rounds = 4" in toml and 'feedback = "long"' in toml and "rounds = 3" not in toml

    run(["cmake", "--build", str(build)], tmp_path, env, log)
    cc = (build / "compile_commands.json").read_text()
    assert "--llm" not in cc and len(json.loads(cc)) == 2
    by_name = {Path(r["source"]).name: r for r in records(state).values()}
    assert by_name["a.c"]["settings"]["rounds"] == 4
    assert by_name["a.c"]["settings"]["feedback"] == "long"
    assert by_name["b.cpp"]["settings"]["rounds"] == 1

    # A settings change rebuilds that object only.
    (root / "src" / "CMakeLists.txt").write_text(SUB.format(settings="clang_llm_source_settings(a.c ROUNDS 5)"))
    out = run(["cmake", "--build", str(build)], tmp_path, env, log)
    tail = out[out.rfind("$ (cd"):]
    assert "Building C object" in tail and "Building CXX object" not in tail
    assert "rounds = 5" in (build / ".clang-llm.toml").read_text()

    # No calls left: the generated file goes, so no stale section applies.
    (root / "src" / "CMakeLists.txt").write_text(SUB.format(settings=""))
    run(["cmake", str(build)], tmp_path, env, log)
    assert not (build / ".clang-llm.toml").exists()


def test_toolchain_default_wrappers_dir(tmp_path: Path) -> None:
    """Without CLANG_LLM_BIN_DIR the toolchain uses <repo>/wrappers, next to cmake/."""
    require_tools("cmake", "make", "clang-22", "clang++-22")
    wrappers = REPO / "wrappers"
    if not all(os.access(wrappers / n, os.X_OK) for n in ("clang-llm", "clang++-llm")):
        pytest.skip("wrappers/clang-llm launchers not in the tree")
    root, build, state, log = tmp_path / "p", tmp_path / "b", tmp_path / "state", tmp_path / "log"
    env = build_env(state, wrapper_bin_dir())
    _project(root, "")
    run(["cmake", "-S", str(root), "-B", str(build),
         f"-DCMAKE_TOOLCHAIN_FILE={CMAKE_DIR / 'clang-llm-toolchain.cmake'}"], tmp_path, env, log)
    run(["cmake", "--build", str(build)], tmp_path, env, log)
    assert Path(_compiler(build, "C")).resolve() == (wrappers / "clang-llm").resolve()
    assert len(records(state)) == 2
