"""The cllm-v2 prompt's whole-TU summary: real counts on real clang IR, and it survives the cut
of a TU far larger than the budget."""

from __future__ import annotations

from pathlib import Path

from model_fixture import compile_ir

from clang_llm import ir
from clang_llm.optimizer.prompt import build_prompt, normalize_ir, parse_answer, render_answer
from clang_llm.optimizer.summary import summarize
from clang_llm.prompt_format import NEW_MARK, pool_token

SOURCE = """
static int table[4] = {1, 2, 3, 4};
const char *names[] = {"a", "b"};
extern int ext(int);
static int helper(int x) { return x * 3; }
int run(int n, int (*cb)(int)) {
  int s = 0;
  for (int i = 0; i < n; i++) {          /* loop 1 */
    switch (i & 3) { case 0: s += helper(i); break; case 1: s -= ext(i); break; default: s ^= table[i & 3]; }
    while (s > 1000) s /= 2;             /* loop 2 */
  }
  return s + cb(n);                      /* an indirect call */
}
"""


def _count(text: str) -> int:
    return max(1, len(text) // 4)


def test_summary_counts_a_real_tu(tmp_path: Path) -> None:
    text = compile_ir(SOURCE, tmp_path, "run")
    s = summarize(normalize_ir(text))
    assert s.instructions == ir.count_instructions(ir.parse(text))  # every instruction, exactly
    assert (s.functions, s.internal_functions) == (2, 1) and s.declarations >= 1  # ext, intrinsics
    assert s.loops == 2 and s.switches == 1
    assert s.calls == 3 and s.indirect_calls == 1  # helper, ext, cb
    assert s.globals >= 2 and s.largest_function < s.instructions
    assert dict(s.opcodes)["switch"] == 1 and sum(n for _, n in s.opcodes) == s.instructions
    assert s.render() == summarize(normalize_ir(text)).render()  # deterministic


def test_summary_survives_truncation_and_prompt_stays_in_budget(tmp_path: Path) -> None:
    big = "\n".join(f"int f{i}(int x) {{ int s = 0; for (int j = 0; j < x; j++) s += j * {i}; return s; }}"
                    for i in range(80))
    text = compile_ir(big, tmp_path, "big")
    head = summarize(normalize_ir(text)).render()
    prompt = build_prompt(text, 300, _count, summary=True)
    assert _count(prompt) <= 300
    assert prompt.startswith("<|prompt|> cllm-v2 size\n" + head)
    assert "more functions" in prompt  # the IR was cut, the summary was not
    assert "fns 80 " in head and "loops 80 " in head
    v1 = build_prompt(text, 300, _count)
    assert v1.startswith("<|prompt|> cllm-v1 size\n") and "; tu:" not in v1


def test_choice_tokens_in_answers() -> None:
    a = parse_answer(render_answer("Oz gvn-sink", 10, 8, choice=pool_token(5)))
    assert a.choice == 5 and str(a.pass_list) == "Oz gvn-sink" and a.count_after == 8 and not a.problems
    b = parse_answer(render_answer("Oz dse", 10, 9, choice=NEW_MARK))
    assert b.choice is None and str(b.pass_list) == "Oz dse" and not b.problems
    c = parse_answer("<|L9999|>passes: Oz")  # not a choice token: the line reads as no 'passes:' line
    assert c.pass_list is None and c.choice is None
