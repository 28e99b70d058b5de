"""Every default of training and search is defined once, in the config records
(`train/configs.py`): the CLI's options and the trainer's parameters read them from there."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer.main

from clang_llm.config import Settings
from clang_llm.train.configs import AutotuneConfig, ModelRecipe, ScreenConfig


def _cli_defaults(fn: object) -> dict[str, object]:
    cmd = typer.main.get_command_from_info(  # type: ignore[attr-defined]
        typer.models.CommandInfo(callback=fn), pretty_exceptions_short=False, rich_markup_mode=None)
    return {p.name: p.default for p in cmd.params if p.name}


def _shared(record: object, defaults: dict[str, object], rename: dict[str, str] | None = None) -> list[str]:
    """Options named like a field of `record` whose default differs from the record's (an unset
    path option, None, is the record's "")."""
    rename = rename or {}
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]
    checked, bad = 0, []
    for opt, value in defaults.items():
        name = rename.get(opt, opt)
        if name in fields:
            checked += 1
            if (value if value is not None else "") != (fields[name] if fields[name] is not None else ""):
                bad.append(f"{opt}: {value!r} != {fields[name]!r}")
    assert checked >= 3, defaults
    return bad


def test_train_cli_defaults_are_the_recipe() -> None:
    pytest.importorskip("typer")
    from clang_llm.cli.model import train_cmd

    assert _shared(ModelRecipe(), _cli_defaults(train_cmd)) == []


def test_trainer_defaults_are_the_recipe() -> None:
    pytest.importorskip("torch")
    from clang_llm.train.trainer import train

    params = {n: p.default for n, p in inspect.signature(train).parameters.items()
              if p.default is not inspect.Parameter.empty}
    assert _shared(ModelRecipe(), params, rename={"seq_len": "context"}) == []


def test_search_and_screen_cli_defaults_are_the_configs() -> None:
    from clang_llm.cli.data import autotune_cmd, screen_cmd

    assert _shared(AutotuneConfig(), _cli_defaults(autotune_cmd)) == []
    assert _shared(ScreenConfig(), _cli_defaults(screen_cmd)) == []


def test_the_recipe_answers_as_the_wrapper_asks() -> None:
    """A model trained with the recipe leaves its answer the room the wrapper gives it."""
    assert ModelRecipe().max_new_tokens == Settings().max_new_tokens
