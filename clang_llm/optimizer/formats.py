"""Prompt formats by name: how a prompt is built for a TU and how an answer is read back.

A model names its format (model card, or the server's model entry, or the `prompt_format`
setting); the loop asks this registry for it. `cllm-v1` is ours (`optimizer/prompt.py`, with
feedback rounds); `llm-compiler-ftd` is Meta LLM Compiler FTD's published flag-tuning format
(`optimizer/ftd.py`, read from `resources/prompt-formats.toml`), which has no feedback form.
"""

from __future__ import annotations

import functools

from clang_llm.optimizer.format_spec import CountTokens, PromptFormat
from clang_llm.optimizer.prompt import build_prompt, parse_answer
from clang_llm.prompt_format import END_MARK, FTD_FORMAT, PROMPT_FORMAT, PROMPT_FORMAT_V2, PROMPT_FORMATS


def _cllm_complete(text: str) -> bool:
    """Our answers put the pass list on the first line (after cllm-v2's choice token): complete
    once that line has ended."""
    head, sep, _ = text.lstrip().partition("\n")
    return bool(sep) or END_MARK in head


CLLM = PromptFormat(name=PROMPT_FORMAT, feedback=True, stop=(), build=build_prompt, parse=parse_answer,
                    complete=_cllm_complete)
# cllm-v2: the same answers after a choice token, prompts with the whole-TU summary.
CLLM_V2 = PromptFormat(name=PROMPT_FORMAT_V2, feedback=True, stop=(),
                       build=functools.partial(build_prompt, summary=True), parse=parse_answer,
                       complete=_cllm_complete)


def get_format(name: str) -> PromptFormat:
    """The format of that name; `ValueError` naming the known ones otherwise."""
    if name in ("", PROMPT_FORMAT):
        return CLLM
    if name == PROMPT_FORMAT_V2:
        return CLLM_V2
    if name == FTD_FORMAT:
        from clang_llm.optimizer import ftd

        return ftd.FTD
    raise ValueError(f"unknown prompt format {name!r} (known: {', '.join(PROMPT_FORMATS)})")


__all__ = ["CLLM", "CLLM_V2", "CountTokens", "PromptFormat", "get_format"]
