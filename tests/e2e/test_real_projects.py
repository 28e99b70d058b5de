"""Real projects nobody here wrote, built with CC=clang-llm, judged by their own test suites.

Each project (tests/projects/) is built once per module in a temporary directory and its own
tests run; then the checks every project gets: one decision record per object file, every
record no larger than -Oz, the shipped objects exactly as large as their records say, and (for
a sample of TUs) no larger than what plain `clang-22 -Oz -c` gives on the same command line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .support import (
    CMAKE_DIR,
    ObjSizes,
    build_env,
    check_no_unexpected_fallbacks,
    check_one_record_per_object,
    check_records_not_larger,
    check_shipped_matches_record,
    check_shipped_not_larger_than_clang_oz,
    elf_sizes,
    extract,
    objects_under,
    records,
    require_tools,
    run,
    wrapper_bin_dir,
)

pytestmark = pytest.mark.slow


@dataclass
class Built:
    """One project built with the wrapper and tested: where everything is."""

    name: str
    root: Path  # extracted source tree
    build: Path  # where the objects are (the source tree, or CMake's binary dir)
    state: Path  # CLANG_LLM_DIR of the build
    log: Path
    objects: set[str]
    extra: dict[str, Any] = field(default_factory=dict)


def _build_lz4(base: Path, bin_dir: Path) -> Built:
    """Plain Makefiles. `-C programs lz4` compiles every library and program TU on its own
    (`-c x.c -o x.o`); `tests/` adds its own objects, then the test tools and scripts run."""
    require_tools("make", "clang-22")
    src = extract("lz4", base)
    state, log = base / "state", base / "build.log"
    env = build_env(state, bin_dir)
    make = ["make", "CC=clang-llm"]
    run([*make, "-j2", "-C", "programs", "lz4"], src, env, log)
    run([*make, "-j2", "-C", "tests", "datagen", "fuzzer", "frametest"], src, env, log)
    run([*make, "-C", "tests", "test-lz4-essentials"], src, env, log)
    run(["./fuzzer", "-s1", "-i200"], src / "tests", env, log)
    run(["./frametest", "-s1", "-i500"], src / "tests", env, log)
    return Built("lz4", src, src, state, log, objects_under(src))


JSONCPP_TUNED = "src/lib_json/json_writer.cpp"  # gets ROUNDS 3 via clang_llm_source_settings()


def _build_jsoncpp(base: Path, bin_dir: Path) -> Built:
    """CMake with our toolchain file; one source gets its own settings through ClangLLM.cmake,
    injected with CMAKE_PROJECT_INCLUDE so the upstream CMakeLists.txt stays untouched."""
    require_tools("cmake", "ctest", "make", "clang++-22")
    src = extract("jsoncpp", base)
    build = base / "build"
    state, log = base / "state", base / "build.log"
    env = build_env(state, bin_dir)
    tuned = src / JSONCPP_TUNED
    inc = base / "clang-llm-settings.cmake"
    inc.write_text(f'clang_llm_source_settings("{tuned}" ROUNDS 3)\n')
    run(["cmake", "-S", str(src), "-B", str(build),
         f"-DCMAKE_TOOLCHAIN_FILE={CMAKE_DIR / 'clang-llm-toolchain.cmake'}",
         f"-DCLANG_LLM_BIN_DIR={bin_dir}", f"-DCMAKE_PROJECT_INCLUDE={inc}",
         "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
         # one static library instead of the same three TUs built three times over
         "-DBUILD_SHARED_LIBS=OFF", "-DBUILD_STATIC_LIBS=ON", "-DBUILD_OBJECT_LIBS=OFF",
         "-DJSONCPP_WITH_POST_BUILD_UNITTEST=OFF", "-DJSONCPP_WITH_PKGCONFIG_SUPPORT=OFF",
         "-DJSONCPP_WITH_CMAKE_PACKAGE=OFF"], base, env, log)
    run(["cmake", "--build", str(build), "-j2"], base, env, log)
    # Serially: jsoncpp 1.9.5's two runjsontests.py drivers write the same test/data/*.actual
    # files, so `ctest -j2` races (3 runs in 3 fail), `-j1` never does.
    run(["ctest", "--output-on-failure", "-j1"], build, env, log)
    objects = objects_under(build, exclude=["CMakeScratch", "CMakeTmp"])
    return Built("jsoncpp", src, build, state, log, objects, {"tuned": str(tuned)})


def _build_gzip(base: Path, bin_dir: Path) -> Built:
    """Autotools with a shipped configure: ~200 compile probes go through the wrapper too."""
    require_tools("make", "clang-22")
    src = extract("gzip", base)
    state, log = base / "state", base / "build.log"
    env = build_env(state, bin_dir)
    run(["./configure", "CC=clang-llm"], src, env, log)
    run(["make", "-j2"], src, env, log)
    out = run(["make", "-j2", "check"], src, env, log)
    return Built("gzip", src, src, state, log, objects_under(src), {"check_output": out})


BUILDERS: dict[str, Callable[[Path, Path], Built]] = {
    "lz4": _build_lz4, "jsoncpp": _build_jsoncpp, "gzip": _build_gzip,
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    name: str = request.param
    base = tmp_path_factory.mktemp(name)
    yield BUILDERS[name](base, wrapper_bin_dir())
    shutil.rmtree(base, ignore_errors=True)  # these trees are large; keep tmp small on CI


# -- every project ------------------------------------------------------------------------------

def test_builds_and_own_tests_pass(built: Built) -> None:
    """The fixture already failed on any non-zero exit; here, what each suite says it ran."""
    text = built.log.read_text(errors="replace")
    if built.name == "gzip":
        assert "# FAIL:  0" in text and "# ERROR: 0" in text
    if built.name == "jsoncpp":
        assert "100% tests passed" in text
    assert built.objects


def test_one_record_per_object(built: Built) -> None:
    check_one_record_per_object(built.objects, built.state)


def test_records_never_larger_than_oz(built: Built) -> None:
    live = check_one_record_per_object(built.objects, built.state)
    check_records_not_larger(live)
    check_shipped_matches_record(live)


def test_shipped_objects_not_larger_than_plain_clang_oz(built: Built, tmp_path: Path) -> None:
    live = check_one_record_per_object(built.objects, built.state)
    compared = check_shipped_not_larger_than_clang_oz(live, tmp_path)
    assert compared
    _report_gain(built.name, compared)


def _report_gain(name: str, compared: list[tuple[str, ObjSizes, ObjSizes]]) -> None:
    """What the default settings gained on this project's objects against plain `clang-22 -Oz`
    (sums and per-object geomean), appended as one JSON line to $CLANG_LLM_E2E_REPORT if set."""
    path = os.environ.get("CLANG_LLM_E2E_REPORT")
    if not path:
        return
    with_text = [(s, c) for _, s, c in compared if c.text > 0]
    gm = math.exp(sum(math.log(s.text / c.text) for s, c in with_text) / len(with_text)) if with_text else 1.0
    row = {"project": name, "objects": len(compared), "text": sum(s.text for _, s, _ in compared),
           "clang_oz_text": sum(c.text for _, _, c in compared), "alloc": sum(s.alloc for _, s, _ in compared),
           "clang_oz_alloc": sum(c.alloc for _, _, c in compared), "text_gain_geomean": 1 - gm,
           "smaller": sum(1 for _, s, c in compared if s.text < c.text)}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def test_no_unexpected_fallbacks(built: Built) -> None:
    check_no_unexpected_fallbacks(built.state)


def test_depfiles_name_the_object(built: Built) -> None:
    """Automake's `-MT x.o -MD -MP -MF .deps/x.Tpo` (renamed to .Po) and CMake's depfiles must
    name the object a plain compile names, or incremental builds silently go stale."""
    checked = 0
    for obj, r in records(built.state).items():
        argv: list[str] = r["argv"]
        if "-MF" not in argv or "-o" not in argv or obj not in built.objects:
            continue
        mf = Path(r["cwd"]) / argv[argv.index("-MF") + 1]
        dep = mf if mf.exists() else mf.with_suffix(".Po")  # automake renames .Tpo to .Po
        assert dep.exists(), f"{obj}: no depfile {mf}"
        target = argv[argv.index("-MT") + 1] if "-MT" in argv else argv[argv.index("-o") + 1]
        first = dep.read_text(errors="replace").split(":", 1)[0].strip()
        assert first == target, f"{dep}: names {first!r}, expected {target!r}"
        checked += 1
    if built.name in ("gzip", "jsoncpp"):
        assert checked >= len(built.objects) // 2, f"only {checked} depfiles checked"


def test_configure_results_same_as_plain_clang(built: Built, tmp_path: Path) -> None:
    """Invariant 5 on ~200 real probes: configure with CC=clang-llm decides exactly what it
    decides with CC=clang-22 (config.h byte for byte)."""
    if built.name != "gzip":
        pytest.skip("autotools project only")
    src = extract("gzip", tmp_path)
    env = build_env(tmp_path / "state", wrapper_bin_dir())
    run(["./configure", "CC=clang-22"], src, env, tmp_path / "configure.log")
    ours = (built.root / "lib" / "config.h").read_text()
    plain = (src / "lib" / "config.h").read_text()
    assert ours == plain


# -- CMake: per-file settings without unknown flags ------------------------------------------------

def test_cmake_per_file_settings(built: Built) -> None:
    if built.name != "jsoncpp":
        pytest.skip("CMake project only")
    cc = (built.build / "compile_commands.json").read_text()
    assert "--llm" not in cc
    entries = json.loads(cc)
    assert any(e["file"] == built.extra["tuned"] for e in entries)
    toml = (built.build / ".clang-llm.toml").read_text()
    assert f'[files."{built.extra["tuned"]}"]' in toml
    assert "rounds = 3" in toml
    by_source = {r["source"]: r for r in records(built.state).values() if r["object"] in built.objects}
    assert by_source[built.extra["tuned"]]["settings"]["rounds"] == 3
    others = [r["settings"]["rounds"] for s, r in by_source.items() if s != built.extra["tuned"]]
    assert others and all(n == 1 for n in others)


# -- lz4 only: record mode and the multi-source compile ------------------------------------------

def test_lz4_record_mode(tmp_path: Path) -> None:
    """CLANG_LLM_RECORD=DIR: one JSON + one .bc per compiled TU, and each JSON's argv is a full
    clang command that regenerates its .bc byte for byte."""
    require_tools("make", "clang-22")
    src = extract("lz4", tmp_path)
    rec, state = tmp_path / "rec", tmp_path / "state"
    env = build_env(state, wrapper_bin_dir(), CLANG_LLM_RECORD=str(rec))
    run(["make", "CC=clang-llm", "-j2", "-C", "programs", "lz4"], src, env, tmp_path / "build.log")
    objects = objects_under(src)
    jsons = sorted(rec.glob("*.json"))
    assert len(jsons) == len(objects) == len(check_one_record_per_object(objects, state))
    metas = [json.loads(j.read_text()) for j in jsons]
    assert {m["output"] for m in metas} == objects
    for j, meta in zip(jsons, metas, strict=True):
        bc = j.with_suffix(".bc")
        assert bc.is_file(), bc
        assert meta["argv"][-1] == str(bc)
        original = bc.read_bytes()
        bc.unlink()
        proc = subprocess.run(meta["argv"], cwd=meta["cwd"], capture_output=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
        assert bc.read_bytes() == original, f"{j.name}: rerunning argv gave different bitcode"


def test_lz4_library_multi_source_compile_is_optimized(tmp_path: Path) -> None:
    """lz4's lib/Makefile compiles the library as `$(CC) -O3 ... -c lz4.c lz4file.c ...`: every
    object it ships should still be no larger than clang -Oz's."""
    require_tools("make", "clang-22")
    src = extract("lz4", tmp_path)
    state = tmp_path / "state"
    env = build_env(state, wrapper_bin_dir())
    run(["make", "CC=clang-llm", "-j2", "-C", "lib", "liblz4.a"], src, env, tmp_path / "build.log")
    lib = src / "lib"
    objects = objects_under(lib)
    sources = sorted(str(Path(o).with_suffix(".c").name) for o in objects)
    ref = tmp_path / "ref"
    ref.mkdir()
    subprocess.run(["clang-22", "-O3", "-DXXH_NAMESPACE=LZ4_", "-Oz", "-c",
                    *[str(lib / s) for s in sources]], cwd=ref, check=True)
    larger = [o for o in objects if not elf_sizes(Path(o)).fits_in(elf_sizes(ref / Path(o).name))]
    assert not larger, f"larger than clang -Oz: {larger}"
    check_one_record_per_object(objects, state)


def test_some_tu_ships_a_list_other_than_oz(built: Built) -> None:
    """The size checks above must see real candidates, not only -Oz objects: with the shipped
    model and default settings at least one TU of every project ships a list that beat -Oz."""
    from .support import chose_oz

    live = check_one_record_per_object(built.objects, built.state)
    winners = {o: r["chosen"]["pass_list"] for o, r in live.items() if not chose_oz(r)}
    assert winners, f"{built.name}: all {len(live)} TUs shipped -Oz"
