"""Corpus commands: build the recipe packages, record csmith programs, index and split the modules.

`scripts/corpus.sh` runs all three, resumably."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from clang_llm.cli.common import err_console

corpus_app = typer.Typer(help="The training corpus: Debian packages and csmith programs, recorded and indexed.",
                         no_args_is_help=True)

RecordOpt = Annotated[Path, typer.Option(help="Record root (one folder per package).")]


@corpus_app.command("packages")
def packages_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="Only these packages (default: every recipe).")] = None,
    src: Annotated[Path, typer.Option(help="apt-get source folder.")] = Path("build/corpus/src"),
    record: RecordOpt = Path("build/corpus/record"),
    logs: Annotated[Path | None, typer.Option(help="Folder for per-package build logs.")] = None,
    recipes: Annotated[Path | None, typer.Option(help="Recipe TOML (default: the packaged one).")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Rebuild packages whose build failed.")] = False,
    fetch: Annotated[bool, typer.Option(help="`apt-get source` the packages not yet under --src.")] = False,
) -> None:
    """Build the recipe packages with CLANG_LLM_RECORD, resumably (done packages are skipped)."""
    from clang_llm.train.build_packages import build_all

    results = build_all(src, record, names or None, recipes_file=recipes, log_dir=logs,
                        retry_failed=retry_failed, fetch=fetch)
    ok = sum(r.ok for r in results)
    err_console.print(f"{ok}/{len(results)} built, {sum(r.recorded for r in results)} TUs recorded in total")


@corpus_app.command("csmith")
def csmith_cmd(
    out: Annotated[Path, typer.Option(help="Record folder of the csmith programs.")] = Path(
        "build/corpus/record/csmith"),
    n: Annotated[int, typer.Option("-n", help="Number of seeds.")] = 2500,
    first_seed: int = 1,
    jobs: Annotated[int, typer.Option("--jobs", "-j")] = 2,
    compile_timeout: Annotated[float, typer.Option(help="Seconds per compile; slower programs are skipped.")] = 5.0,
) -> None:
    """Generate and record csmith programs (seeds first-seed .. first-seed+n-1), resumably."""
    from clang_llm.train.csmith import generate

    summary = generate(out, n, first_seed=first_seed, jobs=jobs, compile_timeout_s=compile_timeout)
    typer.echo(json.dumps(summary))


@corpus_app.command("csmith-check")
def csmith_check_cmd(
    out: Annotated[Path, typer.Option(help="Result file (JSONL, one line a seed; appended, resumable).")],
    index: Annotated[list[Path] | None, typer.Option(help="Corpus index(es) whose csmith modules to check.")] = None,
    first_seed: Annotated[int | None, typer.Option(help="Or seeds first-seed .. first-seed+n-1.")] = None,
    n: Annotated[int, typer.Option("-n", help="Number of seeds with --first-seed.")] = 0,
    split: Annotated[list[str] | None, typer.Option(help="Only modules of these splits (with --index).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a program may run at -O0.")] = 10.0,
    jobs: Annotated[int, typer.Option("--jobs", "-j")] = 2,
) -> None:
    """Run csmith programs at -O0 with a time limit: which terminate with their checksum. Those
    that do not are dropped from every split (`train/csmith_check.py`)."""
    from clang_llm.records import open_text
    from clang_llm.train.csmith import csmith_include_dir
    from clang_llm.train.csmith_check import check_all, csmith_seeds

    seeds: list[int] = []
    for path in index or []:
        with open_text(path) as f:
            rows = (json.loads(line) for line in f if line.strip())
            seeds += [s for s, sp in csmith_seeds(rows) if not split or sp in split]
    if first_seed is not None:
        seeds += list(range(first_seed, first_seed + n))
    if not seeds:
        raise typer.BadParameter("no csmith seeds: give --index (with csmith modules) or --first-seed and -n")
    counts = check_all(sorted(set(seeds)), out, csmith_include_dir(), timeout_s=timeout, jobs=jobs)
    typer.echo(json.dumps({"seeds": len(set(seeds)), **counts, "out": str(out)}))


@corpus_app.command("index")
def index_cmd(
    record_dirs: Annotated[list[Path] | None, typer.Argument(help="Record folders (default: every folder under "
                                                                  "--record).")] = None,
    out: Annotated[Path, typer.Option(help="Corpus folder: modules/<id>.bc and index.jsonl.gz.")] = Path(
        "build/corpus/out"),
    record: RecordOpt = Path("build/corpus/record"),
    max_instructions: Annotated[int | None, typer.Option(help="Drop bigger modules.")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j")] = None,
    expect: Annotated[Path | None, typer.Option(help="A committed index whose train split this one must equal "
                                                     "(module ids); exit 1 and list the difference if not.")]
    = None,
) -> None:
    """Deduplicate the recordings, split them by package, and write the corpus index."""
    from clang_llm.train.corpus import DEFAULT_MAX_INSTRUCTIONS, build_corpus, read_index

    dirs = record_dirs or sorted(p for p in record.iterdir() if p.is_dir())
    summary = build_corpus(dirs, out, max_instructions=max_instructions or DEFAULT_MAX_INSTRUCTIONS, jobs=jobs)
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "modules_per_package"}, indent=1))
    if expect is not None:
        from clang_llm.records import open_text

        with open_text(expect) as f:
            want = {r["id"] for r in map(json.loads, f) if r.get("split") == "train"}
        got = {r["id"] for r in read_index(out) if r.get("split") == "train"}
        if got != want:
            err_console.print(f"train split differs from {expect}: {len(got - want)} modules more, "
                              f"{len(want - got)} missing (e.g. {sorted(want - got)[:3]})")
            raise typer.Exit(1)
        err_console.print(f"train split identical to {expect}: {len(got)} modules")
