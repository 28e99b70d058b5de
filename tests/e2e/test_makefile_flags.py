"""A hand-written Makefile project: one file gets `--llm-rounds=3` through a target-specific
`CFLAGS +=`, the others nothing. The flag must reach the wrapper's settings for that file only,
never reach clang, and the program must build and run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .support import (
    build_env,
    check_one_record_per_object,
    check_records_not_larger,
    objects_under,
    records,
    require_tools,
    run,
    wrapper_bin_dir,
)

pytestmark = pytest.mark.slow

MAKEFILE = """\
CC ?= clang-llm
CFLAGS = -O2 -Wall -Wextra
OBJS = main.o sum.o scale.o table.o

prog: $(OBJS)
\t$(CC) $(CFLAGS) -o $@ $(OBJS)

# the one file that should get more feedback rounds
scale.o: CFLAGS += --llm-rounds=3

%.o: %.c
\t$(CC) $(CFLAGS) -c $< -o $@

check: prog
\t./prog > out.txt
\tgrep -qx 'sum=55 scale=165 table=30' out.txt
"""

SOURCES = {
    "main.c": """\
#include <stdio.h>
int sum(int n);
int scale(int x);
int table(int i);
int main(void) {
    int t = 0;
    for (int i = 0; i < 4; i++) t += table(i);
    printf("sum=%d scale=%d table=%d\\n", sum(10), scale(sum(10)), t);
    return 0;
}
""",
    "sum.c": "int sum(int n) { int s = 0; for (int i = 1; i <= n; i++) s += i; return s; }\n",
    "scale.c": """\
static int mul(int a, int b) { int r = 0; while (b-- > 0) r += a; return r; }
int scale(int x) { return mul(x, 3); }
""",
    "table.c": "static const int t[] = {3, 5, 9, 13};\nint table(int i) { return t[i & 3]; }\n",
}


def test_target_specific_llm_flag(tmp_path: Path) -> None:
    require_tools("make", "clang-22")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "Makefile").write_text(MAKEFILE)
    for name, text in SOURCES.items():
        (proj / name).write_text(text)
    state = tmp_path / "state"
    env = build_env(state, wrapper_bin_dir())
    out = run(["make", "-j2", "CC=clang-llm", "check"], proj, env, tmp_path / "build.log")
    assert "--llm-rounds=3" in out  # make echoed it: it really was on scale.o's command line
    assert "unknown argument" not in out and "unused" not in out  # clang never saw it

    live = check_one_record_per_object(objects_under(proj), state)
    check_records_not_larger(live)
    rounds = {Path(r["source"]).name: r["settings"]["rounds"] for r in live.values()}
    assert rounds == {"main.c": 1, "sum.c": 1, "scale.c": 3, "table.c": 1}
    scale = next(r for r in live.values() if r["source"].endswith("scale.c"))
    assert scale["llm_flags"] == {"rounds": "3"}
    assert not any(a.startswith("--llm") for r in records(state).values() for a in r["argv"])


def test_plain_clang_rejects_the_flag(tmp_path: Path) -> None:
    """The control: the same Makefile with CC=clang-22 fails, so the test above proves the
    wrapper removed the flag (and did not, say, ignore the target-specific variable)."""
    require_tools("make", "clang-22")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "Makefile").write_text(MAKEFILE)
    for name, text in SOURCES.items():
        (proj / name).write_text(text)
    proc = subprocess.run(["make", "CC=clang-22", "scale.o"], cwd=proj, capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0
    assert "--llm-rounds=3" in proc.stderr
