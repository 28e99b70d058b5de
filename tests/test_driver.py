"""The wrapper against the real clang-22: byte-identical passthrough, the -Oz control case, depfiles."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_CXX, run_clang, run_wrapper

from clang_llm.db import Database

FLAG_SETS = [[], ["-g"], ["-fPIC", "-O2"], ["-ffunction-sections", "-fdata-sections", "-O0"],
             ["-march=x86-64-v3", "-DNDEBUG", "-I."]]


@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: " ".join(f) or "plain")
def test_oz_control_case_is_byte_identical(state: Path, src: Path, flags: list[str]) -> None:
    """With clang's own -Oz pipeline as the only candidate, the object is clang -Oz -c's, byte for byte."""
    cwd = src.parent
    w = run_wrapper([*flags, "-c", src.name, "-o", "w.o"], cwd)
    assert w.returncode == 0, w.stderr
    r = run_clang([*flags, "-Oz", "-c", src.name, "-o", "r.o"], cwd)
    assert r.returncode == 0
    assert (cwd / "w.o").read_bytes() == (cwd / "r.o").read_bytes()
    rec = Database(state).get_record(str(cwd / "w.o"))
    assert rec is not None and rec.chosen.pass_list == "Oz"
    assert rec.chosen.sizes == rec.oz.sizes


def test_cxx_control_case(state: Path, tmp_path: Path) -> None:
    (tmp_path / "s.cpp").write_text(SAMPLE_CXX)
    w = run_wrapper(["-std=c++17", "-fPIC", "-c", "s.cpp", "-o", "w.o"], tmp_path, cxx=True)
    assert w.returncode == 0, w.stderr
    run_clang(["-std=c++17", "-fPIC", "-Oz", "-c", "s.cpp", "-o", "r.o"], tmp_path, cxx=True)
    assert (tmp_path / "w.o").read_bytes() == (tmp_path / "r.o").read_bytes()


@pytest.mark.parametrize("args", [["--version"], ["-v"], ["-dumpmachine"], ["-print-search-dirs"],
                                  ["-E", "prog.c"], ["-E", "-dM", "-x", "c", "/dev/null"]])
def test_info_and_preprocess_are_byte_identical(state: Path, src: Path, args: list[str]) -> None:
    w = run_wrapper([*args, "--llm-rounds=2"], src.parent)
    r = run_clang(args, src.parent)
    assert (w.returncode, w.stdout, w.stderr) == (r.returncode, r.stdout, r.stderr)


def test_link_is_byte_identical(state: Path, src: Path) -> None:
    cwd = src.parent
    w = run_wrapper(["-Oz", "prog.c", "-o", "w.out"], cwd)
    r = run_clang(["-Oz", "prog.c", "-o", "r.out"], cwd)
    assert w.returncode == r.returncode == 0
    assert (cwd / "w.out").read_bytes() == (cwd / "r.out").read_bytes()
    kinds = Database(state).event_counts()
    assert ("passthrough", "link", 1) in kinds


def test_depfiles_match_plain_clang(state: Path, src: Path) -> None:
    cwd = src.parent
    (cwd / "obj").mkdir()
    for dep in (["-MD"], ["-MMD", "-MP"], ["-MD", "-MF", "obj/custom.d"], ["-MMD", "-MT", "tgt", "-MF", "obj/t.d"]):
        run_clang([*dep, "-Oz", "-c", "prog.c", "-o", "obj/prog.o"], cwd)
        depname = next((dep[i + 1] for i, a in enumerate(dep) if a == "-MF"), "obj/prog.d")
        ref = (cwd / depname).read_bytes()
        (cwd / depname).unlink()
        w = run_wrapper([*dep, "-c", "prog.c", "-o", "obj/prog.o"], cwd)
        assert w.returncode == 0, w.stderr
        assert (cwd / depname).read_bytes() == ref, dep


def test_diagnostics_and_errors_are_clangs(state: Path, tmp_path: Path) -> None:
    (tmp_path / "warn.c").write_text("int f(int x) { int unused; return x; }\n")
    w = run_wrapper(["-Wall", "-c", "warn.c", "-o", "w.o"], tmp_path)
    r = run_clang(["-Wall", "-Oz", "-c", "warn.c", "-o", "r.o"], tmp_path)
    assert w.returncode == 0 and w.stderr == r.stderr and b"unused" in w.stderr
    (tmp_path / "bad.c").write_text("int f( { return 1 }\n")
    w = run_wrapper(["-c", "bad.c", "-o", "bad.o", "--llm-rounds=3"], tmp_path)
    r = run_clang(["-Oz", "-c", "bad.c", "-o", "bad.o"], tmp_path)
    assert (w.returncode, w.stdout, w.stderr) == (r.returncode, r.stdout, r.stderr)
    assert w.returncode != 0 and not (tmp_path / "bad.o").exists()


def _spy_clang(tmp_path: Path) -> Path:
    """A fake clang that logs its argv then runs the real one: proves what reaches clang."""
    log = tmp_path / "argv.log"
    spy = tmp_path / "spy-clang"
    spy.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec clang-22 "$@"\n')
    spy.chmod(spy.stat().st_mode | stat.S_IEXEC)
    return spy


@pytest.mark.parametrize("extra_env", [{}, {"CLANG_LLM_OPT": "/nonexistent/opt"}, {"CLANG_LLM_DISABLE": "1"}],
                         ids=["normal", "fallback", "disabled"])
def test_no_llm_flag_ever_reaches_clang(state: Path, src: Path, tmp_path: Path, extra_env: dict[str, str]) -> None:
    spy = _spy_clang(tmp_path)
    env = {**os.environ, "CLANG_LLM_CLANG": str(spy), **extra_env}
    for args in (["-c", "prog.c", "-o", "x.o"], ["prog.c", "-o", "x"], ["--version"]):
        w = run_wrapper([*args, "--llm-rounds=3", "--llm-samples=2", "--llm-off"], src.parent, env=env)
        assert w.returncode == 0, w.stderr
    logged = (tmp_path / "argv.log").read_text()
    assert logged and "--llm" not in logged


def test_kill_switch_builds_plain_clang_objects(state: Path, src: Path) -> None:
    env = {**os.environ, "CLANG_LLM_DISABLE": "1"}
    w = run_wrapper(["-Oz", "-g", "-c", "prog.c", "-o", "w.o"], src.parent, env=env)
    r = run_clang(["-Oz", "-g", "-c", "prog.c", "-o", "r.o"], src.parent)
    assert w.returncode == r.returncode == 0
    assert (src.parent / "w.o").read_bytes() == (src.parent / "r.o").read_bytes()
    assert not (state / "clang-llm.sqlite").exists()  # the kill switch touches nothing


def test_launcher_form_and_response_file(state: Path, src: Path) -> None:
    cwd = src.parent
    (cwd / "args.rsp").write_text("-c prog.c -o w.o --llm-rounds=2\n")
    w = run_wrapper(["clang-22", "@args.rsp"], cwd)
    assert w.returncode == 0, w.stderr
    run_clang(["-Oz", "-c", "prog.c", "-o", "r.o"], cwd)
    assert (cwd / "w.o").read_bytes() == (cwd / "r.o").read_bytes()
    rec = Database(state).get_record(str(cwd / "w.o"))
    assert rec is not None and rec.settings["rounds"] == 2


def test_o0_policy(state: Path, src: Path, tmp_path: Path) -> None:
    cwd = src.parent
    run_wrapper(["-O0", "-c", "prog.c", "-o", "a.o"], cwd)
    run_clang(["-O0", "-Oz", "-c", "prog.c", "-o", "r.o"], cwd)
    assert (cwd / "a.o").read_bytes() == (cwd / "r.o").read_bytes()  # default: size-optimized anyway
    (cwd / ".clang-llm.toml").write_text("optimize_o0 = false\n")
    run_wrapper(["-O0", "-c", "prog.c", "-o", "b.o"], cwd)
    run_clang(["-O0", "-c", "prog.c", "-o", "r0.o"], cwd)
    assert (cwd / "b.o").read_bytes() == (cwd / "r0.o").read_bytes()
    assert ("passthrough", "O0-untouched", 1) in Database(state).event_counts()


def test_multi_source_compile_is_split_per_tu(state: Path, src: Path) -> None:
    """`cc -c a.c b.c` (a common Makefile pattern) optimizes each TU like a single compile."""
    cwd = src.parent
    (cwd / "second.c").write_text("int twice(int x) { return 2 * x; }\n")
    w = run_wrapper(["-MD", "-O3", "-c", "prog.c", "second.c", "--llm-rounds=2"], cwd)
    assert w.returncode == 0, w.stderr
    ours = {n: (cwd / n).read_bytes() for n in ("prog.o", "second.o", "prog.d", "second.d")}
    assert run_clang(["-MD", "-O3", "-Oz", "-c", "prog.c", "second.c"], cwd).returncode == 0
    assert ours == {n: (cwd / n).read_bytes() for n in ours}
    recs = {Path(r.object).name: r for r in Database(state).all_records()}
    assert set(recs) == {"prog.o", "second.o"} and recs["second.o"].settings["rounds"] == 2


def test_per_file_settings_match_normalized_paths(state: Path, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "prog").mkdir()
    (tmp_path / "lib" / "a.c").write_text("int f(int x) { return x + 1; }\n")
    (tmp_path / ".clang-llm.toml").write_text(f'[files."{tmp_path / "lib" / "a.c"}"]\nrounds = 3\n')
    assert run_wrapper(["-c", "../lib/a.c", "-o", "a.o"], tmp_path / "prog").returncode == 0
    rec = Database(state).get_record(str(tmp_path / "prog" / "a.o"))
    assert rec is not None and rec.settings["rounds"] == 3


def test_llm_off_is_clangs_oz_in_one_run(state: Path, src: Path) -> None:
    """--llm-off (no recording): clang builds the TU at -Oz directly — same object, same depfile —
    and it is still counted and explained."""
    w = run_wrapper(["-c", src.name, "-o", "out.o", "-MD", "--llm-off"], src.parent)
    assert w.returncode == 0 and w.stderr == b""
    r = run_clang(["-c", src.name, "-o", "ref.o", "-MD", "-MF", "ref.d", "-MT", "out.o", "-Oz"], src.parent)
    assert r.returncode == 0
    assert (src.parent / "out.o").read_bytes() == (src.parent / "ref.o").read_bytes()
    assert (src.parent / "out.d").read_bytes() == (src.parent / "ref.d").read_bytes()
    assert {f"{k}:{r}": n for k, r, n in Database(state).event_counts()} == {"oz:llm-off": 1}
    tool = Path(sys.executable).parent / "clang-llm-tool"
    explained = subprocess.run([str(tool), "explain", str(src.parent / "out.o")],
                               capture_output=True, text=True, check=False)
    assert explained.returncode == 0 and "llm-off" in explained.stdout, explained.stderr


def test_tiny_tu_skips_the_model(state: Path, tmp_path: Path) -> None:
    """Below `min_instructions` (configure probes, stubs) the model is not asked; -Oz ships, byte
    for byte clang's; with the threshold at 0 the same TU goes to the model."""
    from clang_llm.optimizer.factory import default_model_dir

    (tmp_path / "probe.c").write_text("int main(void) { return 0; }\n")
    env = {**os.environ, "CLANG_LLM_MODEL": str(default_model_dir())}
    assert run_wrapper(["-c", "probe.c", "-o", "p.o"], tmp_path, env=env).returncode == 0
    assert run_clang(["-Oz", "-c", "probe.c", "-o", "ref.o"], tmp_path).returncode == 0
    assert (tmp_path / "p.o").read_bytes() == (tmp_path / "ref.o").read_bytes()
    (rec,) = Database(state).all_records()
    assert rec.reason == "too-small" and rec.model_calls == 0
    env["CLANG_LLM_MIN_INSTRUCTIONS"] = "0"
    assert run_wrapper(["-c", "probe.c", "-o", "q.o"], tmp_path, env=env).returncode == 0
    by_obj = {r.object: r for r in Database(state).all_records()}
    assert by_obj[str(tmp_path / "q.o")].model_calls >= 1


