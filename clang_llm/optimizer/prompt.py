"""Prompt and answer text of the model (format ``cllm-v1``), after Grubisic et al. 2024.

A prompt is a header line, the normalized IR of the translation unit and the answer marker::

    <|prompt|> cllm-v1 size
    <normalized IR>
    <|answer|>

The answer (what the model writes, and the training target) is::

    passes: Oz gvn-sink simplifycfg<hoist-common-insts;sink-common-insts>
    count_before: 123
    count_after: 100
    ir:
    <optional optimized IR>
    <|end|>

A feedback round appends the previous answer, ``<|feedback|>``, ``feedback: ...`` lines and the
answer marker again to the original prompt (`build_feedback_prompt`).

Large translation units (real ones run to tens of thousands of IR lines) are cut to the token
budget by `build_prompt`, deterministically:

1. If the whole normalized IR fits, it is used as is. (Functions and module-level lines are
   counted one by one first; the whole text is counted only when their sum is near the budget.)
2. Otherwise module-level lines (types, globals, declarations) are kept in order, each cut to
   ``GLOBAL_LINE_CHARS`` characters; they may use at most a quarter of the budget, the rest of
   them is replaced by a count (``; ... 812 more module-level lines omitted``).
3. Whole function bodies are then taken largest first (by instruction count, ties in source
   order) while they fit the remaining budget; smaller ones may still fill gaps. Large functions
   go first because they dominate the instruction count and the size effect of a pass list.
4. Chosen functions are printed in source order, followed by one summary line for the others
   (``; ... 37 more functions, 1234 instructions omitted``).
5. If not even one function fits, the largest one is shown with its body cut short.
6. The final text is counted again; while it is over budget (token counts of pieces are not
   exactly additive) the smallest chosen function is dropped. The result is always within
   ``max_tokens``; a budget too small even for header and marker raises ``ValueError``.

The model's text is never trusted: `parse_answer` never raises and only puts vocabulary tokens
into a `PassList`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from clang_llm.errors import PassListError
from clang_llm.passes import PassList, Vocabulary, parse_pass_list, split_tokens
from clang_llm.prompt_format import (  # noqa: F401  (re-exported: the prompt's own vocabulary)
    ANSWER_MARK,
    END_MARK,
    FEEDBACK_FORMS,
    FEEDBACK_MARK,
    MARKERS,
    NEW_MARK,
    PROMPT_FORMAT,
    PROMPT_FORMAT_V2,
    PROMPT_MARK,
)
from clang_llm.records import Finding, Prediction

HEADER = f"{PROMPT_MARK} {PROMPT_FORMAT} size\n"
HEADER_V2 = f"{PROMPT_MARK} {PROMPT_FORMAT_V2} size\n"
GLOBAL_LINE_CHARS = 160
# No token of a prompt tokenizer spans more characters than this (byte-level BPE on IR: the
# longest tokens are about 20), so len(text) / TOKEN_CHARS_MAX is a lower bound of its tokens.
TOKEN_CHARS_MAX = 32

CountTokens = Callable[[str], int]

# --------------------------------------------------------------------------- IR normalization

_STRING = re.compile(r'"[^"]*"?')  # IR strings escape '"' as \22, so no escaped quotes inside
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_DROP_PREFIXES = (
    "source_filename",
    "target datalayout",
    "target triple",
    "attributes #",
    "!",
    "#dbg_",
    "uselistorder",
)
_ATTACHMENT = re.compile(
    r"(?:,\s*|\s+)!(?!\d)[A-Za-z_.$][-\w.$]*\s+!(?:\d+|\{[^{}]*\}|[A-Za-z_][-\w.]*(?:\([^()]*\))?)"
)
_ATTR_GROUP = re.compile(r"\s+#\d+\b")
_SPACES = re.compile(r"(?<=\S)[ \t]{2,}")
_DBG_INTRINSIC = re.compile(r"@llvm\.dbg\.")


def _mask_strings(line: str) -> tuple[str, list[str]]:
    strings: list[str] = []

    def keep(m: re.Match[str]) -> str:
        strings.append(m.group(0))
        return f"\x00{len(strings) - 1}\x00"

    return _STRING.sub(keep, line.replace("\x00", "")), strings


def _unmask(line: str, strings: list[str]) -> str:
    return _PLACEHOLDER.sub(lambda m: strings[int(m.group(1))], line)


def _normalize_line(raw: str) -> str | None:
    masked, strings = _mask_strings(raw.rstrip())
    code = masked.split(";", 1)[0].rstrip()
    head = code.lstrip()
    if head.startswith(_DROP_PREFIXES):
        return None
    if head.startswith(("declare", "call", "tail call")) and _DBG_INTRINSIC.search(head):
        return None
    code = _ATTACHMENT.sub("", code)
    code = _ATTACHMENT.sub("", code)  # a second pass catches ", !a !1, !b !2" after the first cut
    code = _ATTR_GROUP.sub("", code)
    code = _SPACES.sub(" ", code).rstrip()
    return _unmask(code, strings)


def normalize_ir(text: str) -> str:
    """Canonical IR text for prompts: what matters for size, without debug info and noise.

    Strips comments, module header lines (source_filename, datalayout, triple), metadata
    definitions and ``!name !N`` attachments, ``#N`` attribute groups and their definitions,
    debug records and ``llvm.dbg`` intrinsics; collapses runs of blanks. String literals and
    quoted names are left untouched, so the text still reads (and mostly parses) as IR.
    """
    out: list[str] = []
    for raw in text.splitlines():
        line = _normalize_line(raw)
        if line is None:
            continue
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def escape_markers(text: str) -> str:
    """Make marker strings inside IR harmless: ``<|`` becomes ``<\\7C`` (valid in IR strings)."""
    return text.replace("<|", "<\\7C")


# --------------------------------------------------------------------------- prompt building


@dataclass(frozen=True)
class _Function:
    index: int
    text: str  # "define ... {" up to and including "}", newline-terminated
    instructions: int


def _split_module(norm: str) -> tuple[list[str], list[_Function]]:
    """Split normalized IR into module-level lines and function definitions."""
    module: list[str] = []
    functions: list[_Function] = []
    body: list[str] | None = None
    for line in norm.splitlines():
        if body is None:
            if line.startswith("define ") and line.rstrip().endswith("{"):
                body = [line]
            elif line:
                module.append(line)
            continue
        body.append(line)
        if line == "}":
            functions.append(_function(len(functions), body))
            body = None
    if body is not None:  # unterminated definition: keep it as a function anyway
        functions.append(_function(len(functions), body))
    return module, functions


def _function(index: int, lines: list[str]) -> _Function:
    n = sum(1 for ln in lines[1:] if ln[:1].isspace() and ln.strip())
    return _Function(index, "\n".join(lines) + "\n", n)


def _assemble(body: str, head: str = HEADER) -> str:
    return f"{head}{body}{ANSWER_MARK}\n"


def _summary(n_functions: int, n_instructions: int) -> str:
    return f"; ... {n_functions} more functions, {n_instructions} instructions omitted\n"


def _cut_function(fn: _Function, budget: int, count_tokens: CountTokens) -> str | None:
    """The head of one function that fits the budget, with a count of the cut instructions."""
    lines = fn.text.splitlines()
    lo, hi, best = 1, len(lines) - 1, None
    while lo <= hi:  # binary search on the number of lines kept
        mid = (lo + hi) // 2
        kept = lines[:mid]
        cut = sum(1 for ln in lines[mid:-1] if ln[:1].isspace() and ln.strip())
        text = "\n".join(kept) + f"\n  ; ... {cut} instructions omitted\n}}\n"
        if count_tokens(text) <= budget:
            best, lo = text, mid + 1
        else:
            hi = mid - 1
    return best


def build_prompt(ir_text: str, max_tokens: int, count_tokens: CountTokens, *, summary: bool = False) -> str:
    """The prompt for one TU, always within ``max_tokens`` (strategy in the module docstring).

    `summary` (format cllm-v2): the header names cllm-v2 and is followed by the whole TU's
    `; tu:` / `; ops:` lines (optimizer/summary.py), which the cut to the budget never removes."""
    norm = escape_markers(normalize_ir(ir_text))
    head = HEADER
    if summary:
        from clang_llm.optimizer.summary import summarize

        head = HEADER_V2 + summarize(norm).render()
    fixed = count_tokens(_assemble("", head))
    if fixed > max_tokens:
        raise ValueError(f"max_tokens={max_tokens} is too small for a prompt (needs {fixed})")
    module, functions = _split_module(norm)
    # A function longer than TOKEN_CHARS_MAX characters per budget token cannot fit: it is not
    # counted (tokenizing the largest functions was most of the time spent on a large TU).
    costs = {f.index: count_tokens(f.text) if len(f.text) <= TOKEN_CHARS_MAX * max_tokens else max_tokens + 1
             for f in functions}
    estimate = fixed + count_tokens("\n".join(module)) + sum(costs.values())
    if estimate <= max_tokens * 1.1 + 16:  # pieces add up to about the whole; else skip a costly count
        full = _assemble(norm, head)
        if count_tokens(full) <= max_tokens:
            return full
    total_insts = sum(f.instructions for f in functions)
    reserve = count_tokens(_summary(len(functions), total_insts)) + 2
    budget = max_tokens - fixed - reserve

    module_text = _module_section(module, max(0, budget // 4), count_tokens)
    remaining = budget - count_tokens(module_text) if module_text else budget

    chosen: list[_Function] = []
    for fn in sorted(functions, key=lambda f: (-f.instructions, f.index)):
        if costs[fn.index] <= remaining:
            chosen.append(fn)
            remaining -= costs[fn.index]
    partial: tuple[_Function, str] | None = None
    if not chosen and functions and remaining > 0:
        largest = min(functions, key=lambda f: (-f.instructions, f.index))
        cut = _cut_function(largest, remaining, count_tokens)
        if cut is not None:
            partial = (largest, cut)

    module_fallbacks = [f"; ... {len(module)} module-level lines omitted\n", ""] if module else []
    while True:
        text = _render(module_text, functions, chosen, partial, head)
        over = count_tokens(text) - max_tokens
        if over <= 0:
            return text
        if partial is not None:
            partial = None
        elif chosen:  # drop the smallest chosen functions, at least as many tokens as we are over
            dropped = 0
            for fn in sorted(chosen, key=lambda f: (f.instructions, -f.index)):
                if dropped >= over:
                    break
                chosen.remove(fn)
                dropped += costs[fn.index]
        elif module_fallbacks:
            module_text = module_fallbacks.pop(0)
        else:
            return _assemble("", head)


def _module_section(module: list[str], budget: int, count_tokens: CountTokens) -> str:
    lines = [ln if len(ln) <= GLOBAL_LINE_CHARS else ln[:GLOBAL_LINE_CHARS] + " ..." for ln in module]
    text = "\n".join(lines) + "\n" if lines else ""
    if count_tokens(text) <= budget:
        return text
    kept: list[str] = []
    used = 0
    for ln in lines:
        cost = count_tokens(ln + "\n")
        if used + cost > budget:
            break
        kept.append(ln)
        used += cost
    omitted = len(lines) - len(kept)
    return "".join(ln + "\n" for ln in kept) + f"; ... {omitted} more module-level lines omitted\n"


def _render(
    module_text: str,
    functions: list[_Function],
    chosen: list[_Function],
    partial: tuple[_Function, str] | None,
    head: str,
) -> str:
    shown = {f.index: f.text for f in chosen}
    if partial is not None:
        shown[partial[0].index] = partial[1]
    parts = [module_text] if module_text else []
    parts += [("\n" if parts else "") + shown[f.index] for f in functions if f.index in shown]
    rest = [f for f in functions if f.index not in shown]
    omitted = sum(f.instructions for f in rest)
    if partial is not None:
        omitted += partial[0].instructions - _count_shown(partial[1])
    if rest or partial is not None:
        parts.append(("\n" if parts else "") + _summary(len(rest), omitted))
    return _assemble("".join(parts), head)


def _count_shown(text: str) -> int:
    return sum(1 for ln in text.splitlines()[1:] if ln[:1].isspace() and ln.strip() and "; ..." not in ln)


# --------------------------------------------------------------------------- answers


@dataclass
class Answer:
    """What could be read from one model answer; ``problems`` says precisely what could not."""

    pass_text: str | None = None
    pass_list: PassList | None = None
    count_before: int | None = None
    count_after: int | None = None
    ir: str | None = None
    problems: list[str] = field(default_factory=list)
    choice: int | None = None  # cllm-v2: the stored list the answer opened with (`<|L3|>` gives 3)


_CHOICE = re.compile(r"\s*<\|(?:L(\d{1,3})|new)\|>")
_KEY = re.compile(r"^\s*(passes|count_before|count_after|ir)\s*:(.*)$", re.IGNORECASE)
_IR_SECTION = re.compile(r"(?im)^\s*ir\s*:.*$")


def without_ir(answer: str) -> str:
    """An answer up to its `ir:` section (the lines a feedback prompt keeps of a long answer)."""
    return _IR_SECTION.split(answer, maxsplit=1)[0].rstrip("\n")
_MAX_COUNT = 2**40


def render_answer(passes: str, count_before: int, count_after: int, ir: str | None = None, *,
                  choice: str = "") -> str:
    """The answer text the model learns to write (training target), ending with the end marker.

    ``ir`` is normalized like prompt IR, so generated IR and prompts share one vocabulary.
    ``choice`` (cllm-v2) is the answer's first token: `pool_token(i)` for stored list i, or
    `NEW_MARK` for a list that is not stored.
    """
    body = escape_markers(normalize_ir(ir)) if ir and ir.strip() else ""
    return (f"{choice}passes: {passes}\ncount_before: {count_before}\ncount_after: {count_after}\n"
            f"ir:\n{body}{END_MARK}")


def parse_answer(text: object, vocab: Vocabulary | None = None) -> Answer:
    """Read a model answer tolerantly; never raises, whatever the input."""
    try:
        return _parse_answer(text if isinstance(text, str) else str(text), vocab)
    except Exception as exc:  # the model's text must never crash the build
        return Answer(problems=[f"could not parse: internal error {type(exc).__name__}"])


def _parse_answer(text: str, vocab: Vocabulary | None) -> Answer:
    answer = Answer()
    if ANSWER_MARK in text:
        text = text.rsplit(ANSWER_MARK, 1)[1]
    text = text.split(END_MARK, 1)[0]
    if (c := _CHOICE.match(text)) is not None:
        answer.choice = int(c.group(1)) if c.group(1) is not None else None
        text = text[c.end():]
    lines = text.splitlines()
    seen: set[str] = set()
    ir_start: int | None = None
    for i, line in enumerate(lines):
        m = _KEY.match(line)
        if m is None:
            continue
        key, value = m.group(1).lower(), m.group(2).strip()
        if key in seen:
            problem = f"several '{key}:' lines; used the first"
            if problem not in answer.problems:
                answer.problems.append(problem)
            continue
        seen.add(key)
        if key == "ir":
            ir_start = i + 1
            break
        if key == "passes":
            answer.pass_text = value
        else:
            setattr(answer, key, _read_count(key, value, answer.problems))
    if answer.pass_text is None:
        answer.problems.insert(0, "could not parse: no 'passes:' line")
    else:
        answer.pass_list = _read_passes(answer.pass_text, vocab or Vocabulary.default(), answer.problems)
    for key in ("count_before", "count_after"):
        if key not in seen:
            answer.problems.append(f"no '{key}:' line")
    if ir_start is not None:
        ir = "\n".join(lines[ir_start:]).strip("\n")
        answer.ir = ir + "\n" if ir.strip() else None
    return answer


def _show(text: str, limit: int = 60) -> str:
    """Model text quoted in a problem message: short, one line, printable."""
    short = text[:limit] + ("..." if len(text) > limit else "")
    return short.encode("unicode_escape").decode("ascii")


def _read_count(key: str, value: str, problems: list[str]) -> int | None:
    if not re.fullmatch(r"\d{1,13}", value) or int(value) > _MAX_COUNT:
        problems.append(f"{key} is not a count: '{_show(value, 40)}'")
        return None
    return int(value)


def _read_passes(text: str, vocab: Vocabulary, problems: list[str]) -> PassList | None:
    unknown = [t for t in split_tokens(text) if t not in vocab]
    for t in dict.fromkeys(unknown):
        problems.append(f"unknown pass '{_show(t)}' (not in vocabulary)")
    if unknown:
        return None
    try:
        pass_list = parse_pass_list(text, vocab)
    except PassListError as exc:
        problems.append(f"bad pass list: {exc}")
        return None
    if any(t not in vocab for t in pass_list.tokens):  # belt and braces: never a foreign token
        return None
    return pass_list


# --------------------------------------------------------------------------- feedback


def _one_line(text: str, limit: int = 300) -> str:
    flat = " | ".join(ln.strip() for ln in text.splitlines() if ln.strip())
    flat = escape_markers(flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _count_line(what: str, predicted: int | None, real: int | None) -> str:
    p = "missing" if predicted is None else str(predicted)
    r = "unknown" if real is None else str(real)
    return f"feedback: predicted {what} {p}, real {r}"


def _oz_line(finding: Finding, oz: Finding) -> str | None:
    if finding.sizes is not None and oz.sizes is not None:
        s, o = finding.sizes, oz.sizes
        beats = s.not_larger_than(o) and (s.text, s.alloc) < (o.text, o.alloc)
        return (
            f"feedback: beats -Oz {'yes' if beats else 'no'} "
            f"(.text {s.text} vs {o.text} bytes, alloc {s.alloc} vs {o.alloc} bytes)"
        )
    if finding.count_after is not None and oz.count_after is not None:
        beats = finding.count_after < oz.count_after
        return f"feedback: beats -Oz {'yes' if beats else 'no'} (count_after {finding.count_after} vs {oz.count_after})"
    return None


def _truncate_ir(ir: str, budget_chars: int) -> str:
    lines = normalize_ir(ir).splitlines()
    kept, used = [], 0
    for ln in lines:
        if used + len(ln) + 1 > budget_chars:
            break
        kept.append(ln)
        used += len(ln) + 1
    tail = [f"; ... {len(lines) - len(kept)} more lines omitted"] if len(kept) < len(lines) else []
    return escape_markers("\n".join(kept + tail))


def feedback_text(
    form: str,
    finding: Finding,
    compiled_ir: str | None,
    *,
    oz: Finding | None = None,
    long_budget_chars: int = 6000,
    prediction: Prediction | None = None,
) -> str:
    """Feedback lines for the next round: ``fast``, ``short`` or ``long`` (Grubisic et al.).

    fast: validity, predicted vs real instruction counts, whether it beat -Oz (when ``oz`` is
    given). short: fast plus error messages (opt's error, generated-IR parse error, BLEU).
    long: short plus the IR opt produced, cut to ``long_budget_chars``. ``prediction`` is what the
    answer claimed (its counts, its IR); None reads as an answer that claimed nothing.
    """
    p = prediction or Prediction()
    if form not in FEEDBACK_FORMS:
        raise ValueError(f"unknown feedback form {form!r} (expected one of {', '.join(FEEDBACK_FORMS)})")
    lines = [
        "feedback: pass list valid"
        if finding.valid
        else f"feedback: pass list invalid ({finding.error_kind or 'error'})",
        _count_line("count_before", p.count_before, finding.count_before),
        _count_line("count_after", p.count_after, finding.count_after),
    ]
    if oz is not None and finding.valid and (line := _oz_line(finding, oz)) is not None:
        lines.append(line)
    if form in ("short", "long"):
        if finding.error:
            lines.append(f"feedback: error: {_one_line(finding.error)}")
        if p.ir_parses is None:
            lines.append("feedback: generated ir missing")
        elif p.ir_parses:
            lines.append("feedback: generated ir parses")
        else:
            err = _one_line(p.ir_error or "unknown error")
            lines.append(f"feedback: generated ir does not parse: {err}")
        if p.bleu is not None:
            lines.append(f"feedback: bleu {p.bleu:.3f} (generated ir vs compiled ir)")
    if form == "long" and compiled_ir:
        lines.append("feedback: compiled ir:")
        lines.append(_truncate_ir(compiled_ir, long_budget_chars))
    return "\n".join(lines) + "\n"


def build_feedback_prompt(
    original_prompt: str,
    previous_answer: str,
    feedback: str,
    *,
    max_tokens: int | None = None,
    count_tokens: CountTokens | None = None,
) -> str:
    """Next round's prompt: original prompt + previous answer + feedback + answer marker.

    With ``max_tokens`` and ``count_tokens`` it stays within budget: first the previous
    answer's IR goes, then feedback lines from the end; at worst the original prompt is returned.
    """
    previous = previous_answer.split(END_MARK, 1)[0].rstrip("\n")
    choice = _CHOICE.match(previous)  # cllm-v2's choice token stays one token; the rest is text
    head = previous[: choice.end()].strip() if choice else ""
    answer = head + escape_markers(previous[choice.end():] if choice else previous)

    def make(ans: str, fb: str) -> str:
        return f"{original_prompt}{ans}\n{END_MARK}\n{FEEDBACK_MARK}\n{fb.rstrip()}\n{ANSWER_MARK}\n"

    fb = escape_markers(feedback)
    text = make(answer, fb)
    if max_tokens is None or count_tokens is None or count_tokens(text) <= max_tokens:
        return text
    answer = without_ir(answer) + "\nir:"
    fb_lines = fb.rstrip().splitlines()
    while fb_lines:
        text = make(answer, "\n".join(fb_lines))
        if count_tokens(text) <= max_tokens:
            return text
        fb_lines.pop()
    return original_prompt


def prompt_budgets(context: int, max_new_tokens: int, first_cap: int = 0) -> tuple[int, int]:
    """(tokens for round 1's prompt, tokens for any prompt). Round 1 always leaves room for a
    previous answer and feedback lines, so every round of every setting starts from the same
    first prompt (and the model is trained on exactly that prompt). `first_cap` is the model
    card's `prompt_budget`: a model may be trained on shorter first prompts than its context."""
    total = max(64, context - max_new_tokens)
    first = max(48, total - max_new_tokens - context // 5)
    return (min(first, first_cap) if first_cap > 0 else first), total
