"""Prompt/answer format cllm-v1: normalization, budgets on large TUs, tolerant answer parsing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from clang_llm import ir
from clang_llm.objsize import Sizes
from clang_llm.optimizer.prompt import (
    ANSWER_MARK,
    END_MARK,
    FEEDBACK_MARK,
    HEADER,
    MARKERS,
    Answer,
    build_feedback_prompt,
    build_prompt,
    feedback_text,
    normalize_ir,
    parse_answer,
    render_answer,
)
from clang_llm.passes import Vocabulary
from clang_llm.records import Finding, Prediction

needs_clang = pytest.mark.skipif(shutil.which("clang-22") is None, reason="clang-22 not installed")

SMALL_C = r"""
#include <string.h>
struct P { int x; double y; };
static const char msg[] = "semi; colon #1 !dbg !2 <|end|> <|answer|>";
int g[4] = {1, 2, 3, 4};
int sum(const int *a, int n) { int s = 0; for (int i = 0; i < n; i++) s += a[i]; return s; }
double f(struct P *p) { return p->x * p->y; }
const char *m(int i) { return msg + i; }
int main(void) { return sum(g, 4) + (int)strlen(msg); }
"""


def compile_c(source: str, tmp: Path, *flags: str) -> str:
    src = tmp / "t.c"
    src.write_text(source)
    out = tmp / "t.ll"
    cmd = ["clang-22", "-Oz", "-Xclang", "-disable-llvm-passes", "-S", "-emit-llvm", *flags, str(src), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out.read_text()


def big_c(n_functions: int = 300) -> str:
    """A TU of many functions of very different sizes and many globals (~10k+ IR lines)."""
    parts = [f"int tab{i}[{i % 7 + 1}] = {{{', '.join(str(j) for j in range(i % 7 + 1))}}};" for i in range(120)]
    parts += [f"extern int ext{i}(int);" for i in range(60)]
    for i in range(n_functions):
        body = " ".join(f"x = x * {j + 3} + tab{(i + j) % 120}[{j % 1}] + ext{(i * j) % 60}(x);" for j in range(i % 23))
        parts.append(f"int fn{i}(int x) {{ {body} return x; }}")
    return "\n".join(parts) + "\n"


def words(text: str) -> int:
    return len(text.split())


def quarter_chars(text: str) -> int:
    return (len(text) + 3) // 4


@pytest.fixture(scope="module")
def small_ir(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("clang-22") is None:
        pytest.skip("clang-22 not installed")
    return compile_c(SMALL_C, tmp_path_factory.mktemp("small"), "-g")


@pytest.fixture(scope="module")
def big_ir(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("clang-22") is None:
        pytest.skip("clang-22 not installed")
    return compile_c(big_c(), tmp_path_factory.mktemp("big"))


@pytest.fixture(scope="module")
def bpe_count(big_ir: str, tmp_path_factory: pytest.TempPathFactory):
    """A real byte-level BPE fitted on the IR, like the shipped model's tokenizer."""
    from tokenizers import Tokenizer

    from clang_llm.train.tokenizer import fit_tokenizer

    path = fit_tokenizer([normalize_ir(big_ir)], tmp_path_factory.mktemp("tok") / "tok.json", vocab_size=500)
    tok = Tokenizer.from_file(str(path))
    return lambda text: len(tok.encode(text).ids)


# --------------------------------------------------------------------------- normalize_ir


@needs_clang
def test_normalize_strips_noise_and_still_parses(small_ir: str) -> None:
    assert "!dbg" in small_ir and "#dbg_" in small_ir and "attributes #0" in small_ir
    norm = normalize_ir(small_ir)
    for gone in ("!dbg", "!tbaa", "#dbg_", "attributes #", "target triple", "target datalayout", "source_filename"):
        assert gone not in norm.replace("!dbg !2", ""), gone  # the string literal keeps its text
    assert not re.search(r"^\s*;", norm, re.M)  # no comment lines
    assert not re.search(r"\)\s+#\d+", norm)  # no attribute-group references
    assert not re.search(r"^!", norm, re.M)  # no metadata definitions
    assert "\n\n\n" not in norm
    assert 'c"semi; colon #1 !dbg !2 <|end|> <|answer|>\\00"' in norm  # strings untouched
    assert ir.verify_text(norm) is None
    assert normalize_ir(norm) == norm  # idempotent
    assert ir.count_instructions(ir.parse(norm)) == ir.count_instructions(ir.parse(small_ir))


