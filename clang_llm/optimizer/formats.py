"""Prompt formats by name: how a prompt is built for a TU and how an answer is read back.

A model names its format (model card, or the server's model entry, or the `prompt_format`
setting); the loop asks this registry for it. `cllm-v1` is ours (`optimizer/prompt.py`, with
feedback rounds); `llm-compiler-ftd` is Meta LLM Compiler FTD's published flag-tuning format
(`optimizer/ftd.py`, read from `resources/prompt-formats.toml`), which has no feedback form.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from clang_llm.optimizer.prompt import Answer, build_prompt, parse_answer
from clang_llm.prompt_format import END_MARK, FTD_FORMAT, PROMPT_FORMAT, PROMPT_FORMAT_V2, PROMPT_FORMATS

CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class PromptFormat:
    name: str
    feedback: bool  # whether the model was trained on feedback rounds (else rounds only resample)
    stop: tuple[str, ...]  # stop strings to send to a server
    build: Callable[[str, int, CountTokens], str]  # (IR text, token budget, counter) -> prompt
    parse: Callable[[str], Answer]
    complete: Callable[[str], bool]  # does a cut answer still hold its whole pass list?

    def build_prompt(self, ir_text: str, budget: int, count_tokens: CountTokens) -> str:
        return self.build(ir_text, budget, count_tokens)

    def parse_answer(self, text: str) -> Answer:
        return self.parse(text)


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
