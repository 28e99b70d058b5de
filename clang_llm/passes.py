"""The pass vocabulary (a data file per LLVM major) and pass lists: parse, validate, render.

A pass list is what the model proposes and the cache stores: a sequence of vocabulary tokens,
e.g. ``Oz gvn-sink simplifycfg<hoist-common-insts;sink-common-insts>``. Rendering nests each
token at its level so opt accepts it; ``base`` tokens expand to clang's own pipeline for the TU.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from clang_llm import LLVM_MAJOR
from clang_llm.errors import PassListError

LEVELS = ("base", "module", "cgscc", "function", "loop", "loop-mssa")
_VOCAB_FILE = f"passes-llvm{LLVM_MAJOR}.txt"


@dataclass(frozen=True)
class Vocabulary:
    levels: dict[str, str]  # token -> level, in file order
    version: str

    @classmethod
    @functools.cache
    def default(cls) -> Vocabulary:
        text = resources.files("clang_llm.resources").joinpath(_VOCAB_FILE).read_text()
        return cls.from_text(text)

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        levels: dict[str, str] = {}
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            level, _, token = line.partition(" ")
            token = token.strip()
            if level not in LEVELS or not token or " " in token:
                raise ValueError(f"{_VOCAB_FILE}:{lineno}: bad entry {raw!r}")
            levels[token] = level
        digest = hashlib.sha256("\n".join(f"{lv} {t}" for t, lv in levels.items()).encode()).hexdigest()
        return cls(levels=levels, version=f"llvm{LLVM_MAJOR}-{digest[:10]}")

    @property
    def tokens(self) -> list[str]:
        return list(self.levels)

    def __contains__(self, token: object) -> bool:
        return token in self.levels


_SPLIT = re.compile(r"[\s,]+")


def split_tokens(text: str) -> list[str]:
    """Split a pass-list text into tokens on whitespace/commas outside ``<...>`` parameters."""
    tokens, depth, cur = [], 0, []
    for ch in text:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        if depth == 0 and (ch.isspace() or ch == ","):
            if cur:
                tokens.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if cur:
        tokens.append("".join(cur))
    return tokens


@dataclass(frozen=True)
class PassList:
    tokens: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join(self.tokens)

    @property
    def bases(self) -> list[str]:
        vocab = Vocabulary.default()
        return [t for t in self.tokens if vocab.levels.get(t) == "base"]


MAX_PASSES = 64


def parse_pass_list(text: str, vocab: Vocabulary | None = None) -> PassList:
    """Parse and check a pass list; raise PassListError naming the first problem."""
    vocab = vocab or Vocabulary.default()
    tokens = split_tokens(text)
    if not tokens:
        raise PassListError("empty pass list")
    if len(tokens) > MAX_PASSES:
        raise PassListError(f"pass list has {len(tokens)} passes (limit {MAX_PASSES})")
    for t in tokens:
        if t not in vocab:
            raise PassListError(f"unknown pass '{t}' (not in the {vocab.version} vocabulary)")
    return PassList(tuple(tokens))


OZ = PassList(("Oz",))


def render(pass_list: PassList, base_pipelines: dict[str, str], vocab: Vocabulary | None = None) -> str:
    """Render to an ``opt -passes=`` string; consecutive passes of one level share a wrapper."""
    vocab = vocab or Vocabulary.default()
    groups: list[tuple[str, list[str]]] = []
    for tok in pass_list.tokens:
        level = vocab.levels[tok]
        if groups and groups[-1][0] == level and level != "base":
            groups[-1][1].append(tok)
        else:
            groups.append((level, [tok]))
    parts: list[str] = []
    for level, toks in groups:
        body = ",".join(toks)
        if level == "base":
            parts.append(base_pipelines[toks[0]])
        elif level == "module":
            parts.append(body)
        elif level == "cgscc":
            parts.append(f"cgscc({body})")
        elif level == "function":
            parts.append(f"function({body})")
        elif level == "loop":
            parts.append(f"function(loop({body}))")
        else:
            parts.append(f"function(loop-mssa({body}))")
    return ",".join(parts)
