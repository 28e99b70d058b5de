"""Commands for using the wrapper: config, stats, explain, cache, demo, serve, daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from clang_llm.cli.common import console
from clang_llm.config import SETTING_NAMES, load_settings
from clang_llm.db import Database


def _db() -> Database:
    return Database(load_settings().state_dir)


def config(source: Annotated[Path | None, typer.Option(help="Show the settings for this source file")] = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show every setting, its value and where it came from (flag > env > project > user > default)."""
    problems: list[str] = []
    s = load_settings(source_file=source, problems=problems)
    rows = {n: {"value": getattr(s, n), "source": s.sources.get(n, "default")} for n in SETTING_NAMES}
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    t = Table("setting", "value", "from")
    for n, r in rows.items():
        t.add_row(n, repr(r["value"]), r["source"])
    console.print(t)
    for p in problems:
        console.print(f"[yellow]problem:[/] {p}")


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "-"


def stats(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
          zero: Annotated[bool, typer.Option("--zero", "-z", help="Reset the counters")] = False) -> None:
    """Counters: optimized / -Oz / fell back / passed through (by reason), sizes against -Oz, and
    where the time went (front end, model, candidates, codegen, verified rerun; opt runs per TU)."""
    db = _db()
    if zero:
        db.zero()
        console.print("statistics zeroed")
        return
    counts = db.event_counts()
    totals = db.size_totals()
    cache = db.cache_stats()
    cost = db.cost_totals()
    by_kind: dict[str, int] = {}
    for kind, _, n in counts:
        by_kind[kind] = by_kind.get(kind, 0) + n
    compiled = by_kind.get("optimized", 0) + by_kind.get("oz", 0)
    data = {
        "calls": sum(by_kind.values()), "by_kind": by_kind,
        "reasons": [{"kind": k, "reason": r, "count": n} for k, r, n in counts],
        "optimized_rate": (by_kind.get("optimized", 0) / compiled) if compiled else None,
        "sizes": totals, "cache": cache, "cost": cost,
        "text_vs_oz": (totals["text"] / totals["oz_text"]) if totals["oz_text"] else None,
        "alloc_vs_oz": (totals["alloc"] / totals["oz_alloc"]) if totals["oz_alloc"] else None,
        "count_vs_oz": (totals["count"] / totals["oz_count"]) if totals["oz_count"] else None,
    }
    if as_json:
        print(json.dumps(data, indent=1))
        return
    t = Table("outcome", "reason", "count", "share", title="clang-llm statistics")
    for k, r, n in counts:
        t.add_row(k, r, str(n), _pct(n, data["calls"]))
    console.print(t)
    console.print(f"TUs compiled through the wrapper: {compiled}; beat -Oz: {by_kind.get('optimized', 0)} "
                  f"({_pct(by_kind.get('optimized', 0), compiled)}); cache hits: {totals['cache_hits']} "
                  f"({_pct(totals['cache_hits'], compiled)}); model calls: {totals['model_calls']} "
                  f"(remote requests: {totals['remote_calls']})")
    if cost["tus"]:
        console.print(f"opt runs per TU (the -Oz baseline, the candidates, the verified rerun): mean "
                      f"{cost['opt_evals_mean']}, max {cost['opt_evals_max']}")
    if cost["total_s"]:
        console.print("seconds, all TUs together: " + ", ".join(
            f"{label} {cost[key]:.2f}" for label, key in (
                ("front end", "frontend_s"), ("-Oz baseline", "oz_s"), ("model", "model_s"),
                ("candidates", "candidates_s"), ("codegen (in the baseline, candidates and rerun)", "codegen_s"),
                ("verified rerun", "verify_s"), ("total", "total_s"))))
    if totals["oz_text"]:
        for label, a, b in ((".text", "text", "oz_text"), ("allocated", "alloc", "oz_alloc"),
                            ("IR instructions", "count", "oz_count")):
            console.print(f"{label}: {totals[a]} vs -Oz {totals[b]} ({_delta(totals[a], totals[b])})")


def _delta(a: int, b: int) -> str:
    return f"{100.0 * (a - b) / b:+.2f}%" if b else "-"


