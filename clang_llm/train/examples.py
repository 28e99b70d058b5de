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

from clang_llm import ir
from clang_llm.atomic import atomic_path
from clang_llm.objsize import Sizes
from clang_llm.optimizer.loop import prompt_budgets
from clang_llm.optimizer.prompt import build_feedback_prompt, build_prompt, feedback_text, render_answer
from clang_llm.progress import make_progress
from clang_llm.records import Finding, LabelRecord, ListResult, Prediction

CountTokens = Callable[[str], int]


def usable(rec: LabelRecord) -> bool:
    return rec.ok and rec.count_before is not None


def _finding(entry: ListResult, count_before: int) -> Finding:
    return Finding(pass_list=entry.pass_list, valid=True, count_before=count_before,
                   count_after=entry.count, sizes=Sizes(entry.text, entry.alloc))


def _claimed(entry: ListResult, count_before: int) -> Prediction:
    """The answer the example puts in the model's mouth states the real counts."""
    return Prediction(count_before=count_before, count_after=entry.count)


def _oz(rec: LabelRecord) -> ListResult:
    assert rec.oz is not None
    return ListResult("Oz", rec.oz.text, rec.oz.alloc, rec.oz.count)


def module_text(modules_dir: Path, module_id: str) -> str | None:
    path = modules_dir / f"{module_id}.bc"
    try:
        return str(ir.parse(path))
    except Exception:
        return None


def examples_for(rec: LabelRecord, prompt: str, count_tokens: CountTokens, context: int,
                 max_new_tokens: int, rng: random.Random, form: str = "short") -> list[dict[str, str]]:
    """The direct example, and a feedback example when a worse alternative is known."""
    _, budget = prompt_budgets(context, max_new_tokens)
    before, best = rec.count_before, rec.best
    assert before is not None and best is not None
    answer = render_answer(best.pass_list, before, best.count)
    out = [{"prompt": prompt, "answer": answer, "kind": "direct", "id": rec.id}]
    alternatives = [t for t in rec.top[1:] if t.pass_list != best.pass_list]
    oz = _oz(rec)
    if best.pass_list != "Oz":
        alternatives.append(oz)  # "you proposed -Oz; here is what beats it"
    if alternatives:
        alt = rng.choice(alternatives)
        first = render_answer(alt.pass_list, before, alt.count)
        fb = feedback_text(form, _finding(alt, before), None, oz=_finding(oz, before),
                           prediction=_claimed(alt, before))
        fb_prompt = build_feedback_prompt(prompt, first, fb, max_tokens=budget, count_tokens=count_tokens)
        out.append({"prompt": fb_prompt, "answer": answer, "kind": "feedback", "id": rec.id})
    return out


def write_prompts(ids: list[str], modules_dir: Path, out_path: Path, count_tokens: CountTokens,
                  budget: int) -> dict[str, str]:
    """Round-1 prompts per module id (they depend on the IR and tokenizer only, not on labels),
    appended to a JSONL cache: resumable, and ready before the labels are."""
    prompts: dict[str, str] = {}
    if out_path.exists():
        with open(out_path) as f:
            for line in f:
                try:
                    d = json.loads(line)
                except ValueError:
                    continue  # a line torn by an interrupted run
                prompts[d["id"]] = d["prompt"]
    todo = [i for i in ids if i not in prompts]
    bar, _ = make_progress("prompts")
    with open(out_path, "a") as f, bar:
        task = bar.add_task("prompts", total=len(todo), info="")
        for module_id in todo:
            text = module_text(modules_dir, module_id)
            if text is not None:
                prompts[module_id] = build_prompt(text, budget, count_tokens)
                f.write(json.dumps({"id": module_id, "prompt": prompts[module_id]}) + "\n")
                f.flush()
            bar.advance(task)
    return prompts


def write_examples(labels: Iterable[LabelRecord], prompts: dict[str, str], out_path: Path,
                   count_tokens: CountTokens, context: int, max_new_tokens: int,
                   splits: tuple[str, ...] = ("train",), seed: int = 0) -> int:
    """Write the examples of the given splits as JSONL; returns how many."""
    rng = random.Random(seed)
    n = 0
    with atomic_path(out_path) as tmp, open(tmp, "w") as f:
        for rec in labels:
            if usable(rec) and rec.split in splits and rec.id in prompts:
                for ex in examples_for(rec, prompts[rec.id], count_tokens, context, max_new_tokens, rng):
                    f.write(json.dumps(ex) + "\n")
                    n += 1
    return n


def tokenizer_texts(module_ids: list[str], labels: Iterable[LabelRecord], modules_dir: Path,
                    limit: int = 1000, seed: int = 0) -> Iterator[str]:
    """Texts to fit the BPE on: normalized IR of a sample of training modules, every vocabulary
    token, and the answers and feedback lines of the labels."""
    from clang_llm.optimizer.prompt import normalize_ir
    from clang_llm.passes import Vocabulary

    ids = list(module_ids)
    random.Random(seed).shuffle(ids)
    for module_id in ids[:limit]:
        text = module_text(modules_dir, module_id)
        if text is not None:
            yield normalize_ir(text)[:200_000]
    yield "passes: " + " ".join(Vocabulary.default().tokens)
    for rec in labels:
        if usable(rec) and rec.best and rec.count_before is not None:
            before = rec.count_before
            yield render_answer(rec.best.pass_list, before, rec.best.count)
            oz = _finding(_oz(rec), before)
            yield feedback_text("short", _finding(rec.best, before), None, oz=oz,
                                prediction=_claimed(rec.best, before))
