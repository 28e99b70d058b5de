"""Build real Debian source packages with clang-llm in recording mode.

Why: the model must learn from, and be evaluated on, the IR that real builds feed the
wrapper -- with their real flags, headers and macros -- not toy snippets. Each package is
built with its own build system (autotools, CMake, meson or a plain Makefile) with
``CC=clang-llm`` / ``CXX=clang++-llm``, ``CLANG_LLM_OFF=1`` (no model, plain -Oz) and
``CLANG_LLM_RECORD=<record_dir>``, so every single-TU compile leaves ``<name>.bc`` plus
``<name>.json`` (source, cwd, argv, ...) behind.

Recording is switched on only for the build step: configure/CMake/meson probes
(``conftest.c``, ``CMakeScratch``) would otherwise flood the corpus with junk.

Resumable: a finished package (built or failed) leaves ``<record_dir>/.done``; it is skipped
next time unless ``retry_failed`` asks to rebuild failures. A failed build keeps whatever
was recorded before the failure (``make -k`` keeps going past broken TUs).

Usage::

    clang-llm-tool corpus packages --src build/corpus/src --record build/corpus/record
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

DONE_FILE = ".done"
META_FILE = ".package.json"
SPLITS = ("train", "validation", "test")
BUILD_SYSTEMS = ("autotools", "cmake", "meson", "make")

# Evaluation-only packages: never built into, nor allowed in, the corpus.
RESERVED_PACKAGES = frozenset({"zlib", "bzip2", "lua5.4", "cjson", "expat", "tinyxml2", "jq", "sqlite3"})


@dataclass(frozen=True)
class Recipe:
    """How to build one Debian source package (one [[package]] of corpus-packages.toml)."""

    name: str
    build: str
    split: str
    configure_args: tuple[str, ...] = ()
    make_args: tuple[str, ...] = ()
    subdir: str = ""
    autoreconf: bool = False
    exclude: tuple[str, ...] = ()
    prepare: tuple[str, ...] = ()
    configure_with_wrapper: bool = False  # for Makefiles whose sub-makes ignore `make CC=...`


@dataclass(frozen=True)
class Defaults:
    """Settings shared by every recipe ([defaults] of the TOML)."""

    jobs: int = 2
    cflags: str = "-O2"
    cmake_build_type: str = "Release"
    timeout_s: int = 2400
    probe_cc: str = "clang-22"
    probe_cxx: str = "clang++-22"
    # Why --disable-static: libtool otherwise compiles every file twice (PIC and not),
    # giving near-duplicate modules that normalized-IR dedup cannot merge.
    autotools_args: tuple[str, ...] = ("--disable-static",)


@dataclass
class BuildResult:
    """Outcome of one package build; also the content of the done-file."""

    name: str
    ok: bool
    recorded: int
    seconds: float
    version: str = ""
    split: str = ""
    src_dir: str = ""
    failed_step: str = ""
    error: str = ""
    steps: list[str] = field(default_factory=list)


def recipes_path() -> Path:
    """The shipped recipe file (package data, so installed copies find it too)."""
    return Path(str(resources.files("clang_llm.resources").joinpath("corpus-packages.toml")))


def load_recipes(path: Path | None = None) -> tuple[Defaults, dict[str, Recipe]]:
    """Parse and check the recipe file; a reserved or malformed entry is an error, not a skip."""
    data = tomllib.loads((path or recipes_path()).read_text())
    d = data.get("defaults", {})
    defaults = Defaults(
        jobs=int(d.get("jobs", 2)),
        cflags=str(d.get("cflags", "-O2")),
        cmake_build_type=str(d.get("cmake_build_type", "Release")),
        timeout_s=int(d.get("timeout_s", 2400)),
        probe_cc=str(d.get("probe_cc", "clang-22")),
        probe_cxx=str(d.get("probe_cxx", "clang++-22")),
        autotools_args=tuple(d.get("autotools_args", ("--disable-static",))),
    )
    recipes: dict[str, Recipe] = {}
    for entry in data.get("package", []):
        r = Recipe(
            name=entry["name"],
            build=entry["build"],
            split=entry["split"],
            configure_args=tuple(entry.get("configure_args", ())),
            make_args=tuple(entry.get("make_args", ())),
            subdir=entry.get("subdir", ""),
            autoreconf=bool(entry.get("autoreconf", False)),
            exclude=tuple(entry.get("exclude", ())),
            prepare=tuple(entry.get("prepare", ())),
            configure_with_wrapper=bool(entry.get("configure_with_wrapper", False)),
        )
        if r.name in RESERVED_PACKAGES:
            raise ValueError(f"{r.name} is reserved for independent evaluation and may not be in the corpus")
        if r.build not in BUILD_SYSTEMS:
            raise ValueError(f"{r.name}: unknown build system {r.build!r}")
        if r.split not in SPLITS:
            raise ValueError(f"{r.name}: unknown split {r.split!r}")
        if r.name in recipes:
            raise ValueError(f"{r.name}: listed twice")
        recipes[r.name] = r
    return defaults, recipes


def find_source_dir(src_root: Path, name: str) -> Path | None:
    """The folder `apt-get source NAME` extracted: NAME-<upstream version>/."""
    pat = re.compile(re.escape(name) + r"-\d[^/]*$")
    hits = sorted(p for p in src_root.iterdir() if p.is_dir() and pat.match(p.name))
    return hits[-1] if hits else None


def debian_version(src_dir: Path) -> str:
    """The Debian version from debian/changelog's first line (e.g. '1.9.4-1'), or ''."""
    try:
        first = (src_dir / "debian" / "changelog").read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return ""
    m = re.match(r"\S+ \(([^)]+)\)", first)
    return m.group(1) if m else ""