@pytest.mark.parametrize("speculate", [True, False], ids=["speculative", "serial"])
def test_small_source_runs_plain_clang_beside_the_ir_step(state: Path, tmp_path: Path, speculate: bool) -> None:
    """A small source with a machine slot idle: plain `clang -Oz -c` (the user's command) runs
    beside the IR step. A tiny TU ships that run's object (no second compile from IR), and a
    compile error is reported from it (not rerun after the IR step); both byte for byte clang's."""
    log = tmp_path / "calls"
    logging_clang = tmp_path / "logging-clang"
    logging_clang.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec clang-22 "$@"\n')
    logging_clang.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if k != "MAKEFLAGS"}, "CLANG_LLM_CLANG": str(logging_clang),
           "CLANG_LLM_SPECULATE_BYTES": "8192" if speculate else "0"}  # not under a parallel make
    (tmp_path / "probe.c").write_text("int main(void) { return 0; }\n")
    assert run_wrapper(["-c", "probe.c", "-o", "p.o"], tmp_path, env=env).returncode == 0
    assert run_clang(["-Oz", "-c", "probe.c", "-o", "ref.o"], tmp_path).returncode == 0
    assert (tmp_path / "p.o").read_bytes() == (tmp_path / "ref.o").read_bytes()
    calls = log.read_text().splitlines()
    (rec,) = Database(state).all_records()
    assert rec.reason == "too-small" and rec.speculative is speculate
    assert len(calls) == 2
    # the user's command at -Oz, into the work dir
    assert any(c.startswith("-c probe.c -Oz") and c.endswith("/plain-oz.o") for c in calls) is speculate
    assert any("-x ir" in c for c in calls) is not speculate  # else: -Oz from the IR
    log.unlink()
    (tmp_path / "bad.c").write_text("int f( { return }\n")
    got = run_wrapper(["-c", "bad.c", "-o", "bad.o"], tmp_path, env=env)
    want = run_clang(["-Oz", "-c", "bad.c", "-o", "bad.o"], tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and sum("-emit-llvm" in c for c in calls) == 1  # the IR step, plain clang once


def test_a_stored_object_ships_without_waiting_for_the_speculative_run(state: Path, tmp_path: Path,
                                                                        winner: Path) -> None:
    """A small source the model wins, compiled twice with the decision cache: the second compile
    ships the stored object while plain clang's speculative run (slowed here to 20 s) is stopped,
    not waited for, and the depfile is still the one plain clang writes (the IR step writes it)."""
    import time

    log = tmp_path / "calls"
    slow_clang = tmp_path / "slow-clang"
    slow = tmp_path / "slow-now"  # the same compiler both times (it is part of the cache key)
    slow_clang.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                          f'case "$*" in *plain-oz.o*) [ -e {slow} ] && sleep 20;; esac\nexec clang-22 "$@"\n')
    slow_clang.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if k != "MAKEFLAGS"}, "CLANG_LLM_SPECULATE_BYTES": "65536",
           "CLANG_LLM_CLANG": str(slow_clang)}
    cwd = winner.parent
    assert run_wrapper(["-c", winner.name, "-o", "first.o", "-MD"], cwd, env=env).returncode == 0
    slow.touch()
    log.unlink()
    t0 = time.monotonic()
    r = run_wrapper(["-c", winner.name, "-o", "again.o", "-MD"], cwd, env=env)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert any("plain-oz.o" in c for c in log.read_text().splitlines())  # it was started ...
    assert took < 15, took  # ... and not waited for
    by_obj = {Path(x.object).name: x for x in Database(state).all_records()}
    assert by_obj["again.o"].cache_hit and by_obj["again.o"].speculative
    assert (cwd / "again.o").read_bytes() == (cwd / "first.o").read_bytes()
    assert run_clang(["-Oz", "-c", winner.name, "-o", "again.o", "-MD", "-MF", "want.d"], cwd).returncode == 0
    assert (cwd / "again.d").read_text() == (cwd / "want.d").read_text()
