"""Fault injection: every failure ends with clang -Oz's object (or clang's own error), a counted
reason, and no stray or half-written files."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_clang, run_wrapper, wrapper_cmd

from clang_llm.clang_args import classify
from clang_llm.config import Settings
from clang_llm.db import Database
from clang_llm.driver.pipeline import compile_tu
from clang_llm.objsize import Sizes
from clang_llm.optimizer.base import Decision, TUContext, select_best
from clang_llm.passes import parse_pass_list
from clang_llm.records import Event, Finding
from clang_llm.toolchain import Toolchain


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _reference(src: Path) -> bytes:
    assert run_clang(["-Oz", "-c", src.name, "-o", "ref.o"], src.parent).returncode == 0
    return (src.parent / "ref.o").read_bytes()


def _no_strays(d: Path) -> None:
    names = sorted(p.name for p in d.iterdir())
    assert not [n for n in names if "tmp" in n or n.endswith((".bc", ".ll"))], names


def _reasons(state: Path) -> dict[str, int]:
    return {f"{k}:{r}": n for k, r, n in Database(state).event_counts()}


@pytest.mark.parametrize(
    ("opt_body", "reason", "env"),
    [
        (None, "fallback:tool-missing", {"CLANG_LLM_OPT": "/nonexistent/opt-22"}),
        ('kill -SEGV $$', "fallback:oz-opt-crash", {}),
        ('echo "opt: boom" >&2; exit 3', "fallback:oz-opt-error", {}),
        ('sleep 30', "fallback:oz-timeout", {"CLANG_LLM_OPT_TIMEOUT": "1"}),
        ('exec opt-22 "$@" ; ', None, {}),  # a working opt through a script: no fallback
    ],
    ids=["missing", "crash", "error", "hang", "healthy"],
)
def test_opt_faults_fall_back_to_plain_oz(state: Path, src: Path, tmp_path: Path, opt_body: str | None,
                                          reason: str | None, env: dict[str, str]) -> None:
    full_env = {**os.environ, **env}
    if opt_body is not None:
        full_env["CLANG_LLM_OPT"] = str(_script(tmp_path / "fake-opt", opt_body))
    # A hang guard, not a speed assert: a wrapper that waited on the hung opt would time out here.
    w = run_wrapper(["-c", src.name, "-o", "out.o"], src.parent, env=full_env, timeout=120)
    assert w.returncode == 0 and w.stderr == b"", w.stderr
    assert (src.parent / "out.o").read_bytes() == _reference(src)
    reasons = _reasons(state)
    if reason:
        assert reasons.get(reason) == 1, reasons
    else:
        assert not any(k.startswith("fallback") for k in reasons), reasons
    _no_strays(src.parent)
    assert not (state / "tmp").exists() or not list((state / "tmp").iterdir())


def _tu(src: Path, state: Path, factory: object) -> bytes:
    os.chdir(src.parent)
    inv = classify(["-c", src.name, "-o", "out.o"])
    settings = Settings(dir=str(state))
    db = Database(state)
    outcome = compile_tu(inv, settings, Toolchain.discover(), False, db, factory)
    assert outcome.kind == "oz"
    return (src.parent / "out.o").read_bytes()


class _Raises:
    model_id = "test-raises"

    def optimize(self, tu: TUContext) -> Decision:
        raise RuntimeError("model exploded")


class _Garbage:
    """Claims a tiny object that opt never built: must never ship."""

    model_id = "test-garbage"

    def __init__(self, fake: Path) -> None:
        self.fake = fake

    def optimize(self, tu: TUContext) -> Decision:
        f = Finding(pass_list="gvn-sink", valid=True, sizes=Sizes(1, 1), object_path=self.fake, count_after=1)
        return Decision(chosen=f, reason="beats-oz")


class _LiesAboutSizes:
    """Ships a real object this builder made (`instsimplify` alone: far larger than -Oz) but
    claims it is tiny: only the final re-measure of the object can catch it."""

    model_id = "test-lies"

    def __init__(self) -> None:
        self.real: Sizes | None = None
        self.oz: Sizes | None = None

    def optimize(self, tu: TUContext) -> Decision:
        f = tu.evaluate(parse_pass_list("instsimplify"))
        self.real, self.oz = f.sizes, tu.oz.sizes
        f.sizes = Sizes(1, 1)
        return Decision(chosen=f, reason="beats-oz")


def test_object_larger_than_oz_never_ships_whatever_its_finding_says(state: Path, src: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(src.parent)
    liar = _LiesAboutSizes()
    assert _tu(src, state, lambda s: liar) == _reference(src)
    # The lie was a real, valid, larger object (so the re-measure is what kept it out).
    assert liar.real is not None and liar.oz is not None and liar.real.text > liar.oz.text


def test_optimizer_raising_or_lying_never_ships(state: Path, src: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(src.parent)
    ref = _reference(src)
    assert _tu(src, state, lambda s: _Raises()) == ref
    fake = tmp_path / "fake.o"
    fake.write_bytes(b"\x7fELF not really")
    assert _tu(src, state, lambda s: _Garbage(fake)) == ref


def test_corrupt_database_is_recovered(state: Path, src: Path) -> None:
    state.mkdir(parents=True)
    (state / "clang-llm.sqlite").write_bytes(b"this is not a database" * 100)
    w = run_wrapper(["-c", src.name, "-o", "out.o"], src.parent)
    assert w.returncode == 0 and w.stderr == b""
    assert (src.parent / "out.o").read_bytes() == _reference(src)
    assert list(state.glob("clang-llm.sqlite.corrupt-*"))
    assert "error:db-recovered" in _reasons(state)


def test_locked_database_does_not_block_the_build(state: Path, src: Path) -> None:
    Database(state).add_event(Event("test", "init"))
    holder = sqlite3.connect(state / "clang-llm.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        env = {**os.environ, "CLANG_LLM_DB_TIMEOUT": "0.5"}
        w = run_wrapper(["-c", src.name, "-o", "out.o"], src.parent, env=env)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert w.returncode == 0 and w.stderr == b""
    assert (src.parent / "out.o").read_bytes() == _reference(src)
    log = (state / "clang-llm.log").read_text()
    assert "database stats failed" in log and "locked" in log, log
    # The lock cost the stats line and nothing else: the database works again once released.
    assert _reasons(state) == {"test:init": 1}
    run_wrapper(["-c", src.name, "-o", "out.o"], src.parent, timeout=120)
    compiled = {k: n for k, n in _reasons(state).items() if k.startswith(("oz:", "optimized:"))}
    assert sum(compiled.values()) == 1, compiled


def test_unwritable_output_gives_clangs_error(state: Path, src: Path) -> None:
    (src.parent / "adir.o").mkdir()
    for out in ("missing-dir/out.o", "adir.o"):
        w = run_wrapper(["-c", src.name, "-o", out], src.parent)
        r = run_clang(["-Oz", "-c", src.name, "-o", out], src.parent)
        assert w.returncode == r.returncode != 0
        assert w.stderr == r.stderr
    assert _reasons(state).get("fallback:output-write") == 2
    _no_strays(src.parent)


def test_killed_mid_compile_leaves_no_partial_object(state: Path, src: Path, tmp_path: Path) -> None:
    slow_opt = _script(tmp_path / "slow-opt", 'sleep 1; exec opt-22 "$@"')
    env = {**os.environ, "CLANG_LLM_OPT": str(slow_opt)}
    for sig in (signal.SIGKILL, signal.SIGTERM):
        p = subprocess.Popen([*wrapper_cmd(), "-c", src.name, "-o", "out.o"], cwd=src.parent, env=env,
                             stderr=subprocess.PIPE)
        time.sleep(0.8)
        p.send_signal(sig)
        p.wait(timeout=20)
        assert not (src.parent / "out.o").exists()
        _no_strays(src.parent)
    # The next compile sweeps the temp dir the SIGKILLed run could not remove.
    w = run_wrapper(["-c", src.name, "-o", "out.o"], src.parent)
    assert w.returncode == 0
    assert not list((state / "tmp").iterdir())


def test_bad_config_values_are_ignored(state: Path, src: Path) -> None:
    (src.parent / ".clang-llm.toml").write_text('rounds = "lots"\nfeedback = "verbose"\n[[[broken\n')
    env = {**os.environ, "CLANG_LLM_SAMPLES": "-4"}
    w = run_wrapper(["-c", src.name, "-o", "out.o", "--llm-rounds=zero"], src.parent, env=env)
    assert w.returncode == 0 and w.stderr == b""
    assert (src.parent / "out.o").read_bytes() == _reference(src)
    problems = [ln for ln in (state / "clang-llm.log").read_text().splitlines() if "config:" in ln]
    assert any(".clang-llm.toml" in p for p in problems), problems  # the unreadable project file
    assert any("environment: samples" in p for p in problems), problems
    assert any("command line: rounds" in p for p in problems), problems
    (record,) = Database(state).all_records()
    defaults = Settings()
    assert (record.settings["rounds"], record.settings["samples"]) == (defaults.rounds, defaults.samples)


def test_killed_while_writing_the_output_keeps_the_old_object(tmp_path: Path) -> None:
    """SIGKILL in the middle of the copy to -o: the old object is intact (never half a file), and
    the killed writer's temp file is removed by the next write of that output."""
    dest = tmp_path / "out.o"
    dest.write_bytes(b"old object")
    fifo = tmp_path / "new.o"
    os.mkfifo(fifo)
    code = ("import sys; from pathlib import Path; from clang_llm.atomic import atomic_copy; "
            "atomic_copy(Path(sys.argv[1]), Path(sys.argv[2]))")
    child = subprocess.Popen([sys.executable, "-c", code, str(fifo), str(dest)])
    with open(fifo, "wb") as w:
        w.write(b"x" * 100_000)
        w.flush()
        for _ in range(2000):  # until the child has written part of the new object
            tmps = list(tmp_path.glob(".out.o.*.clang-llm-tmp"))
            if tmps and tmps[0].stat().st_size > 0:
                break
            time.sleep(0.01)
        assert tmps, "the writer never started"
        child.kill()
        child.wait(timeout=30)
    assert dest.read_bytes() == b"old object"
    assert list(tmp_path.glob(".out.o.*.clang-llm-tmp")), "the killed writer left no temp file?"
    new = tmp_path / "complete.o"
    new.write_bytes(b"new object")
    from clang_llm.atomic import atomic_copy

    atomic_copy(new, dest)
    assert dest.read_bytes() == b"new object"
    assert not list(tmp_path.glob(".out.o.*.clang-llm-tmp"))


