"""Labels → training examples in the loop's own prompt/answer format.

Per labelled module: one *direct* example (prompt → best pass list with its instruction counts)
and, where the autotuner found alternatives, one *feedback* example as the paper trained its
feedback models: the prompt extended with a first (worse) answer and the real findings on it,
followed by the better answer. Prompts are built exactly as `ModelLoop` builds them (same
normalization, same round-1 budget), so the model sees at run time what it saw in training.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.progress import Progress

from clang_llm import ir
from clang_llm.optimizer.base import Finding, Sizes
from clang_llm.optimizer.loop import prompt_budgets
from clang_llm.optimizer.prompt import build_feedback_prompt, build_prompt, feedback_text, render_answer

CountTokens = Callable[[str], int]


def usable(rec: dict[str, Any]) -> bool:
    return rec.get("status") == "ok" and bool(rec.get("best")) and bool(rec.get("oz"))


def _finding(entry: dict[str, Any], count_before: int) -> Finding:
    return Finding(pass_list=entry["pass_list"], valid=True, count_before=count_before,
                   count_after=entry["count"], sizes=Sizes(entry["text"], entry["alloc"]),
                   predicted_before=count_before, predicted_after=entry["count"])


def module_text(modules_dir: Path, module_id: str) -> str | None:
    path = modules_dir / f"{module_id}.bc"
    try:
        return str(ir.parse(path))
    except Exception:
        return None


def examples_for(rec: dict[str, Any], ir_text: str, count_tokens: CountTokens, context: int,
                 max_new_tokens: int, rng: random.Random, form: str = "short",
                 prompt_budget: int = 0) -> list[dict[str, str]]:
    """The direct example, and a feedback example when a worse alternative is known."""
    first_budget, budget = prompt_budgets(context, max_new_tokens, prompt_budget)
    prompt = build_prompt(ir_text, first_budget, count_tokens)
    before = rec["count_before"]
    best = rec["best"]
    answer = render_answer(best["pass_list"], before, best["count"])
    out = [{"prompt": prompt, "answer": answer, "kind": "direct", "id": rec["id"]}]
    alternatives = [t for t in rec.get("top", [])[1:] if t["pass_list"] != best["pass_list"]]
    oz = {"pass_list": "Oz", **rec["oz"]}
    if best["pass_list"] != "Oz":
        alternatives.append(oz)  # "you proposed -Oz; here is what beats it"
    if alternatives:
        alt = rng.choice(alternatives)
        first = render_answer(alt["pass_list"], before, alt["count"])
        fb = feedback_text(form, _finding(alt, before), None, oz=_finding(oz, before))
        fb_prompt = build_feedback_prompt(prompt, first, fb, max_tokens=budget, count_tokens=count_tokens)
        out.append({"prompt": fb_prompt, "answer": answer, "kind": "feedback", "id": rec["id"]})
    return out


def write_examples(labels: Iterable[dict[str, Any]], modules_dir: Path, out_path: Path, count_tokens: CountTokens,
                   context: int, max_new_tokens: int, splits: tuple[str, ...] = ("train",), seed: int = 0,
                   prompt_budget: int = 0) -> int:
    """Write the examples of the given splits as JSONL; returns how many."""
    rng = random.Random(seed)
    recs = [r for r in labels if usable(r) and r.get("split") in splits]
    n = 0
    tmp = out_path.with_suffix(".tmp")
    with open(tmp, "w") as f, Progress() as bar:
        task = bar.add_task("examples", total=len(recs))
        for rec in recs:
            text = module_text(modules_dir, rec["id"])
            if text is not None:
                for ex in examples_for(rec, text, count_tokens, context, max_new_tokens, rng,
                                       prompt_budget=prompt_budget):
                    f.write(json.dumps(ex) + "\n")
                    n += 1
            bar.advance(task)
    tmp.replace(out_path)
    return n


def tokenizer_texts(labels: Iterable[dict[str, Any]], modules_dir: Path, limit: int = 1500,
                    seed: int = 0) -> Iterator[str]:
    """Texts to fit the BPE on: normalized IR of a sample of training modules, answers, feedback."""
    from clang_llm.optimizer.prompt import normalize_ir

    recs = [r for r in labels if usable(r) and r.get("split") == "train"]
    random.Random(seed).shuffle(recs)
    for rec in recs[:limit]:
        text = module_text(modules_dir, rec["id"])
        if text is not None:
            yield normalize_ir(text)[:200_000]
        before = rec["count_before"]
        yield render_answer(rec["best"]["pass_list"], before, rec["best"]["count"])
        oz = _finding({"pass_list": "Oz", **rec["oz"]}, before)
        yield feedback_text("short", _finding(rec["best"], before), None, oz=oz)
