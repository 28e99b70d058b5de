"""Helpers for the end-to-end tests: build real projects with the wrapper, then judge the result.

The judging is deliberately independent of the wrapper's own code: object sizes are measured here
with pyelftools, and the -Oz reference objects come from rerunning plain `clang-22 -Oz` on each
TU's recorded command line, so a bug in the wrapper's size accounting cannot hide itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

REPO = Path(__file__).resolve().parents[2]
PROJECTS_DIR = REPO / "tests" / "projects"
CMAKE_DIR = REPO / "cmake"

# name -> (tarball, top directory inside it)
PROJECTS: dict[str, tuple[str, str]] = {
    "lz4": ("lz4_1.9.4.orig.tar.gz", "lz4-1.9.4"),
    "jsoncpp": ("libjsoncpp_1.9.5.orig.tar.gz", "jsoncpp-1.9.5"),
    "gzip": ("gzip_1.12.orig.tar.xz", "gzip-1.12"),
}

CXX_SUFFIXES = {".cc", ".cpp", ".cxx", ".c++", ".C", ".cp", ".CPP", ".ii"}
# Fallbacks a healthy build may have: configure probes that do not compile on purpose.
EXPECTED_FALLBACKS = {"frontend-error"}
LOG_TAIL = 6000


def wrapper_bin_dir() -> Path:
    """Where the clang-llm launchers are: $CLANG_LLM_E2E_BIN, else beside this Python (the venv),
    else on PATH. Skips the test when none is found."""
    candidates = [os.environ.get("CLANG_LLM_E2E_BIN", ""), str(Path(sys.executable).parent)]
    found = shutil.which("clang-llm")
    if found:
        candidates.append(str(Path(found).parent))
    for c in candidates:
        if c and (Path(c) / "clang-llm").is_file() and (Path(c) / "clang++-llm").is_file():
            return Path(c).absolute()
    pytest.skip("clang-llm launchers not found (set CLANG_LLM_E2E_BIN)")


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def extract(project: str, dest: Path) -> Path:
    """Unpack a vendored tarball under `dest`; return the project's top directory."""
    tarball, top = PROJECTS[project]
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(PROJECTS_DIR / tarball) as tf:
        tf.extractall(dest, filter="tar")
    return dest / top


def build_env(state_dir: Path, bin_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of one build: our launchers first on PATH, a private state dir, and no
    CLANG_LLM_* settings or user config leaking in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLANG_LLM_")}
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "CC", "CXX"):
        env.pop(k, None)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["CLANG_LLM_DIR"] = str(state_dir)
    env["XDG_CONFIG_HOME"] = str(state_dir / "xdg-config")  # no ~/.config/clang-llm/config.toml
    env["LC_ALL"] = "C"
    env["CLANG_LLM_DAEMON_IDLE"] = "120"  # each build's daemon goes soon after the test
    # The suite at another effort level (`CLANG_LLM_E2E_EFFORT=1 pytest tests/e2e`): every check
    # must hold at every level; CI runs the default.
    if os.environ.get("CLANG_LLM_E2E_EFFORT"):
        env["CLANG_LLM_EFFORT"] = os.environ["CLANG_LLM_E2E_EFFORT"]
    env.update(extra)
    return env


def run(cmd: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path, timeout: float = 600) -> str:
    """Run one build step; its output goes to `log` (appended). A failure shows the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        f.write(f"\n$ (cd {cwd} && {' '.join(cmd)})\n".encode())
        f.flush()
        try:
            proc = subprocess.run(list(cmd), cwd=cwd, env=dict(env), stdout=f, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{_tail(log)}")
    if proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}: {' '.join(cmd)} (in {cwd})\n{_tail(log)}")
    return log.read_text(errors="replace")


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace")
    return text[-LOG_TAIL:]


# -- what the wrapper recorded ------------------------------------------------------------------

def records(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Decision records by absolute object path."""
    from clang_llm.db import Database

    db = Database(state_dir)
    try:
        return {r.object: r.to_json() for r in db.all_records()}
    finally:
        db.close()


def event_counts(state_dir: Path) -> list[tuple[str, str, int]]:
    from clang_llm.db import Database

    db = Database(state_dir)
    try:
        return db.event_counts()
    finally:
        db.close()


def objects_under(root: Path, exclude: Iterable[str] = ()) -> set[str]:
    """Absolute paths of the .o files a build left under `root` (minus excluded path parts)."""
    skip = tuple(exclude)
    return {
        str(p.resolve()) for p in root.rglob("*.o")
        if p.is_file() and not any(s in str(p) for s in skip)
    }


def live_records(state_dir: Path, objects: set[str]) -> dict[str, dict[str, Any]]:
    """Records whose object is one of `objects` (configure/try_compile probes leave records for
    objects they deleted since)."""
    return {o: r for o, r in records(state_dir).items() if o in objects}


# -- sizes, measured here ------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjSizes:
    text: int  # executable allocated sections (.text, .text.*)
    alloc: int  # every SHF_ALLOC section: text, rodata, data, bss, unwind tables

    def fits_in(self, other: ObjSizes) -> bool:
        return self.text <= other.text and self.alloc <= other.alloc


def elf_sizes(path: Path) -> ObjSizes:
    text = alloc = 0
    with open(path, "rb") as f:
        for sec in ELFFile(f).iter_sections():
            flags = sec["sh_flags"]
            if flags & SH_FLAGS.SHF_ALLOC:
                alloc += sec["sh_size"]
                if flags & SH_FLAGS.SHF_EXECINSTR:
                    text += sec["sh_size"]
    return ObjSizes(text, alloc)