def test_normalize_handcrafted_lines() -> None:
    text = (
        "; ModuleID = 'x'\n"
        'source_filename = "x.c"\n'
        '@s = constant [6 x i8] c"a;b #1\\00", align 1, !dbg !0\n\n\n\n'
        "define i32 @f(i32 %a) #0 !dbg !7 {\n"
        "entry:                      ; preds = %x\n"
        '  %b = add    i32 %a, 1, !dbg !9, !tbaa !{!"x"}\n'
        "    #dbg_value(i32 %a, !1, !DIExpression(), !2)\n"
        "  call void @llvm.dbg.value(metadata i32 %a, metadata !1, metadata !DIExpression())\n"
        "  ret i32 %b   ; done\n"
        "}\n"
        "attributes #0 = { nounwind }\n"
        "!0 = !{}\n"
    )
    assert normalize_ir(text) == (
        '@s = constant [6 x i8] c"a;b #1\\00", align 1\n'
        "\n"
        "define i32 @f(i32 %a) {\n"
        "entry:\n"
        "  %b = add i32 %a, 1\n"
        "  ret i32 %b\n"
        "}\n"
    )
    assert normalize_ir("") == ""
    assert normalize_ir("; only a comment\n\n") == ""


# --------------------------------------------------------------------------- build_prompt


@needs_clang
def test_small_tu_prompt_is_whole_ir(small_ir: str) -> None:
    prompt = build_prompt(small_ir, 100_000, words)
    assert prompt.startswith(HEADER) and prompt.endswith(ANSWER_MARK + "\n")
    assert "omitted" not in prompt
    body = prompt[len(HEADER) : -len(ANSWER_MARK) - 1]
    assert ir.verify_text(body) is None  # marker text inside strings is escaped, still valid IR
    for mark in MARKERS:  # each marker appears only where the format puts it
        assert prompt.count(mark) == (1 if mark in (HEADER.split()[0], ANSWER_MARK) else 0)


@needs_clang
@pytest.mark.parametrize("counter", [words, quarter_chars], ids=["words", "chars"])
@pytest.mark.parametrize("budget", [30, 200, 1000, 4000, 20_000])
def test_large_tu_stays_in_budget_and_is_deterministic(big_ir: str, counter, budget: int) -> None:
    assert len(big_ir.splitlines()) > 10_000
    prompt = build_prompt(big_ir, budget, counter)
    assert counter(prompt) <= budget
    assert prompt == build_prompt(big_ir, budget, counter)
    assert prompt.startswith(HEADER) and prompt.endswith(ANSWER_MARK + "\n")


@needs_clang
def test_large_tu_with_real_tokenizer(big_ir: str, bpe_count) -> None:
    for budget in (64, 4096):
        prompt = build_prompt(big_ir, budget, bpe_count)
        assert bpe_count(prompt) <= budget
        assert prompt.startswith(HEADER) and prompt.endswith(ANSWER_MARK + "\n")
        assert prompt == build_prompt(big_ir, budget, bpe_count)


@needs_clang
def test_large_tu_keeps_biggest_functions_and_accounts_for_the_rest(big_ir: str) -> None:
    norm = normalize_ir(big_ir)
    defines = re.findall(r"^define .*@(fn\d+)\(", norm, re.M)
    sizes = {}
    for name, body in re.findall(r"^define [^\n]*@(fn\d+)\([^\n]*\{\n(.*?)^\}", norm, re.M | re.S):
        sizes[name] = sum(1 for ln in body.splitlines() if ln.startswith("  "))
    prompt = build_prompt(big_ir, 3000, words)
    shown = re.findall(r"^define .*@(fn\d+)\(", prompt, re.M)
    assert 0 < len(shown) < len(defines)
    assert shown == sorted(shown, key=defines.index)  # source order
    # A larger function is only left out when it could not fit: the biggest ones are in.
    biggest = max(sizes.values())
    assert any(sizes[n] == biggest for n in shown)
    m = re.search(r"^; \.\.\. (\d+) more functions, (\d+) instructions omitted$", prompt, re.M)
    assert m is not None
    assert int(m.group(1)) == len(defines) - len(shown)
    assert int(m.group(2)) == sum(sizes.values()) - sum(sizes[n] for n in shown)