def test_killed_mid_compile_keeps_an_existing_object(state: Path, src: Path, tmp_path: Path) -> None:
    """A rebuild killed before its object is ready leaves the previous object as it was."""
    slow_opt = _script(tmp_path / "slow-opt", 'sleep 1; exec opt-22 "$@"')
    env = {**os.environ, "CLANG_LLM_OPT": str(slow_opt)}
    out = src.parent / "out.o"
    out.write_bytes(b"previous build")
    p = subprocess.Popen([*wrapper_cmd(), "-c", src.name, "-o", "out.o"], cwd=src.parent, env=env,
                         stderr=subprocess.PIPE)
    time.sleep(0.8)
    p.kill()
    p.wait(timeout=20)
    assert out.read_bytes() == b"previous build"
    _no_strays(src.parent)


class _ChoosesMem2reg:
    """A real candidate (`mem2reg` alone: smaller than -Oz on SAMPLE_C), evaluated as the loop
    evaluates candidates (without -verify-each)."""

    model_id = "test-mem2reg"

    def optimize(self, tu: TUContext) -> Decision:
        f = tu.evaluate(parse_pass_list("mem2reg"))
        assert f.valid and f.sizes is not None and tu.oz.sizes is not None
        chosen, reason = select_best(tu.oz, [f])
        return Decision(chosen=chosen, reason=reason)