def count_recorded(record_dir: Path) -> int:
    """Number of recorded TUs (json sidecars with their .bc)."""
    if not record_dir.is_dir():
        return 0
    return sum(1 for j in record_dir.glob("*.json") if j.with_suffix(".bc").exists())


def is_done(record_dir: Path) -> dict | None:
    """The done-file's content when the package was already processed."""
    f = record_dir / DONE_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def _wrapper_env(defaults: Defaults, record_dir: Path | None, *, probe: bool = False) -> dict[str, str]:
    """Environment for a build step: our wrappers as CC/CXX, recording only when asked.

    `probe`: plain clang for ./configure. Why: a configure run is hundreds of probe
    compiles and each wrapper start costs a Python start-up; the wrapper is a drop-in for
    clang-22, so the results are the same, and `make CC=clang-llm` then compiles every TU
    through the wrapper. (CMake/meson keep the wrapper: they bake the compiler in.)
    """
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["CC"] = defaults.probe_cc if probe else "clang-llm"
    env["CXX"] = defaults.probe_cxx if probe else "clang++-llm"
    env["CFLAGS"] = defaults.cflags
    env["CXXFLAGS"] = defaults.cflags
    env["CLANG_LLM_OFF"] = "1"
    env["MAKEFLAGS"] = ""  # an outer make's jobserver must not leak in
    env["FORCE_UNSAFE_CONFIGURE"] = "1"  # GNU tar/coreutils refuse to configure as root otherwise
    env.pop("CLANG_LLM_RECORD", None)
    if record_dir is not None:
        env["CLANG_LLM_RECORD"] = str(record_dir)
    return env


# A step: label, argv, record during it?, cwd, configure probe (plain clang)?
Step = tuple[str, list[str], bool, Path, bool]
_WRAPPERS = ("CC=clang-llm", "CXX=clang++-llm")


def _steps(recipe: Recipe, defaults: Defaults, work: Path) -> list[Step]:
    """The commands of the recipe's build system, in order."""
    jobs = f"-j{defaults.jobs}"
    steps: list[Step] = []
    for i, cmd in enumerate(recipe.prepare):
        steps.append((f"prepare{i + 1}", ["sh", "-c", cmd], False, work, True))
    if recipe.autoreconf:
        steps.append(("autoreconf", ["autoreconf", "-fi"], False, work, True))
    if recipe.build == "autotools":
        if not (work / "Makefile").exists() or recipe.autoreconf:
            configure = ["./configure", *defaults.autotools_args, *recipe.configure_args]
            steps.append(("configure", configure, False, work, not recipe.configure_with_wrapper))
        steps.append(("make", ["make", "-k", jobs, *_WRAPPERS, *recipe.make_args], True, work, False))
    elif recipe.build == "cmake":
        bdir = work / "_clang_llm_build"
        steps.append(
            (
                "cmake",
                [
                    "cmake",
                    "-S",
                    str(work),
                    "-B",
                    str(bdir),
                    "-G",
                    "Unix Makefiles",
                    "-DCMAKE_C_COMPILER=clang-llm",
                    "-DCMAKE_CXX_COMPILER=clang++-llm",
                    f"-DCMAKE_BUILD_TYPE={defaults.cmake_build_type}",
                    "-DBUILD_TESTING=OFF",
                    *recipe.configure_args,
                ],
                False,
                work,
                False,
            )
        )
        steps.append(("make", ["make", "-k", jobs, *recipe.make_args], True, bdir, False))
    elif recipe.build == "meson":
        bdir = work / "_clang_llm_build"
        steps.append(("meson", ["meson", "setup", str(bdir), *recipe.configure_args], False, work, False))
        steps.append(("ninja", ["ninja", "-k", "0", jobs, "-C", str(bdir)], True, work, False))
    else:  # plain make
        steps.append(
            (
                "make",
                ["make", "-k", jobs, *_WRAPPERS, *recipe.make_args],
                True,
                work,
                False,
            )
        )
    return steps