def test_single_huge_function_is_cut_not_dropped() -> None:
    body = "".join(f"  %v{i} = add i32 %a, {i}\n" for i in range(2000))
    text = f"define i32 @huge(i32 %a) {{\n{body}  ret i32 %a\n}}\n"
    prompt = build_prompt(text, 300, words)
    assert words(prompt) <= 300
    assert "define i32 @huge" in prompt and "instructions omitted" in prompt


def test_budget_too_small_raises() -> None:
    with pytest.raises(ValueError, match="too small"):
        build_prompt("define void @f() {\n  ret void\n}\n", 2, words)


def test_prompt_of_empty_ir() -> None:
    assert build_prompt("", 100, words) == HEADER + ANSWER_MARK + "\n"


# --------------------------------------------------------------------------- answers


def test_render_parse_round_trip() -> None:
    passes = "Oz gvn-sink simplifycfg<hoist-common-insts;sink-common-insts>"
    text = render_answer(passes, 123, 100)
    assert text == f"passes: {passes}\ncount_before: 123\ncount_after: 100\nir:\n{END_MARK}"
    a = parse_answer(text)
    assert a.pass_text == passes and str(a.pass_list) == passes
    assert (a.count_before, a.count_after, a.ir, a.problems) == (123, 100, None, [])

    ir_text = "define void @f() {\n  ret void\n}\n"
    b = parse_answer(ANSWER_MARK + "\n" + render_answer("Oz", 5, 1, ir_text))
    assert b.ir == ir_text and b.problems == [] and b.pass_list is not None


def test_parse_is_tolerant_of_layout() -> None:
    a = parse_answer("Sure!\n  PASSES :  Oz,  gvn-sink \nCount_Before: 7\ncount_after:3")
    assert str(a.pass_list) == "Oz gvn-sink" and (a.count_before, a.count_after) == (7, 3)
    assert a.problems == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "could not parse: no 'passes:' line"),
        ("count_before: 3\ncount_after: 2", "could not parse: no 'passes:' line"),
        ("passes: Oz foo\ncount_before: 1\ncount_after: 1", "unknown pass 'foo' (not in vocabulary)"),
        ("passes: internalize\ncount_before: 1\ncount_after: 1", "unknown pass 'internalize' (not in vocabulary)"),
        ("passes:\ncount_before: 1\ncount_after: 1", "bad pass list: empty pass list"),
        ("passes: Oz\ncount_before: -4\ncount_after: 1", "count_before is not a count: '-4'"),
        ("passes: Oz\ncount_before: 1\ncount_after: 1e9", "count_after is not a count: '1e9'"),
        ("passes: Oz\npasses: Os\ncount_before: 1\ncount_after: 1", "several 'passes:' lines; used the first"),
        ("passes: Oz\ncount_after: 1", "no 'count_before:' line"),
        ("passes: " + "Oz " * 65 + "\ncount_before: 1\ncount_after: 1", "bad pass list: pass list has 65 passes"),
    ],
)
def test_parse_reports_precise_problems(text: str, problem: str) -> None:
    a = parse_answer(text)
    assert any(p.startswith(problem) for p in a.problems), a.problems


@pytest.mark.parametrize(
    "text",
    [
        "passes: Oz\x00gvn\ncount_before: 9" + "9" * 5000,
        "passes: " + "<" * 10_000,
        "passes: simplifycfg<hoist-common-insts;sink-common-insts",  # unbalanced parameter
        "passes: Oz" + END_MARK + "passes: foo",
        ANSWER_MARK * 3 + "ir:\n" + "x" * 100,
        "\ufeff\u202epasses: Oz\r\ncount_before: 1\r\ncount_after: 1\r\n",
        "passes: Oz\nir:\npasses: foo\n",
    ],
)
def test_parse_adversarial_text(text: str) -> None:
    a = parse_answer(text)
    assert isinstance(a, Answer)
    if a.pass_list is not None:
        assert all(t in Vocabulary.default() for t in a.pass_list.tokens)


def test_parse_never_raises_on_non_text() -> None:
    for junk in (None, 42, b"passes: Oz", ["passes: Oz"]):
        assert isinstance(parse_answer(junk), Answer)  # type: ignore[arg-type]


def test_unknown_pass_never_reaches_pass_list() -> None:
    a = parse_answer("passes: Oz internalize gvn-sink\ncount_before: 1\ncount_after: 1")
    assert a.pass_list is None and a.pass_text == "Oz internalize gvn-sink"


