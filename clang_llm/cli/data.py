"""Data commands: autotune, dataset (info, verify, curve), screen, eval, control.

Thin commands over library functions; every default comes from the library's own config record.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clang_llm.cli.common import IndexOpt, JsonOpt, RecordingsOpt, SplitOpt, need_source, require
from clang_llm.train.configs import AutotuneConfig, ScreenConfig

if TYPE_CHECKING:
    from clang_llm.train.autotune import ModuleTask

_A = AutotuneConfig()
_S = ScreenConfig()
LabelsOpt = Annotated[Path, typer.Option(help="Labels file written by `autotune`.")]


def _tasks(index: Path | None, recordings: Path | None, splits: list[str] | None, limit: int | None,
           seed: int) -> list[ModuleTask]:
    from clang_llm.train.autotune import load_tasks

    need_source(index, recordings)
    return load_tasks(index, recordings, None, splits or None, limit, seed)


def autotune_cmd(
    out: Annotated[Path, typer.Option(help="Labels file (.jsonl.gz or .jsonl); appended, done modules skipped.")],
    index: IndexOpt = None,
    recordings: RecordingsOpt = None,
    split: SplitOpt = None,
    limit: Annotated[int | None, typer.Option(help="Label at most this many modules (after ordering).")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes (default: all cores).")] = os.cpu_count() or 1,
    budget: Annotated[int, typer.Option(help="opt evaluations per module, the -Oz baseline excluded.")] = _A.budget,
    timeout: Annotated[float, typer.Option(help="Seconds per opt / codegen run.")] = _A.timeout,
    module_timeout: Annotated[float, typer.Option(help="Stop searching a module after this many seconds.")]
    = _A.module_timeout,
    max_instructions: Annotated[int, typer.Option(help="Modules with more IR instructions are recorded as "
                                                       "skipped (too-large).")] = _A.max_instructions,
    large_instructions: Annotated[int, typer.Option(help="Above this many IR instructions the budget shrinks "
                                                         "in proportion (down to --min-budget).")]
    = _A.large_instructions,
    min_budget: Annotated[int, typer.Option(help="Smallest budget of a large module.")] = _A.min_budget,
    seed: Annotated[int, typer.Option(help="Seed of the module order and the random phase.")] = _A.seed,
    verify_each: Annotated[bool, typer.Option(help="Run opt with -verify-each.")] = _A.verify_each,
    fast: Annotated[bool, typer.Option(help="Incremental evaluation (suffixes on cached prefix outputs, no "
                                            "-verify-each, one codegen per distinct module); kept lists are "
                                            "re-run whole with -verify-each.")] = _A.fast,
    top_k: Annotated[int, typer.Option(help="Distinct best lists kept per module.")] = _A.top_k,
    share_winners: Annotated[bool, typer.Option(help="Try the lists that won most on modules labelled before "
                                                     "first (off: each label independent of the order).")]
    = _A.share_winners,
    ray: Annotated[str | None, typer.Option(help="Run on this Ray cluster (an address, 'auto', or 'local' for a "
                                                 "private one); needs pip install 'clang-llm\\[distributed]'.")]
    = None,
) -> None:
    """Autotune modules for object size (labels for training and evaluation).

    Per module the best pass list found within --budget opt evaluations (broadcast, greedy, random,
    minimization), scored on .text, then alloc bytes, then instruction count. Modules run test split
    first, then validation, then train, each in a fixed shuffled order, so a partial run is a fair
    sample. Resumable: rerun the same command."""
    from clang_llm.train.autotune import autotune

    if ray is not None:
        require("ray")
    cfg = AutotuneConfig(budget=budget, timeout=timeout, module_timeout=module_timeout,
                         max_instructions=max_instructions, large_instructions=large_instructions,
                         min_budget=min_budget, seed=seed,
                         verify_each=verify_each, fast=fast, top_k=top_k,
                         share_winners=share_winners)
    tasks = _tasks(index, recordings, split, limit, seed)
    summary = autotune(tasks, out, cfg, jobs=jobs, ray_address=ray)
    typer.echo(json.dumps(summary.to_json()))


def pool_sweep_cmd(
    out: Annotated[Path, typer.Option(help="Sweep file (JSONL); appended, done modules skipped.")],
    pool: Annotated[Path, typer.Option(help="The stored lists: a model directory (its card's pool) or a cllm-v2 "
                                            "examples file (its first line)")],
    index: IndexOpt = None,
    recordings: RecordingsOpt = None,
    split: SplitOpt = None,
    limit: Annotated[int | None, typer.Option(help="Sweep at most this many modules (after ordering).")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes (default: all cores).")] = os.cpu_count() or 1,
    seed: Annotated[int, typer.Option(help="Seed of the module order.")] = 0,
) -> None:
    """Size of every stored list on every module (a cllm-v2 model's ranking targets). Resumable."""
    from clang_llm.train.make_model import load_pool
    from clang_llm.train.pool_sweep import sweep

    lists = load_pool(pool)
    if not lists:
        raise typer.BadParameter(f"{pool}: no stored lists (not a cllm-v2 model or examples file)")
    tasks = _tasks(index, recordings, split or ["train"], limit, seed)
    n = sweep(tasks, lists, out, jobs=jobs)
    typer.echo(json.dumps({"swept_now": n, "lists": len(lists), "out": str(out)}))


def rank_offline_cmd(
    sweep: Annotated[list[Path], typer.Option(help="Pool sweep of the split's modules (clang-llm-tool pool-sweep); "
                                                   "repeat for more (one per --index)")],
    model: Annotated[Path, typer.Option(help="A cllm-v2 model directory (its pool is the sweep's)")],
    index: Annotated[list[Path], typer.Option(help="Corpus index (modules/<id>.bc beside it); repeatable")],
    labels: Annotated[Path | None, typer.Option(help="Labels of the split (the autotuner's gain)")] = None,
    split: SplitOpt = None,
    k: Annotated[str, typer.Option(help="Numbers of tried lists, comma-separated")] = "1,2,4,8,12,15,16,32",
    risk_sweep: Annotated[list[Path] | None, typer.Option(
        help="Train pool sweep: also score the minimum-risk order with the loss table built from it "
             "(default: the model's pool-losses.npy, if it has one); repeatable")] = None,
    risk_temperatures: Annotated[str, typer.Option(help="Temperatures of the minimum-risk answer, comma-separated")]
        = "0.25,0.5,1",
    out: Annotated[Path | None, typer.Option(help="Also write the table (markdown) here")] = None,
    allow_test: Annotated[bool, typer.Option(help="Read the test split too (never to choose settings)")] = False,
    effort: Annotated[bool, typer.Option(help="Also score every effort level (and, with --stops, each level's "
                                              "rank at these stop values) as the compile runs it")] = False,
    stops: Annotated[str, typer.Option(help="Stop values to score at each level's rank, comma-separated")] = "",
) -> None:
    """coreset@k+backup and rank@k+backup scored on a pool sweep, for any k, with no opt run
    (for choosing defaults on the validation split; measure the choice with `eval`)."""
    from clang_llm.atomic import atomic_write_text
    from clang_llm.eval.offline import format_rows, model_scores, offline_rows
    from clang_llm.model.card import read_card
    from clang_llm.model.risk import LOSSES_FILE, load_losses, log_ratios
    from clang_llm.records import read_labels
    from clang_llm.train.pool_risk import loss_table
    from clang_llm.train.pool_sweep import read_sweeps

    card = read_card(model)
    pool = card.pool
    if not pool:
        raise typer.BadParameter(f"{model}: not a cllm-v2 model (no pool)")
    tasks = [t for ix in index for t in _tasks(ix, None, split or ["validation"], None, 0)]
    if "test" in {t.split for t in tasks} and not allow_test:
        raise typer.BadParameter("settings are chosen on the validation split (--allow-test to report the test split)")
    swept = read_sweeps(sweep, pool)
    modules = {t.id: Path(t.bc) for t in tasks if t.id in swept}
    scores = model_scores(model, modules)
    recs = {r.id: r for r in read_labels(labels)} if labels else {}
    losses = None
    if risk_sweep:
        losses = log_ratios(loss_table(read_sweeps(risk_sweep, pool).values(), len(pool)))
    elif (model / LOSSES_FILE).is_file():
        losses = load_losses(model / LOSSES_FILE, len(pool))
    temps = tuple(float(x) for x in risk_temperatures.split(",") if x.strip())
    rows = offline_rows({i: swept[i] for i in modules}, pool, scores, recs, {t.id: t.package for t in tasks},
                        [int(x) for x in k.split(",") if x.strip()], losses=losses, temperatures=temps)
    if effort:
        from clang_llm.config import EFFORT_LEVELS
        from clang_llm.eval.offline import effort_rows

        if losses is None or card.risk_temperature <= 0:
            raise typer.BadParameter("--effort needs the model's loss table and a card temperature > 0")
        levels = {f"effort {n}: rank {lv.rank}, stop {lv.stop:g}": lv for n, lv in EFFORT_LEVELS.items()}
        for n, lv in EFFORT_LEVELS.items():
            for stop in (float(x) for x in stops.split(",") if x.strip()):
                levels[f"effort {n}'s rank {lv.rank}, stop {stop:g}"] = replace(lv, stop=stop)
        rows += effort_rows({i: swept[i] for i in modules}, pool, scores, {t.id: t.package for t in tasks}, losses,
                            card.risk_temperature, levels)
    text = format_rows(rows)
    if out:
        atomic_write_text(out, text)
    typer.echo(text)


dataset_app = typer.Typer(help="The corpus and its autotuned labels.", no_args_is_help=True)


@dataset_app.command("verify")
def dataset_verify(
    labels: LabelsOpt,
    index: Annotated[Path, typer.Option(help="Corpus index (modules/<id>.bc beside it).")],
    split: str = "test", sample: int = 50, seed: int = 0,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild -Oz and each labelled best list on a seeded sample and compare with the recorded counts."""
    from clang_llm.train.dataset import verify_labels

    res = verify_labels(labels, index, split=split, sample=sample, seed=seed)
    if as_json:
        typer.echo(json.dumps(res, indent=1))
    else:
        typer.echo(f"{res['identical']}/{res['checked']} {split} modules rebuild to the recorded -Oz and best "
                   "(instruction count, .text, allocated bytes)")
        for r in res["rows"]:
            if not r["match"]:
                typer.echo(f"  differs: {r['id']} ({r['package']}): recorded {r['recorded']} rebuilt {r['rebuilt']}")
    raise typer.Exit(0 if res["identical"] == res["checked"] else 1)


@dataset_app.command("info")
def dataset_info_cmd(
    labels: LabelsOpt,
    index: Annotated[Path, typer.Option(help="Corpus index.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full JSON instead of a summary.")] = False,
) -> None:
    """Corpus counts and the autotuner's improvement over -Oz.

    Counts (modules, packages, per split) and the autotuner's improvement over -Oz in instruction
    count and .text (geomean, mean, share improved), with the CPU time spent."""
    from clang_llm.train.dataset import dataset_info, format_info

    info = dataset_info(labels, index)
    typer.echo(json.dumps(info, indent=1) if as_json else format_info(info))


def screen_cmd(
    labels: Annotated[Path | None, typer.Option(help="Labels file; its most frequent winning lists are "
                                                     "screened.")] = None,
    pipeline: Annotated[list[str] | None, typer.Option(help="Extra pass list to screen (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Report file (JSON).")] = Path("screen-report.json"),
    programs: Annotated[int, typer.Option(help="csmith programs to generate.")] = _S.programs,
    pipelines: Annotated[int, typer.Option(help="How many winning lists to take from the labels.")] = _S.pipelines,
    first_seed: Annotated[int, typer.Option(help="First csmith seed (far from the corpus' seeds).")]
    = _S.first_seed,
    jobs: Annotated[int, typer.Option(help="Parallel builds.")] = _S.jobs,
) -> None:
    """Screen winning pipelines for miscompiles on csmith programs.

    Builds csmith programs with each pipeline and compares their output with the -O0 build; bisect
    failing lists to the implicated passes."""
    from clang_llm.train.configs import ScreenConfig
    from clang_llm.train.screen import run_screen

    cfg = ScreenConfig(programs=programs, pipelines=pipelines, first_seed=first_seed, jobs=jobs)
    if labels is not None and not labels.exists():
        raise typer.BadParameter(f"{labels} does not exist", param_hint="--labels")
    rep = run_screen(labels, pipeline or [], cfg, out)
    typer.echo(json.dumps({"report": str(out), "programs_used": sum(p["used"] for p in rep.programs),
                           "checks": rep.checks, "outcomes": rep.outcomes, "failures": len(rep.failures),
                           "implicated_passes": rep.implicated_passes}))


def eval_cmd(
    method: Annotated[list[str], typer.Option("--method", "-m", help="Method(s): oz, autotune@B, coreset@k, "
                                              "model@k, rank@k (the model ranks its pool), "
                                              "feedback-<fast|short|long>@R, +backup suffix; repeatable or "
                                              "comma-separated.")] = ["oz"],  # noqa: B006
    index: IndexOpt = None,
    recordings: RecordingsOpt = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="Only modules of this split (repeatable; "
                                                    "default: test with --index, all with --recordings).")]
    = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate at most this many modules.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels: coreset/broadcast lists (train split) and the "
                                                     "autotuner's gain.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Per (method, module) results cache (JSONL[.gz]); "
                                                    "resumable.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Folder for table.md, results.json and the plots.")]
    = Path("eval-out"),
    jobs: Annotated[int, typer.Option(help="Worker processes.")] = os.cpu_count() or 1,
    timeout: Annotated[float, typer.Option(help="Seconds per opt / codegen run.")] = 20.0,
    backup: Annotated[bool, typer.Option(help="Add the -Oz backup to every method.")] = False,
    model: Annotated[str, typer.Option(help="Model directory for model methods (default: the shipped one).")]
    = "",
    seed: Annotated[int, typer.Option(help="Seed (module order, sampling).")] = 0,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature of model@k's samples "
                                                          "(default: the wrapper's).")] = None,
    plots: Annotated[bool, typer.Option(help="Write the PNG plots.")] = True,
    coreset_split: Annotated[str, typer.Option(help="Split whose labels choose the coreset lists (never test).")]
    = "train",
    coreset_file: Annotated[Path | None, typer.Option(
        "--coreset", help="A fixed pool (data/pool-v2.json): coreset@k tries its first k lists (Oz aside) "
                          "instead of a coreset recomputed from --labels")] = None,
    verify: Annotated[bool, typer.Option(help="Run opt with -verify-each (--no-verify: same sizes, about 3x "
                                              "faster opt; for choosing settings, not for shipped numbers)")]
    = True,
) -> None:
    """Evaluate methods (oz, autotune, coreset, model, feedback) against clang -Oz.

    On a split (default: test): improvement in instruction count and .text (geomean, mean), shares
    improved/equal/regressed, % of the autotuner's gain, opt evaluations and wall time per module,
    and model metrics (validity, prediction error, generated-IR parse rate, BLEU). Writes table.md,
    results.json and PNG plots to --out-dir."""
    from clang_llm.eval import evaluate, write_outputs

    methods = [m for arg in method for m in arg.split(",") if m.strip()]
    if labels is not None and not labels.exists():
        raise typer.BadParameter(f"{labels} does not exist", param_hint="--labels")
    if plots:
        require("matplotlib")
    all_tasks = _tasks(index, recordings, None, None, seed)
    split_of = {t.id: t.split for t in all_tasks}  # the index, not the labels, says which split a module is in
    # Recordings carry no split: all of them unless a split is asked for.
    wanted = set(split) if split else ({"test"} if index is not None else {t.split for t in all_tasks})
    tasks = [t for t in all_tasks if t.split in wanted]
    tasks = tasks[:limit] if limit else tasks
    from clang_llm.config import Settings

    settings = {"seed": seed, "temperature": Settings().temperature if temperature is None else temperature,
                **({"model": model} if model else {})}
    res = evaluate(methods, tasks, labels_path=labels,
                   cache_path=cache or out_dir / "cache.jsonl.gz", jobs=jobs, timeout=timeout, backup=backup,
                   seed=seed, model_settings=settings, split_of=split_of, coreset_split=coreset_split,
                   verify_each=verify, coreset_file=coreset_file)
    paths = write_outputs(res, out_dir, plots=plots)
    typer.echo((out_dir / "table.md").read_text())
    typer.echo(json.dumps({k: str(v) for k, v in paths.items()}))


def control_cmd(
    index: Annotated[Path, typer.Option(help="Corpus index (index.jsonl.gz); bitcode in modules/<id>.bc beside "
                                             "it.")],
    split: SplitOpt = None,
    limit: Annotated[int | None, typer.Option(help="At most this many modules (deterministic order).")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes.")] = os.cpu_count() or 1,
    out: Annotated[Path | None, typer.Option(help="Write one JSON line per module here.")] = None,
) -> None:
    """The control case: -Oz as the only candidate must give clang's own -Oz object byte for byte."""
    from clang_llm.eval.control import summary, sweep

    results = sweep(_tasks(index, None, split, limit, 0), jobs=jobs, out=out)
    typer.echo(summary(results))
    for r in results:
        if r.status != "identical":
            typer.echo(f"{r.status}: {r.id} ({r.package}, {r.lang}) {r.detail}")
    raise typer.Exit(0 if all(r.status == "identical" for r in results) else 1)


@dataset_app.command("curve")
def dataset_curve_cmd(
    labels: Annotated[Path, typer.Option(help="Labels file with search trajectories (autotune v2).")],
    split: SplitOpt = None,
    out_dir: Annotated[Path | None, typer.Option(help="Write budget-curve.md and budget-curve.png here.")] = None,
) -> None:
    """Gain against search budget (from each label's trajectory), per split and for package modules."""
    from clang_llm.records import read_labels
    from clang_llm.train.budget_curve import curve, markdown, plot

    recs = read_labels(labels)
    splits = split or sorted({r.split for r in recs})
    series = {}
    text = []
    for s in splits:
        mine = [r for r in recs if r.split == s]
        series[s] = curve(mine)
        text.append(markdown(series[s], f"{s} split, all modules"))
        pkg = [r for r in mine if not r.package.startswith("csmith")]
        if pkg and len(pkg) != len(mine):
            series[f"{s} (packages)"] = curve(pkg)
            text.append(markdown(series[f"{s} (packages)"], f"{s} split, package modules (csmith excluded)"))
    report = "\n".join(text)
    typer.echo(report)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "budget-curve.md").write_text(report)
        plot(series, out_dir / "budget-curve.png")
