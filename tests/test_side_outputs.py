"""Every flag that writes a file beside the object: the wrapper leaves exactly the files plain
`clang-22` leaves (same names, same bytes, paths normalized), either by reproducing them on its
own path (depfiles) or by running the real compiler untouched (a counted passthrough).

Both compiles run in twin directories of equal name length (`plain`, `wrapd`), so absolute paths
inside binary files (DWARF comp_dir, -MJ's "directory") compare after a same-length substitution.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLANG, run_wrapper

from clang_llm.db import Database

# A TU whose switch tables depend on the relocation model (so an -Oz baseline built with the wrong
# target options would differ from clang's object, and the byte comparison would say so).
SOURCE = r"""
#include <stdio.h>
const char *name(int i) { switch (i) { case 0: return "alpha"; case 1: return "beta"; case 2: return "gamma";
  case 3: return "delta"; case 4: return "eps"; case 5: return "zeta"; case 6: return "eta"; default: return "?"; } }
int main(int c, char **v) { (void)v; printf("%s\n", name(c)); return 0; }
"""


@dataclass(frozen=True)
class Case:
    flags: str
    how: str  # "reproduced": the wrapper's own path; else the passthrough reason it must count
    deterministic: bool = True  # false: timings inside; compare names (and that JSON parses)


CASES = [
    Case("-MD", "reproduced"),
    Case("-MMD", "reproduced"),
    Case("-MD -MF deps/r.d", "reproduced"),
    Case("-MD -MT custom-target", "reproduced"),
    Case("-MD -MQ $weird$target", "reproduced"),
    Case("-MMD -MP -MF r.dep", "reproduced"),
    Case("-MD -MFjoined.d -MTjoined", "reproduced"),
    Case("-Wp,-MD,r.d", "reproduced"),
    Case("-Wp,-MMD,deps/r.d", "reproduced"),
    Case("-Wp,-MD,r.d -MT other", "reproduced"),
    Case("-Wp,-MT,x,-MD,r.d", "side-output"),
    Case("-fstack-usage", "side-output"),
    Case("--serialize-diagnostics r.dia", "side-output"),
    Case("-ftime-trace", "side-output", deterministic=False),
    Case("-ftime-trace=trace.json", "side-output", deterministic=False),
    Case("-save-stats", "side-output"),
    Case("-save-stats=obj", "side-output"),
    Case("-g -gsplit-dwarf", "side-output"),
    Case("-MJ r.json", "side-output"),
    Case("-MJr2.json", "side-output"),
    Case("-fdump-record-layouts", "side-output"),  # not a clang driver flag: clang's own error
    Case("-save-temps", "side-output"),
    Case("-save-temps=obj", "side-output"),
    Case("-fsave-optimization-record", "side-output"),
    Case("-fproc-stat-report=stats.csv", "side-output", deterministic=False),
    Case("-emit-ast", "ast-output", deterministic=False),  # the AST file records input mtimes
]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _compile(cmd: list[str], root: Path, flags: list[str], env: dict[str, str] | None = None) -> tuple[int, bytes]:
    (root / "out").mkdir(parents=True)
    (root / "deps").mkdir()
    (root / "r.c").write_text(SOURCE)
    args = ["-Oz", *flags, "-c", "r.c", "-o", "out/r.o"]
    if cmd:
        proc = subprocess.run([*cmd, *args], cwd=root, capture_output=True, check=False)
    else:
        proc = run_wrapper(args, root, env=env)
    return proc.returncode, proc.stderr


def _normalized(tree: dict[str, bytes], root: Path, twin: Path) -> dict[str, bytes]:
    return {k: v.replace(str(root).encode(), str(twin).encode()) for k, v in tree.items()}


# Reproduced side outputs both ways: with plain clang -Oz speculatively beside the IR step (it
# writes the depfile), and without (the IR step writes it).
RUNS = [(c, spec) for c in CASES for spec in ((True, False) if c.how == "reproduced" else (True,))]


@pytest.mark.parametrize(("case", "speculate"), RUNS,
                         ids=[f"{c.flags}{'' if s else ' (no speculation)'}" for c, s in RUNS])
def test_side_outputs_as_plain_clang(case: Case, speculate: bool, state: Path, tmp_path: Path) -> None:
    flags = shlex.split(case.flags)
    plain, ours = tmp_path / "plain", tmp_path / "wrapd"
    rc_plain, err_plain = _compile([CLANG], plain, flags)
    env = {**{k: v for k, v in os.environ.items() if k != "MAKEFLAGS"},  # not under a parallel make
           "CLANG_LLM_SPECULATE_BYTES": "8192" if speculate else "0"}
    rc_ours, err_ours = _compile([], ours, flags, env=env)
    assert rc_ours == rc_plain, err_ours
    assert err_ours.replace(b"wrapd", b"plain") == err_plain
    want, got = _tree(plain), _normalized(_tree(ours), ours, plain)
    assert sorted(got) == sorted(want)
    for name in want:
        if case.deterministic:
            assert got[name] == want[name], f"{name} differs"
        elif name.endswith(".json"):
            json.loads(got[name])
    counts = {f"{k}:{r}" for k, r, _ in Database(state).event_counts()}
    if case.how != "reproduced":
        assert counts == {f"passthrough:{case.how}"}, counts
    else:
        assert not any(c.startswith(("passthrough", "fallback")) for c in counts), counts
        assert counts, "the TU went through no counted path"
        record = Database(state).get_record(str((ours / "out" / "r.o").resolve()))
        assert record is not None and record.speculative is speculate
