"""Meta LLM Compiler FTD's flag-tuning format, read from `resources/prompt-formats.toml`.

Prompt: the published template around the TU's unoptimized IR, never cut (the model has a 16k
context; a TU that does not fit raises `PromptTooLong` and ships -Oz). Answer: an `opt -p '…'`
pipeline, e.g. ``Run passes -p 'module(default<Oz>),function(gvn-sink)' …``. The pipeline is
flattened into our vocabulary: adaptors (`module(…)`, `cgscc(…)`, `function(…)`, `loop(…)`,
`loop-mssa(…)`, `devirt<N>(…)`) are dropped because our renderer nests each pass at its own
level; `default<Ox>` becomes the base token `Ox`; LLVM 17 spellings are renamed; anything else
outside the vocabulary rejects the answer, with the pass named in its problems.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources

from clang_llm.errors import PromptTooLong
from clang_llm.optimizer.format_spec import CountTokens, PromptFormat
from clang_llm.optimizer.prompt import Answer
from clang_llm.passes import MAX_PASSES, PassList, Vocabulary
from clang_llm.prompt_format import FTD_FORMAT

FORMAT_NAME = FTD_FORMAT
ADAPTORS = ("module", "cgscc", "function", "loop", "loop-mssa", "devirt")
# `-p '…'`, `-passes="…"`, `--passes=…` (quoted with ', " or `), as opt takes a pipeline.
_QUOTED = re.compile(r"""(?:^|\s|`)-{1,2}p(?:asses)?(?:=|\s+)(['"`])(.*?)\1""", re.S)
_OPENED = re.compile(r"""(?:^|\s|`)-{1,2}p(?:asses)?(?:=|\s+)(['"`])""")
_BARE = re.compile(r"""(?:^|\s)-{1,2}p(?:asses)?(?:=|\s+)([\w<>;=,().\-]+)""")
_PIPELINE_ONLY = re.compile(r"[\w<>;=,().\-\s]+")


@dataclass(frozen=True)
class FtdSpec:
    template: str
    stop: tuple[str, ...]
    bases: dict[str, str]
    renames: dict[str, str]
    removed: dict[str, str]


@functools.cache
def spec() -> FtdSpec:
    data = tomllib.loads(resources.files("clang_llm.resources").joinpath("prompt-formats.toml").read_text())
    f = data[FORMAT_NAME]
    return FtdSpec(template=f["template"], stop=tuple(f.get("stop", [])), bases=dict(f.get("bases", {})),
                   renames=dict(f.get("renames", {})), removed=dict(f.get("removed", {})))


def render_prompt(ir_text: str) -> str:
    """The published template with the IR in place (no other change to either)."""
    before, _, after = spec().template.partition("{ir}")
    return f"{before}{ir_text}{after}"


def build_ftd_prompt(ir_text: str, budget: int, count_tokens: CountTokens) -> str:
    prompt = render_prompt(ir_text)
    n = count_tokens(prompt)
    if n > budget:
        raise PromptTooLong(f"{FORMAT_NAME} prompt of {n} tokens exceeds the {budget} the context leaves")
    return prompt


def find_pipeline(text: str) -> str | None:
    """The pipeline text of an answer: the first `-p`/`-passes` argument, else the whole answer
    when it is nothing but a pipeline; None when there is none (or it was cut inside its quotes)."""
    m = _QUOTED.search(text)
    if m:
        return m.group(2).strip()
    if _OPENED.search(text):
        return None  # an opening quote that never closes: the answer was cut mid-pipeline
    m = _BARE.search(text)
    if m:
        return m.group(1).strip()
    stripped = text.strip()
    if stripped and _PIPELINE_ONLY.fullmatch(stripped) and ("(" in stripped or stripped.startswith("default<")):
        return stripped
    return None


def _split_top(text: str) -> list[str]:
    """Split on commas outside (), <>."""
    items, depth, cur = [], 0, []
    for ch in text:
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur).strip())
    return [i for i in items if i]


def _flatten(pipeline: str, problems: list[str], depth: int = 0) -> list[str]:
    """Pass names in order, adaptors dropped; a problem line for each malformed item."""
    out: list[str] = []
    if depth > 8:
        problems.append("pipeline nested too deep")
        return out
    for item in _split_top(pipeline):
        if item.endswith(")") and "(" in item:
            head, _, inner = item.partition("(")
            name = head.split("<", 1)[0]
            if name not in ADAPTORS:
                problems.append(f"unsupported pipeline adaptor '{head[:60]}'")
                continue
            out += _flatten(inner[:-1], problems, depth + 1)
        elif "(" in item or ")" in item:
            problems.append(f"unbalanced parentheses near '{item[:60]}'")
        else:
            out.append(item)
    return out


def to_pass_list(pipeline: str, vocab: Vocabulary | None = None) -> tuple[PassList | None, list[str]]:
    """Our pass list for an FTD pipeline, or None and the problems that reject it."""
    vocab = vocab or Vocabulary.default()
    if pipeline.count("(") != pipeline.count(")") or pipeline.count("<") != pipeline.count(">"):
        return None, ["unbalanced pipeline (cut, or malformed)"]
    problems: list[str] = []
    s = spec()
    tokens: list[str] = []
    for name in _flatten(pipeline, problems):
        token = s.bases.get(name) or s.renames.get(name, name)
        if name in s.removed:
            problems.append(f"pass '{name}' {s.removed[name]}")
        elif token not in vocab:
            problems.append(f"pass '{name[:60]}' is not in the {vocab.version} vocabulary")
        else:
            tokens.append(token)
    if not tokens and not problems:
        problems.append("empty pipeline")
    if len(tokens) > MAX_PASSES:
        problems.append(f"pipeline has {len(tokens)} passes (limit {MAX_PASSES})")
    if problems:
        return None, problems
    return PassList(tuple(tokens)), []


def parse_ftd_answer(text: str) -> Answer:
    """Read an FTD answer; never raises. FTD predicts no instruction counts, so those stay None."""
    try:
        pipeline = find_pipeline(text if isinstance(text, str) else str(text))
        if pipeline is None:
            return Answer(problems=["could not parse: no opt pipeline (-p '...') in the answer"])
        pass_list, problems = to_pass_list(pipeline)
        return Answer(pass_text=pipeline, pass_list=pass_list, problems=problems)
    except Exception as exc:  # the model's text must never crash the build
        return Answer(problems=[f"could not parse: internal error {type(exc).__name__}"])


def ftd_answer_complete(text: str) -> bool:
    pipeline = find_pipeline(text)
    return pipeline is not None and pipeline.count("(") == pipeline.count(")")


FTD = PromptFormat(name=FORMAT_NAME, feedback=False, stop=spec().stop, build=build_ftd_prompt,
                   parse=parse_ftd_answer, complete=ftd_answer_complete)
