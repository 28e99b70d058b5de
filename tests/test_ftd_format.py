"""Meta LLM Compiler FTD's prompt format: the published template byte for byte, and how its
answers (opt pipelines, LLVM 17 pass names) are read into our vocabulary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SAMPLE_C

from clang_llm import ir
from clang_llm.errors import PromptTooLong
from clang_llm.optimizer.formats import get_format
from clang_llm.optimizer.ftd import find_pipeline, parse_ftd_answer, render_prompt
from clang_llm.passes import Vocabulary

# The template as published with the model (written out here, not read from the package).
PUBLISHED = "[INST] Tell me how to optimize this LLVM-IR for object file size:\n\n<code>{ir}</code> [/INST]"


@pytest.fixture(scope="module")
def recorded_ir(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("ftd")
    (d / "prog.c").write_text(SAMPLE_C)
    subprocess.run(["clang-22", "-Oz", "-Xclang", "-disable-llvm-passes", "-emit-llvm", "-c", "prog.c", "-o",
                    "prog.bc"], cwd=d, check=True)
    return str(ir.parse(d / "prog.bc"))


def test_prompt_is_the_published_template_byte_for_byte(recorded_ir: str) -> None:
    fmt = get_format("llm-compiler-ftd")
    prompt = fmt.build_prompt(recorded_ir, 10**9, len)
    assert prompt == PUBLISHED.replace("{ir}", recorded_ir)
    assert prompt.encode() == (b"[INST] Tell me how to optimize this LLVM-IR for object file size:\n\n<code>"
                               + recorded_ir.encode() + b"</code> [/INST]")
    assert render_prompt("{x}") == PUBLISHED.replace("{ir}", "{x}")  # braces in IR are not format fields
    assert not fmt.feedback


def test_prompt_that_does_not_fit_is_refused_not_cut(recorded_ir: str) -> None:
    with pytest.raises(PromptTooLong):
        get_format("llm-compiler-ftd").build_prompt(recorded_ir, 100, len)


ANSWERS = [
    # (answer as the model writes it, our pass list or None, a word the problems must name)
    ("Run passes -p 'module(default<Oz>)' to get object file size of 1,024 bytes", "Oz", None),
    ("opt -p 'module(default<Oz>),function(gvn-sink,simplifycfg<hoist-common-insts;sink-common-insts>)'",
     "Oz gvn-sink simplifycfg<hoist-common-insts;sink-common-insts>", None),
    ("-passes=\"module(cgscc(inline),function(loop-mssa(licm)),globaldce)\"", "inline licm globaldce", None),
    ("`-p 'default<O1>,function(instcombine,sroa,early-cse-memssa)'`",  # LLVM 17 names
     "O1 instcombine<no-verify-fixpoint> sroa<preserve-cfg> early-cse<memssa>", None),
    ("-p 'function(loop(simple-loop-unswitch))'", "simple-loop-unswitch<no-nontrivial;trivial>", None),
    ("module(default<Oz>,mergefunc)", "Oz mergefunc", None),  # a bare pipeline
    ("-p 'module(function(structurizecfg))'", None, "structurizecfg"),  # outside the vocabulary
    ("-p 'module(function(loop(loop-reroll)))'", None, "removed"),  # gone since LLVM 19
    ("-p 'module(attributor)'", None, "attributor"),
    ("-p 'repeat<2>(function(instcombine))'", None, "adaptor"),
    ("-p 'module(default<Oz>),function(gvn", None, "no opt pipeline"),  # cut inside the quotes
    ("-p 'module(default<Oz>'", None, "unbalanced"),
    ("I would use -Oz.", None, "no opt pipeline"),
    ("", None, "no opt pipeline"),
]


@pytest.mark.parametrize(("text", "want", "problem"), ANSWERS)
def test_answers_parse_as_documented(text: str, want: str | None, problem: str | None) -> None:
    a = parse_ftd_answer(text)
    if want is None:
        assert a.pass_list is None
        assert problem is not None and any(problem in p for p in a.problems), a.problems
    else:
        assert str(a.pass_list) == want, a.problems
        assert a.problems == []
        assert all(t in Vocabulary.default() for t in a.pass_list.tokens)


def test_cut_answer_is_incomplete_and_whole_one_complete() -> None:
    fmt = get_format("llm-compiler-ftd")
    assert not fmt.complete("Run passes -p 'module(default<Oz>),func")
    assert fmt.complete("Run passes -p 'module(default<Oz>)' to get")
    assert find_pipeline("no pipeline here") is None


def test_unknown_format_is_named() -> None:
    with pytest.raises(ValueError, match="llm-compiler-ftd"):
        get_format("gpt-9")


def test_renamed_passes_run_in_llvm22(tmp_path: Path) -> None:
    """Every rename target is a pass opt-22 accepts (the table is not wishful)."""
    from clang_llm.optimizer.ftd import spec

    for old, new in spec().renames.items():
        done = subprocess.run(["opt-22", "-disable-output", f"-passes={new}", "/dev/null"], capture_output=True)
        assert done.returncode == 0, (old, new, done.stderr)
        assert new in Vocabulary.default(), new