def reference_argv(argv: Sequence[str], out: Path) -> list[str]:
    """The user's compile arguments with -o pointing at `out`, no depfile side outputs, and -Oz
    last (so it wins over the build's own -O level): what plain `clang -Oz -c` would ship."""
    res: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-o", "-MF", "-MT", "-MQ"):
            i += 2
            continue
        joined = (a.startswith(("-MF", "-MT", "-MQ")) and len(a) > 3) or (a.startswith("-o") and len(a) > 2)
        if a in ("-MD", "-MMD", "-MP") or joined:
            i += 1
            continue
        res.append(a)
        i += 1
    return [*res, "-Oz", "-o", str(out)]


def reference_compiler(record: Mapping[str, Any]) -> str:
    cxx = Path(record["source"]).suffix in CXX_SUFFIXES
    name = "clang++-22" if cxx else "clang-22"
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} not found")
    return found


def sample(items: Sequence[str], n: int) -> list[str]:
    """At most n items, evenly spread over the sorted list (deterministic); n <= 0 means all."""
    ordered = sorted(items)
    if n <= 0 or len(ordered) <= n:
        return ordered
    step = len(ordered) / n
    return [ordered[int(i * step)] for i in range(n)]


def oz_sample_size() -> int:
    """How many TUs to compare with a real `clang-22 -Oz` compile; 0 (the default) means all."""
    return int(os.environ.get("CLANG_LLM_E2E_OZ_SAMPLE", "0"))


# -- the checks every project gets ---------------------------------------------------------------

def check_one_record_per_object(objects: set[str], state_dir: Path) -> dict[str, dict[str, Any]]:
    assert objects, "the build produced no object files"
    live = live_records(state_dir, objects)
    missing = sorted(objects - live.keys())
    assert not missing, f"{len(missing)} object(s) without a clang-llm record: {missing[:20]}"
    return live


def check_records_not_larger(live: Mapping[str, Mapping[str, Any]]) -> None:
    bad = []
    for obj, r in live.items():
        chosen, oz = r["chosen"]["sizes"], r["oz"]["sizes"]
        if chosen["text"] > oz["text"] or chosen["alloc"] > oz["alloc"]:
            bad.append(f"{obj}: chosen {chosen} > oz {oz}")
    assert not bad, "records with a choice larger than -Oz:\n" + "\n".join(bad)


def check_shipped_matches_record(live: Mapping[str, Mapping[str, Any]]) -> None:
    """The wrapper's size accounting agrees with what it shipped (measured here)."""
    bad = []
    for obj, r in live.items():
        got = elf_sizes(Path(obj))
        want = r["chosen"]["sizes"]
        if (got.text, got.alloc) != (want["text"], want["alloc"]):
            bad.append(f"{obj}: shipped {got}, record says {want}")
    assert not bad, "\n".join(bad)


def chose_oz(record: Mapping[str, Any]) -> bool:
    """The wrapper shipped its -Oz baseline (no candidate list won)."""
    return record["chosen"]["pass_list"] == record["oz"]["pass_list"]


def check_shipped_not_larger_than_clang_oz(live: Mapping[str, Mapping[str, Any]], work: Path,
                                           n: int | None = None) -> list[tuple[str, ObjSizes, ObjSizes]]:
    """Rerun plain clang-22 -Oz for every TU (or a sample) and compare with the shipped objects:
    never larger in .text or allocated bytes, and byte-identical wherever the wrapper shipped its
    -Oz baseline (the baseline must be clang's own object, or every size comparison is off)."""
    work.mkdir(parents=True, exist_ok=True)
    picked = sample(list(live), oz_sample_size() if n is None else n)
    compared, bad = [], []
    for i, obj in enumerate(picked):
        r = live[obj]
        ref = work / f"ref{i}.o"
        cmd = [reference_compiler(r), *reference_argv(r["argv"], ref)]
        proc = subprocess.run(cmd, cwd=r["cwd"], capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, f"reference compile failed: {cmd}\n{proc.stderr[-3000:]}"
        shipped, oz = elf_sizes(Path(obj)), elf_sizes(ref)
        compared.append((obj, shipped, oz))
        if not shipped.fits_in(oz):
            bad.append(f"{obj}: shipped {shipped} > clang-22 -Oz {oz}  (cd {r['cwd']} && {' '.join(cmd)})")
        elif chose_oz(r) and Path(obj).read_bytes() != ref.read_bytes():
            bad.append(f"{obj}: shipped the -Oz baseline, but it is not clang-22 -Oz's object "
                       f"(cd {r['cwd']} && {' '.join(cmd)})")
    assert not bad, "shipped objects larger than (or, at -Oz, not identical to) plain clang -Oz:\n" + "\n".join(bad)
    return compared


def check_no_unexpected_fallbacks(state_dir: Path) -> None:
    """A fallback to -Oz is safe but means the wrapper's own path broke: only configure probes
    that fail to compile on purpose are expected."""
    odd = [(k, r, n) for k, r, n in event_counts(state_dir) if k in ("fallback", "error")
           and r not in EXPECTED_FALLBACKS]
    assert not odd, f"unexpected fallbacks/errors (see {state_dir}/clang-llm.log): {odd}"
    # Calls that ran in-process because the daemon was not up yet are expected; any other
    # daemon failure (crashed, timeout, protocol) in a healthy build is a bug.
    bad_daemon = [(k, r, n) for k, r, n in event_counts(state_dir) if k == "daemon" and r != "not-running"]
    assert not bad_daemon, f"daemon failures (see {state_dir}/clang-llm.log): {bad_daemon}"


def check_all(objects: set[str], state_dir: Path, work: Path) -> dict[str, dict[str, Any]]:
    live = check_one_record_per_object(objects, state_dir)
    check_records_not_larger(live)
    check_shipped_matches_record(live)
    check_shipped_not_larger_than_clang_oz(live, work)
    check_no_unexpected_fallbacks(state_dir)
    return live
