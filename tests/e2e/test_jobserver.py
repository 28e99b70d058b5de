"""`make -jN` never runs more than N heavy steps (opt + codegen) at once: the wrapper honours
make's jobserver when make passes it (a `+` recipe under make 4.3), and without one bounds them
per machine (`heavy_jobs`). Counted from a logging `opt` in front of the real one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clang_llm.optimizer.factory import default_model_dir

from .support import build_env, require_tools, run, wrapper_bin_dir

pytestmark = pytest.mark.slow

SOURCE = r"""
#include <string.h>
static int helper_{i}(int *a, int n) {{ int s = 0; for (int i = 0; i < n; i++) s += a[i] * (i + {i}); return s; }}
int foo_{i}(int *a, int n) {{ if (n > {i}) return helper_{i}(a, n) + 1; return helper_{i}(a, n / 2); }}
int bar_{i}(const char *s) {{ int h = {i}; while (*s) h = h * 31 + *s++; return h ^ (int)strlen(s); }}
"""
MAKEFILE = """SRCS := $(wildcard *.c)
all: $(SRCS:.c=.o)
%.o: %.c
\t{plus}$(CC) -Oz -c $< -o $@
"""
LOGGING_OPT = """#!/bin/sh
echo "S $(date +%s%N)" >> {log}
sleep 0.05
{opt} "$@"; rc=$?
echo "E $(date +%s%N)" >> {log}
exit $rc
"""


def _max_overlap(log: Path) -> int:
    events = sorted((int(t), +1 if k == "S" else -1) for k, t in (ln.split() for ln in log.read_text().splitlines()))
    now = top = 0
    for _, d in events:
        now += d
        top = max(top, now)
    return top


@pytest.mark.parametrize(("plus", "jobs", "heavy", "bound"), [
    ("+", 8, "64", 8),  # make's jobserver reaches the wrapper: at most -j8 heavy steps
    ("", 8, "3", 3),  # no jobserver: the per-machine bound
])
def test_heavy_steps_never_exceed_the_bound(tmp_path: Path, plus: str, jobs: int, heavy: str, bound: int) -> None:
    require_tools("make", "clang-22", "opt-22")
    bin_dir = wrapper_bin_dir()
    proj = tmp_path / "proj"
    proj.mkdir()
    for i in range(16):
        (proj / f"tu{i}.c").write_text(SOURCE.format(i=i))
    (proj / "Makefile").write_text(MAKEFILE.format(plus=plus))
    log = tmp_path / "opt.log"
    opt = tmp_path / "logging-opt"
    opt.write_text(LOGGING_OPT.format(log=log, opt=shutil.which("opt-22")))
    opt.chmod(0o755)
    env = build_env(tmp_path / "state", bin_dir, CLANG_LLM_OPT=str(opt), CLANG_LLM_SAMPLES="8",
                    CLANG_LLM_JOBS="4", CLANG_LLM_MODEL=str(default_model_dir()), CLANG_LLM_CACHE="0",
                    CLANG_LLM_HEAVY_JOBS=heavy)
    run(["make", f"-j{jobs}", "CC=clang-llm"], proj, env, tmp_path / "build.log", timeout=300)
    assert len(list(proj.glob("*.o"))) == 16
    runs = log.read_text().count("S ")
    assert runs > 16 * 2, runs  # candidates ran, not just the -Oz baselines
    top = _max_overlap(log)
    assert 2 <= top <= bound, top
