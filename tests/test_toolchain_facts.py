"""Toolchain facts (clang's pipeline string and target options for a flag set) are asked once per
flag set and toolchain, then reused: the objects stay clang's own."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conftest import run_clang, run_wrapper


def _logging_clang(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "clang-calls.log"
    script = tmp_path / "clang-logged"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec clang-22 "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def _queries(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [ln for ln in log.read_text().splitlines() if "-print-pipeline-passes" in ln or "-###" in ln]


def test_facts_asked_once_per_flag_set(state: Path, src: Path, tmp_path: Path) -> None:
    clang, log = _logging_clang(tmp_path)
    env = {**os.environ, "CLANG_LLM_CLANG": str(clang)}
    # b.o: another TU (other IR, so no stored object or decision answers for it) with a.o's flags.
    other = src.with_name("other.c")
    other.write_text(src.read_text() + "\nint extra(int x) { return x * 5 + 3; }\n")
    for flags, out in ((["-O2"], "a.o"), (["-O2"], "b.o"), (["-O2", "-fno-pic"], "c.o")):
        before = len(_queries(log))
        tu = other if out == "b.o" else src
        w = run_wrapper([*flags, "-c", tu.name, "-o", out], src.parent, env=env)
        assert w.returncode == 0, w.stderr
        asked = len(_queries(log)) - before
        if out == "b.o":
            assert asked == 0, "the second TU with the same flags asked clang again"
        else:
            assert asked >= 2, "a new flag set must ask clang (pipeline and target options)"
        ref = run_clang([*flags, "-Oz", "-c", tu.name, "-o", f"ref-{out}"], src.parent)
        assert ref.returncode == 0
        assert (src.parent / out).read_bytes() == (src.parent / f"ref-{out}").read_bytes()
