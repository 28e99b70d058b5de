"""Settings precedence level by level, and the command-line tools as a user runs them:
`clang-llm-tool stats|config|cache`, `opt-llm`, and the `wrappers/install-symlinks` masquerade."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import llvmlite.binding as llvm
import pytest
from conftest import CLANG, ROOT, run_clang, run_wrapper
from measure import instructions, text_and_alloc

from clang_llm.config import PROJECT_FILE, load_settings
from clang_llm.db import Database
from clang_llm.optimizer.factory import default_model_dir

OPT = "opt-22"
pytestmark = pytest.mark.skipif(shutil.which(CLANG) is None or shutil.which(OPT) is None,
                                reason="needs clang-22 and opt-22")
BIN = Path(sys.executable).parent  # the venv's console scripts (pyproject.toml [project.scripts])


def tool(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`clang-llm-tool ARGS` through its installed entry point; wide enough that tables never wrap."""
    return subprocess.run([str(BIN / "clang-llm-tool"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "400", **(env or {})}, timeout=120)


def user_file() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "clang-llm" / "config.toml"


elf_sizes = text_and_alloc
count_instructions = instructions


def record(state: Path, obj: Path) -> dict[str, Any]:
    rec = Database(state).get_record(str(obj))
    assert rec is not None, f"no decision record for {obj}: the compile did not go through the wrapper"
    return rec


# --------------------------------------------------------------------------- settings precedence


@pytest.fixture
def layered(state: Path, tmp_path: Path, src: Path) -> tuple[Path, Path]:
    """`rounds` set at every file level: user file 2, project-wide 3, per-file section 4.
    Returns (project dir/src, project file); prog.c sits in src/ below the project file."""
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    shutil.copy(src, proj / "src" / "prog.c")
    pf = proj / PROJECT_FILE
    pf.write_text('rounds = 3\n\n[files."src/*.c"]\nrounds = 4\n')
    user_file().parent.mkdir(parents=True)
    user_file().write_text("rounds = 2\n")
    return proj / "src", pf


def _peel(pf: Path) -> list[tuple[dict[str, str], dict[str, str], Any, int, str]]:
    """(flags, env, what to remove first, expected rounds, expected provenance), top level first."""
    return [
        ({"rounds": "6"}, {"CLANG_LLM_ROUNDS": "5"}, None, 6, "command line"),
        ({}, {"CLANG_LLM_ROUNDS": "5"}, None, 5, "environment"),
        ({}, {}, None, 4, f"project file {pf} [files.'src/*.c']"),
        ({}, {}, lambda: pf.write_text("rounds = 3\n"), 3, f"project file {pf}"),
        ({}, {}, pf.unlink, 2, f"user file {user_file()}"),
        ({}, {}, lambda: user_file().unlink(), 1, "default"),
    ]


def test_settings_precedence_one_key_at_every_level(layered: tuple[Path, Path]) -> None:
    cwd, pf = layered
    for flags, env, remove, rounds, source in _peel(pf):
        if remove is not None:
            remove()
        problems: list[str] = []
        s = load_settings(flags, env=env, cwd=cwd, source_file=Path("prog.c"), problems=problems)
        assert (s.rounds, s.sources["rounds"]) == (rounds, source)
        assert s.sources["samples"] == "default" and problems == []


def test_wrapper_applies_the_same_precedence(state: Path, layered: tuple[Path, Path]) -> None:
    """The same peel through the real wrapper: --llm-rounds on its command line, CLANG_LLM_ROUNDS in its
    environment, the project file found above the source's directory; the record shows what won."""
    cwd, pf = layered
    for i, (flags, env, remove, rounds, _) in enumerate(_peel(pf)):
        if remove is not None:
            remove()
        args = [f"--llm-{k}={v}" for k, v in flags.items()]
        w = run_wrapper([*args, "-c", "prog.c", "-o", f"w{i}.o"], cwd, env={**os.environ, **env})
        assert w.returncode == 0, w.stderr
        assert record(state, cwd / f"w{i}.o").settings["rounds"] == rounds


# --------------------------------------------------------------------------- clang-llm-tool


def test_stats_counts_the_compiles_that_ran(state: Path, src: Path, winner: Path) -> None:
    """Sizes in `stats` are the shipped objects' and clang -Oz's, measured here independently:
    one TU the model wins (base64.c), one it cannot (prog.c), a link and a preprocess."""
    cwd = src.parent
    shutil.copy(winner, cwd / "base64.c")
    shutil.copy(winner.parent / "textkit.h", cwd / "textkit.h")
    for args in (["-c", "prog.c", "-o", "a.o"], ["-c", "base64.c", "-o", "b.o"], ["prog.c", "-o", "prog"],
                 ["-E", "prog.c", "-o", "prog.i"]):
        assert run_wrapper(args, cwd).returncode == 0
    shipped = [elf_sizes(cwd / o) for o in ("a.o", "b.o")]
    for s_, o in (("prog.c", "ra.o"), ("base64.c", "rb.o")):
        assert run_clang(["-Oz", "-c", s_, "-o", o], cwd).returncode == 0
    oz = [elf_sizes(cwd / o) for o in ("ra.o", "rb.o")]
    text, alloc = sum(t for t, _ in shipped), sum(a for _, a in shipped)
    oz_text, oz_alloc = sum(t for t, _ in oz), sum(a for _, a in oz)
    assert text < oz_text  # base64.c's object is smaller than clang's

    r = tool("stats", "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["calls"] == 4 and data["by_kind"] == {"optimized": 1, "oz": 1, "passthrough": 2}
    assert sorted(data["reasons"], key=lambda x: (x["kind"], x["reason"])) == [
        {"kind": "optimized", "reason": "beats-oz", "count": 1},
        {"kind": "oz", "reason": "no-candidate-beat-oz", "count": 1},
        {"kind": "passthrough", "reason": "link", "count": 1},
        {"kind": "passthrough", "reason": "preprocess", "count": 1},
    ]
    assert data["optimized_rate"] == 0.5
    s = data["sizes"]
    assert (s["tus"], s["text"], s["oz_text"], s["alloc"], s["oz_alloc"]) == (2, text, oz_text, alloc, oz_alloc)
    assert data["text_vs_oz"] == text / oz_text and data["alloc_vs_oz"] == alloc / oz_alloc
    assert (s["cache_hits"], s["model_calls"]) == (0, 2) and data["cache"] == {"entries": 2, "hits": 0}
    recs = [record(state, cwd / o) for o in ("a.o", "b.o")]
    assert s["count"] == sum(rec.chosen.count_after for rec in recs)
    assert s["oz_count"] == sum(rec.oz.count_after for rec in recs)
    # opt runs per TU count the baseline, every candidate, each other base pipeline the lists
    # continue from (once), and the winner's verified rerun
    won = recs[1]
    screened = next(c.finding for r in won.rounds for c in r.candidates if c.pass_list == won.chosen.pass_list)
    bases = {c.pass_list.split()[0] for r in won.rounds for c in r.candidates
             if c.pass_list.split()[0] in ("Os", "O1", "O2") and len(c.pass_list.split()) > 1}
    assert won.opt_evaluations == (1 + sum(r.opt_evaluations for r in won.rounds) + len(bases)
                                   + (0 if screened.verified else 1))
    runs = [rec.opt_evaluations for rec in recs]
    assert (data["cost"]["opt_evals_mean"], data["cost"]["opt_evals_max"]) == (round(sum(runs) / 2, 2), max(runs))
    cost = data["cost"]
    assert cost["total_s"] == pytest.approx(sum(rec.timing.total_s for rec in recs), abs=0.01)
    assert 0 < cost["frontend_s"] < cost["total_s"] and 0 < cost["oz_s"] and 0 < cost["candidates_s"]
    assert (cost["verify_s"] > 0) == (not screened.verified)

    r = tool("stats", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert re.search(r"│ optimized +│ beats-oz +│ 1 +│ 25\.0% +│", r.stdout), r.stdout
    assert "TUs compiled through the wrapper: 2; beat -Oz: 1 (50.0%); cache hits: 0 (0.0%)" in r.stdout
    assert f".text: {text} vs -Oz {oz_text} ({100.0 * (text - oz_text) / oz_text:+.2f}%)" in r.stdout
    assert f"mean {data['cost']['opt_evals_mean']}, max {data['cost']['opt_evals_max']}" in r.stdout
    assert f"verified rerun {cost['verify_s']:.2f}" in r.stdout

    assert "statistics zeroed" in tool("stats", "--zero", cwd=cwd).stdout
    assert json.loads(tool("stats", "--json", cwd=cwd).stdout)["calls"] == 0


def test_config_shows_values_and_where_they_come_from(state: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    pf = proj / PROJECT_FILE
    pf.write_text('samples = 3\n\n[files."prog.c"]\nsamples = 5\n')
    user_file().parent.mkdir(parents=True)
    user_file().write_text("seed = 7\njobs = 0\n")  # jobs = 0 is invalid: reported, the default stays
    env = {"CLANG_LLM_FEEDBACK": "long"}
    expect = {
        "samples": {"value": 3, "source": f"project file {pf}"},
        "feedback": {"value": "long", "source": "environment"},
        "seed": {"value": 7, "source": f"user file {user_file()}"},
        "jobs": {"value": 2, "source": "default"},
        "rounds": {"value": 1, "source": "default"},
    }
    r = tool("config", "--json", cwd=proj, env=env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {k: rows[k] for k in expect} == expect
    per_file = json.loads(tool("config", "--json", "--source", "prog.c", cwd=proj, env=env).stdout)
    assert per_file["samples"] == {"value": 5, "source": f"project file {pf} [files.'prog.c']"}

    r = tool("config", cwd=proj, env=env)
    assert r.returncode == 0, r.stderr
    for name, row in expect.items():
        line = rf"│ {name} +│ {re.escape(repr(row['value']))} +│ {re.escape(str(row['source']))} +│"
        assert re.search(line, r.stdout), (name, r.stdout)
    assert re.search(r"problem:.*jobs: jobs must be 1\.\.64", r.stdout), r.stdout


def test_cache_clear_drops_every_decision(state: Path, src: Path) -> None:
    cwd = src.parent
    model = f"--llm-model={default_model_dir()}"  # the packaged model: decisions get cached
    for obj in ("a.o", "b.o"):
        assert run_wrapper([model, "-c", "prog.c", "-o", obj], cwd).returncode == 0
    assert [record(state, cwd / o).cache_hit for o in ("a.o", "b.o")] == [False, True]

    shown = tool("cache", cwd=cwd)
    assert shown.returncode == 0 and "1 cached decisions, 1 hits" in shown.stdout, shown.stdout + shown.stderr
    cleared = tool("cache", "--clear", cwd=cwd)
    assert cleared.returncode == 0 and "removed 1 cached decisions" in cleared.stdout, cleared.stdout
    assert Database(state).cache_stats() == {"entries": 0, "hits": 0}
    assert "0 cached decisions" in tool("cache", cwd=cwd).stdout
    assert run_wrapper([model, "-c", "prog.c", "-o", "c.o"], cwd).returncode == 0
    assert record(state, cwd / "c.o").cache_hit is False  # decided afresh, not replayed


# --------------------------------------------------------------------------- opt-llm


def test_opt_llm_writes_verified_optimized_ir(state: Path, src: Path) -> None:
    cwd = src.parent
    subprocess.run([CLANG, "-Oz", "-Xclang", "-disable-llvm-passes", "-S", "-emit-llvm", "prog.c", "-o", "in.ll"],
                   cwd=cwd, check=True)
    r = subprocess.run([str(BIN / "opt-llm"), "in.ll", "-o", "out.ll"], cwd=cwd, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = cwd / "out.ll"
    assert out.read_text().startswith("; ModuleID")  # textual IR for a .ll output
    v = subprocess.run([OPT, "-passes=verify", "-disable-output", str(out)], capture_output=True)
    assert v.returncode == 0, v.stderr
    assert count_instructions(out) < count_instructions(cwd / "in.ll")  # optimized, not copied
    defined = {fn.name for fn in llvm.parse_assembly(out.read_text()).functions if not fn.is_declaration}
    assert {"foo", "main"} <= defined
    assert "falls back" not in (state / "clang-llm.log").read_text()  # the optimizer path, not the fallback

    r = subprocess.run([str(BIN / "opt-llm"), "in.ll", "-o", "out.bc"], cwd=cwd, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (cwd / "out.bc").read_bytes()[:4] == b"BC\xc0\xde"  # bitcode otherwise
    assert subprocess.run([OPT, "-passes=verify", "-disable-output", str(cwd / "out.bc")]).returncode == 0


# --------------------------------------------------------------------------- masquerade symlinks


def test_install_symlinks_masquerade(state: Path, src: Path, tmp_path: Path) -> None:
    links = tmp_path / "bin"
    r = subprocess.run([str(ROOT / "wrappers" / "install-symlinks"), str(links)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name, target in (("clang", "clang-llm"), ("cc", "clang-llm"), ("clang++", "clang++-llm"),
                         ("c++", "clang++-llm")):
        assert (links / name).is_symlink() and (links / name).resolve() == ROOT / "wrappers" / target, name
    env = {**os.environ, "CLANG_LLM_PYTHON": sys.executable}  # the launchers run this interpreter

    cwd = src.parent
    w = subprocess.run([str(links / "cc"), "-c", "prog.c", "-o", "cc.o"], cwd=cwd, capture_output=True, env=env)
    assert w.returncode == 0, w.stderr
    assert record(state, cwd / "cc.o").chosen.pass_list == "Oz"  # through clang-llm (no model here)
    assert run_clang(["-Oz", "-c", "prog.c", "-o", "ref.o"], cwd).returncode == 0
    assert (cwd / "cc.o").read_bytes() == (cwd / "ref.o").read_bytes()

    # C++ through c++: compiled by clang-llm's C++ driver and linked with the C++ runtime (operator new).
    (cwd / "n.cpp").write_text("int main() { int *p = new int(3); int r = *p - 3; delete p; return r; }\n")
    w = subprocess.run([str(links / "c++"), "-c", "n.cpp", "-o", "n.o"], cwd=cwd, capture_output=True, env=env)
    assert w.returncode == 0, w.stderr
    assert record(state, cwd / "n.o").source == str(cwd / "n.cpp")
    w = subprocess.run([str(links / "c++"), "n.o", "-o", "n"], cwd=cwd, capture_output=True, env=env)
    assert w.returncode == 0, w.stderr
    assert subprocess.run([str(cwd / "n")]).returncode == 0
    assert ("passthrough", "link", 1) in Database(state).event_counts()


def test_an_effort_level_sets_what_no_layer_set_and_an_explicit_value_wins(tmp_path: Path) -> None:
    """`effort` gives rank, stop, samples and rounds their level's values; a rank set in the
    environment (or anywhere) overrides the level's; a level that does not exist is a problem,
    not a failure (the default level stays)."""
    from clang_llm.config import DEFAULT_EFFORT, EFFORT_LEVELS

    top = max(EFFORT_LEVELS)
    s = load_settings({"effort": str(top)}, env={}, cwd=tmp_path)
    assert (s.rank, s.stop, s.samples, s.rounds) == (EFFORT_LEVELS[top].rank, EFFORT_LEVELS[top].stop,
                                                     EFFORT_LEVELS[top].samples, EFFORT_LEVELS[top].rounds)
    assert s.sources["rank"] == f"effort {top}"
    s = load_settings({"effort": "1"}, env={"CLANG_LLM_RANK": "9"}, cwd=tmp_path)
    assert (s.rank, s.stop) == (9, EFFORT_LEVELS[1].stop) and s.sources["rank"] == "environment"
    problems: list[str] = []
    s = load_settings({"effort": "99"}, env={}, cwd=tmp_path, problems=problems)
    assert s.effort == DEFAULT_EFFORT and s.rank == EFFORT_LEVELS[DEFAULT_EFFORT].rank
    assert any("effort" in p for p in problems)
    d = load_settings(env={}, cwd=tmp_path)
    assert (d.rank, d.stop) == (EFFORT_LEVELS[DEFAULT_EFFORT].rank, EFFORT_LEVELS[DEFAULT_EFFORT].stop)
    assert d.sources["rank"] == "default"
