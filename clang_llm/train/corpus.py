"""Turn recordings (clang-llm ``CLANG_LLM_RECORD`` dirs, csmith dirs) into a deduplicated corpus.

Why: training and evaluation need one clean, countable set of modules. Builds record the
same IR many times (gnulib copies in every GNU package, files compiled twice for static and
shared libraries), configure probes leave junk, and a split by *file* would leak a
package's idioms from train into test. So:

* every module is keyed by the hash of its *normalized* IR (comments, metadata,
  ``source_filename`` and attribute-group lines stripped, whitespace collapsed) and kept once;
* modules with no function definition, or over ``max_instructions``, are dropped;
* splits are by package, from ``corpus-packages.toml``; csmith goes to train except a fixed
  hashed 10 % slice, which becomes the pseudo-package ``csmith-test`` in the test split, and
  seeds from 1,000,000 on, the pseudo-package ``csmith-validation`` in the validation split;
* duplicates are resolved test first, then validation, then train, so a module that a
  test package contains never also appears in train.

Output: ``out_dir/modules/<id>.bc`` (the recorded bitcode, unchanged) and
``out_dir/index.jsonl.gz`` (one JSON object per module), plus ``out_dir/summary.json``.

Usage::

    clang-llm-tool corpus index --out build/corpus/out --record build/corpus/record
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clang_llm import ir
from clang_llm.atomic import atomic_path
from clang_llm.train.build_packages import META_FILE, RESERVED_PACKAGES, SPLITS, load_recipes

INDEX_FILE = "index.jsonl.gz"
SUMMARY_FILE = "summary.json"
MODULES_DIR = "modules"
DEFAULT_MAX_INSTRUCTIONS = 30_000
CSMITH = "csmith"

# Build-system probes: compiled by configure/CMake/meson, never part of the package.
_PROBE_PATTERNS = (
    "*/conftest*",
    "conftest*",
    "*/CMakeFiles/CMakeScratch/*",
    "*/CMakeFiles/CMakeTmp/*",
    "*/CMakeFiles/*/CompilerId*/*",
    "*/meson-private/*",
    "*/_clang_llm_build/CMakeFiles/*CompilerId*",
)
# Split precedence when the same normalized IR occurs in several splits.
_SPLIT_ORDER = {"test": 0, "validation": 1, "train": 2}


# ----------------------------------------------------------------------------- normalization

_META_ATTACH = re.compile(r",?\s+!(?:[A-Za-z_.][\w.]*|\d+)\s+!\d+")
_WS = re.compile(r"[ \t]+")


def _strip_comment(line: str) -> str:
    """Drop a `;` comment, ignoring semicolons inside quoted strings and names."""
    if ";" not in line:
        return line
    in_quote = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_quote = not in_quote
        elif ch == ";" and not in_quote:
            return line[:i]
    return line


def normalize_ir(text: str) -> str:
    """Canonical text of a module for deduplication.

    Why these parts go: comments (block `; preds`, `; Function Attrs`, ModuleID), metadata
    (debug info, TBAA ids, compiler ident) and ``source_filename`` differ between copies of
    the same code built from different paths or with different comments; attribute-group
    bodies differ with target-feature noise. None of them changes what a pass list does to
    the instructions.
    """
    out: list[str] = []
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if not line:
            continue
        s = line.lstrip()
        if s.startswith(("!", "source_filename", "attributes #", "#dbg_")):
            continue
        line = _META_ATTACH.sub("", line)
        out.append(_WS.sub(" ", line).strip())
    return "\n".join(out) + "\n"


def normalized_hash(text: str) -> str:
    """sha256 of `normalize_ir(text)`."""
    return hashlib.sha256(normalize_ir(text).encode()).hexdigest()


# ----------------------------------------------------------------------------- recordings


@dataclass
class Recording:
    """One recorded TU: where its bitcode is and what the recorder said about it."""

    bc: Path
    package: str
    version: str
    file: str
    lang: str
    argv: list[str]
    cwd: str
    source: str
    split: str


@dataclass
class Analysis:
    """What the IR parser found in one recording (computed in a worker process)."""

    ok: bool
    instructions: int = 0
    functions: int = 0
    norm_sha256: str = ""
    error: str = ""


def _analyze(bc: str) -> Analysis:
    """Parse bitcode, count defined functions and instructions, hash the normalized text."""
    try:
        mod = ir.parse(Path(bc))
        defined = sum(1 for f in mod.functions if not f.is_declaration)
        n = ir.count_instructions(mod) if defined else 0
        return Analysis(True, n, defined, normalized_hash(str(mod)))
    except Exception as e:  # a corrupt or unreadable .bc only loses that module
        return Analysis(False, error=str(e).strip().splitlines()[0][:200] if str(e).strip() else repr(e))


def _package_meta(record_dir: Path) -> dict:
    """The package's metadata file written by build_packages/csmith (may be missing)."""
    try:
        return json.loads((record_dir / META_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _is_probe(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pat) for pat in _PROBE_PATTERNS)


def _csmith_split(seed: int) -> tuple[str, str]:
    from clang_llm.train.csmith import seed_split  # local: keeps csmith optional for tests

    return seed_split(seed)


def collect_recordings(record_dirs: Iterable[Path], splits: dict[str, str], drops: Counter) -> list[Recording]:
    """Read every `<name>.json` + `<name>.bc` pair; drop probes, excluded and reserved sources."""
    recs: list[Recording] = []
    for rdir in map(Path, record_dirs):
        if not rdir.is_dir():
            continue
        meta = _package_meta(rdir)
        package = meta.get("package") or rdir.name
        if package in RESERVED_PACKAGES:
            raise ValueError(f"{rdir}: {package} is reserved for independent evaluation")
        version = meta.get("version", "")
        src_dir = meta.get("src_dir", "")
        exclude = list(meta.get("exclude", []))
        is_csmith = package == CSMITH
        split = "train" if is_csmith else splits.get(package, meta.get("split", ""))
        if split not in SPLITS:
            drops["no split for package"] += 1
            continue
        for j in sorted(rdir.glob("*.json")):
            bc = j.with_suffix(".bc")
            if not bc.is_file() or j.name == META_FILE:
                continue
            try:
                info = json.loads(j.read_text())
            except (OSError, ValueError):
                drops["unreadable json"] += 1
                continue
            source = str(info.get("source", ""))
            if _is_probe(source):
                drops["build-system probe"] += 1
                continue
            rel = os.path.relpath(source, src_dir) if src_dir and source.startswith(src_dir) else source
            if any(fnmatch.fnmatch(rel, pat) for pat in exclude):
                drops["excluded by recipe"] += 1
                continue
            pkg, spl = package, split
            if is_csmith:
                seed = int(info.get("seed", Path(source).stem))
                rel = str(seed)
                pkg, spl = _csmith_split(seed)
            recs.append(
                Recording(
                    bc=bc,
                    package=pkg,
                    version=version,
                    file=rel,
                    lang=str(info.get("lang", "c")),
                    argv=list(info.get("argv", [])),
                    cwd=str(info.get("cwd", "")),
                    source=source,
                    split=spl,
                )
            )
    return recs


def build_corpus(
    record_dirs: Iterable[Path],
    out_dir: Path,
    *,
    recipes_file: Path | None = None,
    max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
    jobs: int | None = None,
    console: Console | None = None,
) -> dict:
    """Collect, filter, deduplicate and write the corpus; return the summary (also saved as JSON).

    Rebuilds `out_dir/modules` and the index from scratch, so rerunning after more packages
    were recorded simply gives the bigger corpus.
    """
    console = console or Console(stderr=True)
    out_dir = Path(out_dir)
    _, recipes = load_recipes(recipes_file)
    splits = {name: r.split for name, r in recipes.items()}
    drops: Counter = Counter()
    recs = collect_recordings(record_dirs, splits, drops)
    # Deterministic order that also decides which copy of a duplicate survives.
    recs.sort(key=lambda r: (_SPLIT_ORDER[r.split], r.package, r.file, r.bc.name))

    jobs = jobs or min(4, os.cpu_count() or 1)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    analyses: list[Analysis] = []
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("parsing IR", total=len(recs))
        if jobs > 1 and len(recs) > 16:
            with ProcessPoolExecutor(jobs) as pool:
                for a in pool.map(_analyze, [str(r.bc) for r in recs], chunksize=8):
                    analyses.append(a)
                    progress.advance(task)
        else:
            for r in recs:
                analyses.append(_analyze(str(r.bc)))
                progress.advance(task)

    mod_dir = out_dir / MODULES_DIR
    if mod_dir.exists():
        shutil.rmtree(mod_dir)
    mod_dir.mkdir(parents=True)
    seen: dict[str, str] = {}  # normalized hash -> package that kept it
    rows: list[dict] = []
    cross_split_dups = 0
    for r, a in zip(recs, analyses, strict=True):
        if not a.ok:
            drops["unparsable bitcode"] += 1
            continue
        if a.functions == 0:
            drops["no function definitions"] += 1
            continue
        if a.instructions > max_instructions:
            drops[f"over {max_instructions} instructions"] += 1
            continue
        if a.norm_sha256 in seen:
            drops["duplicate"] += 1
            continue
        seen[a.norm_sha256] = r.split
        mid = a.norm_sha256[:16]
        shutil.copyfile(r.bc, mod_dir / f"{mid}.bc")
        rows.append(
            {
                "id": mid,
                "package": r.package,
                "version": r.version,
                "file": r.file,
                "lang": r.lang,
                "argv": r.argv,
                "cwd": r.cwd,
                "instructions": a.instructions,
                "functions": a.functions,
                "split": r.split,
                "norm_sha256": a.norm_sha256,
                "ir_sha256": hashlib.sha256(r.bc.read_bytes()).hexdigest(),
            }
        )
    # Count duplicates that were dropped because a higher-precedence split already had them.
    for r, a in zip(recs, analyses, strict=True):
        if a.ok and a.norm_sha256 in seen and seen[a.norm_sha256] != r.split:
            cross_split_dups += 1

    with atomic_path(out_dir / INDEX_FILE) as tmp, gzip.open(tmp, "wt") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")

    summary = _summarize(rows)
    summary.update(
        {
            "recordings": len(recs),
            "dropped": dict(sorted(drops.items())),
            "cross_split_duplicates_dropped": cross_split_dups,
            "max_instructions": max_instructions,
        }
    )
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    console.print(
        f"corpus: {summary['modules']} modules from {len(recs)} recordings, "
        f"{summary['packages']} packages; by split {summary['modules_per_split']}"
    )
    return summary


def _summarize(rows: list[dict]) -> dict:
    """Counts of modules and packages per split, and modules per package."""
    per_pkg: Counter = Counter()
    pkg_split: dict[str, str] = {}
    instr: dict[str, int] = defaultdict(int)
    for row in rows:
        per_pkg[row["package"]] += 1
        pkg_split[row["package"]] = row["split"]
        instr[row["split"]] += row["instructions"]
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for pkg, s in sorted(pkg_split.items()):
        splits[s].append(pkg)
    return {
        "modules": len(rows),
        "packages": len(per_pkg),
        "modules_per_split": {s: sum(per_pkg[p] for p in splits[s]) for s in SPLITS},
        "packages_per_split": {s: len(splits[s]) for s in SPLITS},
        "instructions_per_split": {s: instr.get(s, 0) for s in SPLITS},
        "package_names": splits,
        "modules_per_package": dict(sorted(per_pkg.items())),
    }


def read_index(out_dir: Path) -> list[dict]:
    """All rows of `out_dir/index.jsonl.gz`."""
    with gzip.open(Path(out_dir) / INDEX_FILE, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_info(out_dir: Path) -> dict:
    """Counts of modules and packages per split, and the package names, from the index."""
    return _summarize(read_index(out_dir))