def build_package(
    name: str,
    src_dir: Path,
    record_dir: Path,
    *,
    recipe: Recipe | None = None,
    defaults: Defaults | None = None,
    log_path: Path | None = None,
    force: bool = False,
    retry_failed: bool = False,
) -> BuildResult:
    """Build one package in place with recording on; write the done-file; never raise on build errors.

    Why in place: several autotools trees do not support out-of-tree builds; the sources live
    outside the repository (e.g. /work/corpus/src), so nothing here is ever committed.
    """
    if name in RESERVED_PACKAGES:
        raise ValueError(f"{name} is reserved for independent evaluation")
    if recipe is None or defaults is None:
        d, recipes = load_recipes()
        defaults = defaults or d
        recipe = recipe or recipes[name]
    src_dir = Path(src_dir).resolve()
    record_dir = Path(record_dir).resolve()
    prev = is_done(record_dir)
    if prev is not None and not force and (prev.get("ok") or not retry_failed):
        return BuildResult(**{k: v for k, v in prev.items() if k in BuildResult.__dataclass_fields__})

    record_dir.mkdir(parents=True, exist_ok=True)
    version = debian_version(src_dir)
    meta = {
        "package": name,
        "version": version,
        "split": recipe.split,
        "src_dir": str(src_dir),
        "build": recipe.build,
        "exclude": list(recipe.exclude),
    }
    (record_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    log_path = log_path or record_dir / "build.log"
    work = src_dir / recipe.subdir if recipe.subdir else src_dir
    result = BuildResult(
        name=name, ok=True, recorded=0, seconds=0.0, version=version, split=recipe.split, src_dir=str(src_dir)
    )
    t0 = time.monotonic()
    with open(log_path, "a") as log:
        for label, argv, record, cwd, probe in _steps(recipe, defaults, work):
            result.steps.append(label)
            log.write(f"\n==== {name}: {label}: {' '.join(argv)} (cwd {cwd})\n")
            log.flush()
            env = _wrapper_env(defaults, record_dir if record else None, probe=probe)
            try:
                rc = subprocess.run(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=defaults.timeout_s,
                ).returncode
                err = f"exit status {rc}" if rc else ""
            except subprocess.TimeoutExpired:
                err = f"timed out after {defaults.timeout_s}s"
            except OSError as e:
                err = f"cannot run {argv[0]}: {e}"
            if err:
                result.ok = False
                result.failed_step = label
                result.error = err
                log.write(f"==== {name}: {label} FAILED: {err}\n")
                break
    result.seconds = round(time.monotonic() - t0, 1)
    result.recorded = count_recorded(record_dir)
    (record_dir / DONE_FILE).write_text(json.dumps(asdict(result), indent=1))
    return result


def build_all(
    src_root: Path,
    record_root: Path,
    names: list[str] | None = None,
    *,
    recipes_file: Path | None = None,
    log_dir: Path | None = None,
    retry_failed: bool = False,
    fetch: bool = False,
    console: Console | None = None,
) -> list[BuildResult]:
    """Build every recipe (or `names`) whose source is extracted under `src_root`, with a progress bar."""
    console = console or Console(stderr=True)
    defaults, recipes = load_recipes(recipes_file)
    wanted = names or list(recipes)
    if shutil.which("clang-llm", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]) is None:
        raise RuntimeError("clang-llm is not on PATH (install the package into the venv first)")
    results: list[BuildResult] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("packages", total=len(wanted))
        for name in wanted:
            recipe = recipes.get(name)
            if recipe is None:
                console.print(f"[red]{name}: no recipe")
                progress.advance(task)
                continue
            src_dir = find_source_dir(src_root, name)
            if src_dir is None and fetch:  # needs deb-src lines in the apt sources
                src_root.mkdir(parents=True, exist_ok=True)
                subprocess.run(["apt-get", "source", "-q", name], cwd=src_root, capture_output=True, check=False)
                src_dir = find_source_dir(src_root, name)
            if src_dir is None:
                console.print(f"[yellow]{name}: source not found under {src_root} (apt-get source {name})")
                progress.advance(task)
                continue
            progress.update(task, description=f"building {name}")
            log_path = (log_dir / f"build-{name}.log") if log_dir else None
            if log_dir:
                log_dir.mkdir(parents=True, exist_ok=True)
            r = build_package(
                name,
                src_dir,
                record_root / name,
                recipe=recipe,
                defaults=defaults,
                log_path=log_path,
                retry_failed=retry_failed,
            )
            results.append(r)
            status = "[green]ok" if r.ok else f"[red]FAILED at {r.failed_step} ({r.error})"
            console.print(f"{name} {r.version}: {status}[/], {r.recorded} TUs recorded, {r.seconds:.0f}s")
            progress.advance(task)
    return results
