"""`clang-llm-tool`: one typer application; every command is registered here, by name.

Commands are thin: they parse options and call library functions, importing anything heavy only
when they run, so `--help` works on the base install; a command that needs an optional extra says
which `pip install` to run (`common.require`)."""

from __future__ import annotations

import typer

from clang_llm.cli import corpus, data, model, user

app = typer.Typer(help="Manage clang-llm: settings, stats, per-object explanations, cache, data and models.",
                  no_args_is_help=True, add_completion=False)

# Using the wrapper
app.command("config")(user.config)
app.command("stats")(user.stats)
app.command("explain")(user.explain)
app.command("cache")(user.cache)
app.command("demo")(user.demo)
app.command("serve")(user.serve)
app.add_typer(user.daemon_app, name="daemon")
app.add_typer(user.front_app, name="front")
# Data: corpus, labels, screening, evaluation
app.add_typer(corpus.corpus_app, name="corpus")
app.command("autotune")(data.autotune_cmd)
app.command("pool-sweep")(data.pool_sweep_cmd)
app.command("rank-offline")(data.rank_offline_cmd)
app.add_typer(data.dataset_app, name="dataset")
app.command("screen")(data.screen_cmd)
app.command("eval")(data.eval_cmd)
app.command("control")(data.control_cmd)
# Models
app.command("train")(model.train_cmd)
app.command("export")(model.export_cmd)
app.command("pool-risk")(model.pool_risk_cmd)

