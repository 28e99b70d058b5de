"""A real ccache in front of the wrapper (`CC="ccache clang-llm"`), with
`compiler_check = %compiler% --llm-identity`: a second build is all hits with the same objects;
a change of setting (command line or environment) or of the model makes it miss."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from clang_llm.optimizer.factory import default_model_dir

from .support import REPO, build_env, require_tools, run, wrapper_bin_dir

pytestmark = pytest.mark.slow
OBJS = ("base64.o", "ringbuf.o", "wordfreq.o", "sortutil.o", "crc.o", "main.o")


def _stats(env: dict[str, str]) -> dict[str, int]:
    out = subprocess.run(["ccache", "--print-stats"], env=env, capture_output=True, text=True, check=True).stdout
    stats = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    hits = int(stats.get("direct_cache_hit", 0)) + int(stats.get("preprocessed_cache_hit", 0))
    return {"hits": hits, "misses": int(stats.get("cache_miss", 0))}


def _build(tree: Path, env: dict[str, str], log: Path, cflags: str = "-O2 -g0 -Wall") -> dict[str, bytes]:
    run(["make", "clean"], tree, env, log)
    run(["make", "-j2", "CC=ccache clang-llm", f"CFLAGS={cflags}", "textkit"], tree, env, log)
    return {o: (tree / o).read_bytes() for o in OBJS}


def test_ccache_hits_and_misses_follow_the_wrapper_identity(tmp_path: Path) -> None:
    require_tools("ccache", "make", "clang-22")
    tree = tmp_path / "textkit"
    shutil.copytree(REPO / "examples" / "textkit", tree)
    env = build_env(tmp_path / "state", wrapper_bin_dir(), CCACHE_DIR=str(tmp_path / "ccache"),
                    CCACHE_COMPILERCHECK="%compiler% --llm-identity", CCACHE_NOHASHDIR="1")
    log = tmp_path / "build.log"
    n = len(OBJS)

    first = _build(tree, env, log)
    assert _stats(env) == {"hits": 0, "misses": n}
    again = _build(tree, env, log)
    assert _stats(env) == {"hits": n, "misses": n}, "an unchanged second build must be all hits"
    assert again == first

    _build(tree, env, log, cflags="-O2 -g0 -Wall --llm-samples=2")  # a setting on the command line
    assert _stats(env) == {"hits": n, "misses": 2 * n}

    env_samples = {**env, "CLANG_LLM_SAMPLES": "3"}  # a setting ccache cannot see on the command line
    _build(tree, env_samples, log)
    assert _stats(env) == {"hits": n, "misses": 3 * n}

    other = tmp_path / "other-model"  # a copy of the model at another path: another identity
    shutil.copytree(default_model_dir(), other)
    _build(tree, {**env, "CLANG_LLM_MODEL": str(other)}, log)
    assert _stats(env) == {"hits": n, "misses": 4 * n}
    card = json.loads((other / "model-card.json").read_text())  # the same path, new content: a new model
    card["description"] = card.get("description", "") + " (copy)"
    (other / "model-card.json").write_text(json.dumps(card))
    _build(tree, {**env, "CLANG_LLM_MODEL": str(other)}, log)
    assert _stats(env) == {"hits": n, "misses": 5 * n}

    _build(tree, env, log)  # back to the first identity: hits again
    assert _stats(env) == {"hits": 2 * n, "misses": 5 * n}

    # The kill switch wins over the cache: plain clang's objects (the user's flags untouched), a miss.
    plain = tmp_path / "plain"
    shutil.copytree(REPO / "examples" / "textkit", plain)
    run(["make", "-j2", "CC=clang-22", "CFLAGS=-O2 -g0 -Wall", "textkit"], plain, env, log)
    disabled = _build(tree, {**env, "CLANG_LLM_DISABLE": "1"}, log)
    assert _stats(env) == {"hits": 2 * n, "misses": 6 * n}
    assert disabled == {o: (plain / o).read_bytes() for o in OBJS}
    assert disabled != first  # the model's objects differ from plain clang's: the check can see it
    for key, value in (("CLANG_LLM_MIN_INSTRUCTIONS", "10000"), ("CLANG_LLM_OPTIMIZE_O0", "0")):
        assert subprocess.run(["clang-llm", "--llm-identity"], env={**env, key: value}, capture_output=True,
                              text=True).stdout != subprocess.run(["clang-llm", "--llm-identity"], env=env,
                                                                   capture_output=True, text=True).stdout, key
