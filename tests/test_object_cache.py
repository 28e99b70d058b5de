"""A decision seen before ships its stored object (ccache's way): same bytes, no opt run; a stored
object that is not what it claims is ignored and the TU is built again."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from conftest import run_clang, run_wrapper

from clang_llm.db import Database
from clang_llm.optimizer.factory import default_model_dir


def _env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    log = tmp_path / "opt-calls.log"
    opt = tmp_path / "opt-logged"
    opt.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec opt-22 "$@"\n')
    opt.chmod(opt.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "CLANG_LLM_MODEL": str(default_model_dir()), "CLANG_LLM_OPT": str(opt)}, log


def _opt_calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _reasons(state: Path) -> dict[str, int]:
    return {f"{k}:{r}": n for k, r, n in Database(state).event_counts()}


def test_second_compile_ships_the_stored_object(state: Path, src: Path, tmp_path: Path) -> None:
    env, log = _env(tmp_path)
    assert run_wrapper(["-c", src.name, "-o", "a.o"], src.parent, env=env).returncode == 0
    first_calls = _opt_calls(log)
    assert first_calls >= 1
    assert run_wrapper(["-c", src.name, "-o", "b.o"], src.parent, env=env).returncode == 0
    assert _opt_calls(log) == first_calls, "a cache hit ran opt"
    assert (src.parent / "a.o").read_bytes() == (src.parent / "b.o").read_bytes()
    assert sum(n for k, n in _reasons(state).items() if k.endswith("cache-hit:object")) == 1
    # Another codegen flag is another object: a miss.
    assert run_wrapper(["-c", src.name, "-o", "c.o", "-fno-pic"], src.parent, env=env).returncode == 0
    assert _opt_calls(log) > first_calls


@pytest.mark.parametrize("bad", ["garbage", "another-object", "a-smaller-object"])
def test_tampered_stored_object_is_rebuilt(state: Path, src: Path, tmp_path: Path, bad: str) -> None:
    """Garbage, or a real object of other sizes, never ships: clang -O2's (larger than -Oz), or
    another TU's that is smaller than -Oz (only the sizes recorded with it are trusted)."""
    env, log = _env(tmp_path)
    assert run_wrapper(["-c", src.name, "-o", "a.o"], src.parent, env=env).returncode == 0
    if bad == "garbage":
        data = b"\x7fELF garbage"
    elif bad == "another-object":
        assert run_clang(["-O2", "-c", src.name, "-o", "o2.o"], src.parent).returncode == 0
        data = (src.parent / "o2.o").read_bytes()
    else:
        (src.parent / "tiny.c").write_text("int tiny(void) { return 1; }\n")
        assert run_clang(["-Oz", "-c", "tiny.c", "-o", "tiny.o"], src.parent).returncode == 0
        data = (src.parent / "tiny.o").read_bytes()
    with sqlite3.connect(state / "clang-llm.sqlite") as c:
        c.execute("UPDATE objects SET data = ?", (data,))
    assert run_wrapper(["-c", src.name, "-o", "b.o"], src.parent, env=env).returncode == 0
    assert (src.parent / "a.o").read_bytes() == (src.parent / "b.o").read_bytes()
    assert not any(k.endswith("cache-hit:object") for k in _reasons(state))


def test_a_stored_object_ships_before_any_model_loads(state: Path, winner: Path) -> None:
    """Given the model's id without loading it (the packaged model's content hash), the second
    compile of a TU ships the stored object and never calls the factory."""
    from clang_llm.clang_args import classify
    from clang_llm.config import Settings
    from clang_llm.driver.pipeline import compile_tu
    from clang_llm.optimizer.factory import known_model_id, make_optimizer
    from clang_llm.toolchain import Toolchain

    calls: list[int] = []

    def factory(settings: Settings) -> object:
        calls.append(1)
        return make_optimizer(settings)

    os.chdir(winner.parent)
    settings = Settings(dir=str(state), speculate_bytes=0)
    db = Database(state)
    first = compile_tu(classify(["-c", winner.name, "-o", "a.o"]), settings, Toolchain.discover(), False, db,
                       factory, known_model_id)  # type: ignore[arg-type]
    assert first.kind == "optimized" and calls == [1]
    again = compile_tu(classify(["-c", winner.name, "-o", "b.o"]), settings, Toolchain.discover(), False, db,
                       factory, known_model_id)  # type: ignore[arg-type]
    assert again.reason == "cache-hit:object" and calls == [1]  # the model never loaded
    assert (winner.parent / "b.o").read_bytes() == (winner.parent / "a.o").read_bytes()
