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


def test_every_setting_either_decides_the_object_or_says_why_not() -> None:
    """A new field of `Settings` must join the identity (and the decision cache's key) or be
    listed with the reason it cannot change an object."""
    from clang_llm.config import NOT_OBJECT_SETTINGS, OBJECT_SETTINGS, SETTING_NAMES

    deciding, other = set(OBJECT_SETTINGS), set(NOT_OBJECT_SETTINGS)
    assert not deciding & other
    assert deciding | other == set(SETTING_NAMES)
    key = Settings().decision_key()
    assert set(key) == deciding


def test_identity_changes_with_every_object_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--llm-identity` (ccache's compiler_check) differs when any object-deciding setting does --
    the kill switch included -- and a base URL with or without /v1 is one server."""
    from clang_llm.config import DEFAULT_EFFORT, EFFORT_LEVELS, OBJECT_SETTINGS, load_settings
    from clang_llm.identity import wrapper_identity
    from clang_llm.toolchain import Toolchain

    tc = Toolchain.discover()
    changed = {"disable": "1", "off": "1", "optimize_o0": "0", "min_instructions": "7", "model": "/nonexistent",
               "backend": "http://127.0.0.1:9/", "backend_model": "m", "prompt_format": "llm-compiler-ftd",
               "rounds": "2", "samples": "3", "rank": "5", "stop": "0.25", "feedback": "long", "seed": "5",
               "temperature": "0.5", "max_new_tokens": "64"}
    assert set(changed) == set(OBJECT_SETTINGS)
    from pathlib import Path

    base = wrapper_identity(load_settings(env={}), tc, Path("/"))
    for key, value in changed.items():
        other = wrapper_identity(load_settings(env={f"CLANG_LLM_{key.upper()}": value}), tc, Path("/"))
        assert other != base, key
    for level in EFFORT_LEVELS:  # each effort level is another object (it decides through rank, stop, ...)
        other = wrapper_identity(load_settings(env={"CLANG_LLM_EFFORT": str(level)}), tc, Path("/"))
        assert (other == base) == (level == DEFAULT_EFFORT), level
    with_v1 = load_settings(env={"CLANG_LLM_BACKEND": "http://127.0.0.1:9/v1/"})
    assert wrapper_identity(with_v1, tc, Path("/")) == wrapper_identity(
        load_settings(env={"CLANG_LLM_BACKEND": "http://127.0.0.1:9"}), tc, Path("/"))