def _outcome(src: Path, state: Path, factory: object, **settings: object) -> tuple[str, bytes, dict[str, object]]:
    os.chdir(src.parent)
    inv = classify(["-c", src.name, "-o", "out.o"])
    outcome = compile_tu(inv, Settings(dir=str(state), **settings), Toolchain.discover(), False,  # type: ignore[arg-type]
                         Database(state), factory)
    return outcome.reason, (src.parent / "out.o").read_bytes(), outcome.record


def test_chosen_list_ships_only_after_a_verified_run(state: Path, src: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidates skip -verify-each; the list that ships is re-run with it, and a list the
    verifier rejects never ships (here an opt that fails `mem2reg` only under -verify-each)."""
    monkeypatch.chdir(src.parent)
    reason, obj, rec = _outcome(src, state, lambda s: _ChoosesMem2reg())
    assert reason == "beats-oz" and obj != _reference(src)  # the real opt: the list ships
    assert rec.chosen.pass_list == "mem2reg"  # type: ignore[index]
    strict = _script(tmp_path / "strict-opt", 'case "$*" in *-verify-each*mem2reg*) echo "verifier: broken" >&2; '
                     'exit 1;; esac; exec opt-22 "$@"')
    monkeypatch.setenv("CLANG_LLM_OPT", str(strict))
    reason, obj, _ = _outcome(src, state, lambda s: _ChoosesMem2reg())
    assert reason == "verify-each-failed" and obj == _reference(src)


def test_a_verified_rerun_that_times_out_ships_oz_and_is_not_remembered(
        state: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A timeout is the machine's state, not the list's: -Oz ships, and the next build tries the
    list again instead of reusing a stored -Oz decision."""
    monkeypatch.chdir(src.parent)
    slow = tmp_path / "slow"
    slow.touch()
    opt = _script(tmp_path / "sometimes-slow-opt", f'case "$*" in *-verify-each*mem2reg*) [ -e {slow} ] && sleep 10;; '
                  'esac; exec opt-22 "$@"')
    monkeypatch.setenv("CLANG_LLM_OPT", str(opt))
    reason, obj, _ = _outcome(src, state, lambda s: _ChoosesMem2reg(), opt_timeout=3.0)
    assert reason == "verify-each-timeout" and obj == _reference(src)
    slow.unlink()
    reason, obj, _ = _outcome(src, state, lambda s: _ChoosesMem2reg(), opt_timeout=3.0)
    # The list's decision may be reused, but it is verified and shipped this time: no stored -Oz.
    assert reason.endswith("beats-oz") and obj != _reference(src)


class _ChoosesMem2regVerified(_ChoosesMem2reg):
    """The same candidate evaluated as the loop evaluates a decision's only list: verified."""

    def optimize(self, tu: TUContext) -> Decision:
        assert tu.evaluate_verified is not None
        f = tu.evaluate_verified(parse_pass_list("mem2reg"))
        chosen, reason = select_best(tu.oz, [f])
        return Decision(chosen=chosen, reason=reason)


def test_a_verified_candidate_ships_without_a_second_run(state: Path, src: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A candidate that already ran with -verify-each from the source IR is not run again; one
    the verifier rejects is simply invalid (-Oz ships)."""
    monkeypatch.chdir(src.parent)
    log = tmp_path / "opt.log"
    logging_opt = _script(tmp_path / "logging-opt", f'echo "$*" >> {log}; exec opt-22 "$@"')
    monkeypatch.setenv("CLANG_LLM_OPT", str(logging_opt))
    reason, obj, rec = _outcome(src, state, lambda s: _ChoosesMem2regVerified())
    assert reason == "beats-oz" and obj != _reference(src)
    runs = [line for line in log.read_text().splitlines() if "annotation2metadata" not in line]  # not -Oz
    assert len(runs) == 1 and "-verify-each" in runs[0]
    assert rec.chosen.verified  # type: ignore[union-attr]
    timing = rec.timing  # type: ignore[union-attr]
    assert 0 < timing.codegen_s < timing.total_s  # two objects built: the baseline's and the list's
    strict = _script(tmp_path / "strict-opt", 'case "$*" in *-verify-each*mem2reg*) echo "verifier: broken" >&2; '
                     'exit 1;; esac; exec opt-22 "$@"')
    monkeypatch.setenv("CLANG_LLM_OPT", str(strict))
    reason, obj, _ = _outcome(src, state, lambda s: _ChoosesMem2regVerified())
    assert reason == "no-candidate-beat-oz" and obj == _reference(src)
