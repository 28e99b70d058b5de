"""What a prompt format is: how a prompt is built for a TU and how an answer is read back (the
registry of formats by name is `formats.py`; each format module builds one of these)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clang_llm.optimizer.prompt import Answer

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
