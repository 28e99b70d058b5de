"""A real project (lz4's programs) built with a full or a read-only state dir: the build passes,
every object is byte-identical to plain `clang <flags> -Oz`'s, stderr carries only what clang
itself says, and the database from before is intact afterwards."""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from fsfaults import can_mount, fill

from .support import build_env, extract, objects_under, require_tools, wrapper_bin_dir


def _remount_ro(state: Path) -> None:
    """Remount read-only once the stopped daemon has let go of its files."""
    import time

    for _ in range(100):
        if subprocess.run(["mount", "-o", "remount,ro", str(state)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    pytest.fail(f"{state} stayed busy")


def _make(src: Path, env: dict[str, str], cc: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", f"CC={cc}", "-j2", "-C", "programs", "lz4"], cwd=src, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.skipif(not can_mount(), reason="needs root and tmpfs mounts")
@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_lz4_builds_as_plain_clang_with_a_broken_state_dir(tmp_path: Path, fault: str) -> None:
    require_tools("make", "clang-22")
    bin_dir = wrapper_bin_dir()
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(state)], check=True)
    try:
        env = build_env(state, bin_dir)
        probe = tmp_path / "probe.c"
        probe.write_text("int probe(int x) { return x * 3 + 1; }\n")
        first = subprocess.run(["clang-llm", "-c", str(probe), "-o", str(tmp_path / "probe.o")], env=env,
                               capture_output=True)
        assert first.returncode == 0, first.stderr
        with closing(sqlite3.connect(state / "clang-llm.sqlite")) as c:
            events_before = c.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        assert events_before >= 1
        subprocess.run(["clang-llm-tool", "daemon", "stop"], env=env, capture_output=True)
        if fault == "full":
            fill(state)
        else:
            _remount_ro(state)

        ours = extract("lz4", tmp_path / "ours")
        done = _make(ours, env, "clang-llm")
        assert done.returncode == 0, done.stderr[-3000:]

        ref = extract("lz4", tmp_path / "ref")
        plain = tmp_path / "clang-oz"
        plain.write_text('#!/bin/sh\nexec clang-22 "$@" -Oz\n')  # the wrapper's fallback: the user's flags, -Oz
        plain.chmod(0o755)
        ref_done = _make(ref, build_env(tmp_path / "ref-state", bin_dir), str(plain))
        assert ref_done.returncode == 0, ref_done.stderr[-3000:]

        assert sorted(done.stderr.splitlines()) == sorted(ref_done.stderr.splitlines())  # clang's, nothing of ours
        objects = sorted(Path(o).relative_to(ours) for o in objects_under(ours))
        assert objects and objects == sorted(Path(o).relative_to(ref) for o in objects_under(ref))
        differ = [str(o) for o in objects if (ours / o).read_bytes() != (ref / o).read_bytes()]
        assert not differ, differ

        if fault == "full":
            (state / "filler").unlink()
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
        assert not list(state.glob("*corrupt*"))
        with closing(sqlite3.connect(state / "clang-llm.sqlite")) as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert c.execute("SELECT COUNT(*) FROM events").fetchone()[0] >= events_before
    finally:
        env_stop = build_env(state, bin_dir)
        subprocess.run(["clang-llm-tool", "daemon", "stop"], env=env_stop, capture_output=True)
        subprocess.run(["umount", "-l", str(state)], capture_output=True)