def explain(obj: Path, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the decision record of one object file: candidates, findings, feedback, the choice and why."""
    rec = _db().get_record(str(obj.resolve()))
    if rec is None:
        console.print(f"no record for {obj} (passed through, fell back to clang, or built elsewhere)")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(rec.to_json(), indent=1))
        return
    from clang_llm.explain import render_transcript

    console.print(render_transcript(rec), markup=False, highlight=False)


def cache(clear: Annotated[bool, typer.Option("--clear", help="Drop every cached decision")] = False) -> None:
    """Show (or clear) the decision cache."""
    db = _db()
    if clear:
        console.print(f"removed {db.cache_clear()} cached decisions")
        return
    s = db.cache_stats()
    console.print(f"{s['entries']} cached decisions, {s['hits']} hits, in {db.path}")


def demo(project: Annotated[Path | None, typer.Argument(help="A make-based C project (default: the example)")] = None,
         flags: Annotated[str, typer.Option(
             help="clang-llm flags for the build (default: none, the wrapper's defaults)")] = "") -> None:
    """Build the bundled example with CC=clang-llm and with clang-22 -Oz; print the size table.

    The default flags ask for 8 distinct candidates per TU: the best model setting of the
    test-split evaluation (docs/model-card.md), ahead of feedback rounds at a similar budget."""
    from clang_llm.demo import EXAMPLE, run_demo

    raise typer.Exit(run_demo(project or EXAMPLE, extra_flags=flags))


def serve(host: Annotated[str, typer.Option(help="Address to listen on (loopback only unless --allow-remote)")]
          = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port (0: any free port; the address is printed)")] = 8311,
          socket: Annotated[Path | None, typer.Option("--socket", help="Listen on this Unix socket instead "
                                                      "(created 0600; its directory must be 0700)")] = None,
          model: Annotated[Path | None, typer.Option(help="CTranslate2 model directory (default: packaged)")] = None,
          name: Annotated[str, typer.Option(help="Model name clients see (default: the card's)")] = "",
          max_batch: Annotated[int, typer.Option(help="Prompts per generate_batch call (1: no batching)")] = 8,
          threads: Annotated[int | None, typer.Option(help="CTranslate2 threads")] = None,
          allow_remote: Annotated[bool, typer.Option(help="Allow a non-loopback --host")] = False) -> None:
    """Serve a model over the OpenAI completions API, for `--llm-backend` (builds share one loaded model)."""
    from clang_llm.errors import ModelError
    from clang_llm.optimizer.factory import default_model_dir
    from clang_llm.serve import make_server, serve_forever

    try:
        server, svc, address = make_server(model or default_model_dir(), host=host, port=port, socket_path=socket,
                                           name=name, max_batch=max_batch, threads=threads,
                                           allow_remote=allow_remote)
    except (ModelError, OSError) as e:
        console.print(f"[red]cannot serve:[/] {e}")
        raise typer.Exit(1) from None
    serve_forever(server, address, svc)


daemon_app = typer.Typer(help="The warm compile daemon (started by the first compile; one per state dir).",
                         no_args_is_help=True)


@daemon_app.command("status")
def daemon_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Whether a daemon serves this state dir, its pid and since when."""
    import os
    import time

    from clang_llm.driver.client import state_dir
    from clang_llm.driver.daemon import status

    info = status(state_dir(os.environ))
    if as_json:
        print(json.dumps(info))
    elif info is None:
        console.print("no daemon running (the next compile starts one)")
    else:
        console.print(f"daemon pid {info['pid']}, up {time.time() - info['started']:.0f} s, protocol "
                      f"{info['protocol']}, code {info['code']}")
    raise typer.Exit(0 if info else 1)


front_app = typer.Typer(help="The native front: `clang-llm` without a Python start-up per call.", no_args_is_help=True)


@front_app.command("install")
def front_install(directory: Annotated[Path | None, typer.Option("--dir", help="Where to put clang-llm and "
                                                                  "clang++-llm (default: this venv's bin)")] = None
                  ) -> None:
    """Build the native front and install it as clang-llm / clang++-llm."""
    from clang_llm.driver.native import install
    from clang_llm.errors import ClangLLMError

    try:
        paths = install(directory)
    except (ClangLLMError, OSError) as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    for p in paths:
        console.print(f"installed {p}")


@front_app.command("status")
def front_status(directory: Annotated[Path | None, typer.Option("--dir")] = None) -> None:
    """Whether clang-llm is the native front, built for this installation."""
    from clang_llm.driver.native import NAMES, scripts_dir, status

    ok = True
    for name in NAMES:
        st = status((directory or scripts_dir()) / name)
        what = "native front, current" if st.current else "native front, built for another installation" \
            if st.native else "Python client"
        ok &= st.current
        console.print(f"{st.path}: {what}")
    raise typer.Exit(0 if ok else 1)


@daemon_app.command("stop")
def daemon_stop() -> None:
    """Stop this state dir's daemon (compiles in flight finish)."""
    import os

    from clang_llm.driver.client import state_dir, stop_daemon

    stopped = stop_daemon(state_dir(os.environ))
    console.print("daemon stopped" if stopped else "no daemon running")