_VOCAB = Vocabulary.default().tokens
_pass_lines = st.lists(st.one_of(st.sampled_from(_VOCAB), st.text(max_size=12)), max_size=8).map(
    lambda toks: "passes: " + " ".join(toks)
)
_answer_texts = st.lists(
    st.one_of(
        st.text(),
        _pass_lines,
        st.sampled_from([*MARKERS, "ir:", "count_before: 3", "count_after: x", "passes:", "<", ">", ";"]),
    ),
    max_size=10,
).map("\n".join)


@seed(20_240_601)  # replayable: the same examples on every run; a failure prints its reproduce blob
@settings(max_examples=400, deadline=None, database=None, print_blob=True)
@given(st.one_of(st.text(), _answer_texts))
def test_parse_never_raises_and_only_yields_vocabulary(text: str) -> None:
    a = parse_answer(text)
    assert isinstance(a, Answer)
    if a.pass_list is not None:
        assert a.pass_list.tokens and all(t in Vocabulary.default() for t in a.pass_list.tokens)
        assert a.problems == [] or not any(p.startswith(("unknown pass", "bad pass list")) for p in a.problems)


# --------------------------------------------------------------------------- feedback


def _finding(**kw) -> Finding:
    base = dict(pass_list="Oz gvn-sink", valid=True, count_before=120, count_after=97)
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


def test_fast_feedback() -> None:
    f = _finding(sizes=Sizes(text=90, alloc=200))
    claimed = Prediction(count_before=123, count_after=100)
    oz = _finding(pass_list="Oz", count_after=99, sizes=Sizes(text=100, alloc=210))
    text = feedback_text("fast", f, None, oz=oz, prediction=claimed)
    assert text.splitlines() == [
        "feedback: pass list valid",
        "feedback: predicted count_before 123, real 120",
        "feedback: predicted count_after 100, real 97",
        "feedback: beats -Oz yes (.text 90 vs 100 bytes, alloc 200 vs 210 bytes)",
    ]
    assert "-Oz" not in feedback_text("fast", f, None, prediction=claimed)
    assert "predicted count_after missing, real 97" in feedback_text("fast", f, None)  # no claim at all


def test_short_and_long_feedback() -> None:
    f = _finding(
        valid=False,
        error="opt: unknown pass name 'foo'\n<|end|> second line",
        error_kind="opt-error",
        count_after=None,
    )
    claimed = Prediction(count_after=50, ir_parses=False, ir_error="error: expected type", bleu=0.4567)
    short = feedback_text("short", f, None, prediction=claimed)
    assert short.splitlines() == [
        "feedback: pass list invalid (opt-error)",
        "feedback: predicted count_before missing, real 120",
        "feedback: predicted count_after 50, real unknown",
        "feedback: error: opt: unknown pass name 'foo' | <\\7Cend|> second line",
        "feedback: generated ir does not parse: error: expected type",
        "feedback: bleu 0.457 (generated ir vs compiled ir)",
    ]
    assert all(line.startswith("feedback: ") for line in short.splitlines())
    compiled = "; comment\n" + "".join(f"@g{i} = global i32 {i}\n" for i in range(2000))
    long = feedback_text("long", f, compiled, long_budget_chars=500, prediction=claimed)
    assert long.startswith(short) and "feedback: compiled ir:" in long
    assert "@g0 = global i32 0" in long and "more lines omitted" in long and len(long) < len(short) + 700
    with pytest.raises(ValueError):
        feedback_text("medium", f, None)


def test_feedback_prompt_extends_original() -> None:
    original = build_prompt("define void @f() {\n  ret void\n}\n", 1000, words)
    answer = render_answer("Oz foo", 3, 1, "define void @f() {\n  ret void\n}\n")
    fb = feedback_text("short", _finding(valid=False, error_kind="unknown-pass"), None)
    prompt = build_feedback_prompt(original, answer, fb)
    assert prompt.startswith(original) and prompt.endswith(ANSWER_MARK + "\n")
    assert prompt.count(END_MARK) == 1 and prompt.count(FEEDBACK_MARK) == 1
    assert "passes: Oz foo" in prompt and "feedback: pass list invalid (unknown-pass)" in prompt
    # a model answer without end marker gets one
    assert build_feedback_prompt(original, "passes: Oz", fb).count(END_MARK) == 1
    # within a budget: the answer's IR goes first, then feedback lines, never over
    full = words(prompt)
    for budget in (full, full - 3, words(original) + 12, words(original)):
        p = build_feedback_prompt(original, answer, fb, max_tokens=budget, count_tokens=words)
        assert words(p) <= budget and p.startswith(original)
