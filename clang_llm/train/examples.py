"""Labels → training examples in the loop's own prompt/answer format.

Per labelled module: one *direct* example (prompt → best pass list with its instruction counts)
and, where the autotuner found alternatives, one *feedback* example as the paper trained its
feedback models: the prompt extended with a first (worse) answer and the real findings on it,
followed by the better answer. Prompts are built exactly as `ModelLoop` builds them (same
normalization, same round-1 budget), so the model sees at run time what it saw in training.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from clang_llm import ir
from clang_llm.atomic import atomic_path
from clang_llm.objsize import Sizes
from clang_llm.optimizer.prompt import build_feedback_prompt, build_prompt, feedback_text, prompt_budgets, render_answer
from clang_llm.progress import make_progress
from clang_llm.prompt_format import NEW_MARK, pool_token
from clang_llm.records import Finding, LabelRecord, ListResult, Prediction
from clang_llm.train.pool_sweep import PoolSizes

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
                  budget: int, summary: bool = False) -> dict[str, str]:
    """Round-1 prompts per module id (they depend on the IR and tokenizer only, not on labels),
    appended to a JSONL cache: resumable, and ready before the labels are. `summary`: cllm-v2
    prompts (with the whole-TU summary)."""
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
                prompts[module_id] = build_prompt(text, budget, count_tokens, summary=summary)
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
                    limit: int = 1000, seed: int = 0, summary: bool = False) -> Iterator[str]:
    """Texts to fit the BPE on: normalized IR of a sample of training modules (with its TU
    summary for cllm-v2), every vocabulary token, and the answers and feedback lines of the labels."""
    from clang_llm.optimizer.prompt import normalize_ir
    from clang_llm.optimizer.summary import summarize
    from clang_llm.passes import Vocabulary

    ids = list(module_ids)
    random.Random(seed).shuffle(ids)
    for module_id in ids[:limit]:
        text = module_text(modules_dir, module_id)
        if text is not None:
            norm = normalize_ir(text)
            if summary:
                yield summarize(norm).render()
            yield norm[:200_000]
    yield "passes: " + " ".join(Vocabulary.default().tokens)
    for rec in labels:
        if usable(rec) and rec.best and rec.count_before is not None:
            before = rec.count_before
            yield render_answer(rec.best.pass_list, before, rec.best.count)
            oz = _finding(_oz(rec), before)
            yield feedback_text("short", _finding(rec.best, before), None, oz=oz,
                                prediction=_claimed(rec.best, before))


# --------------------------------------------------------------------------- cllm-v2 examples

RANK_TEMPERATURE = 0.01  # a list 1 % larger than the module's best gets e^-1 of its target weight


def choice_of(pass_list: str, pool_index: dict[str, int]) -> str:
    """The choice token that opens an answer naming `pass_list`: its stored list, else `<|new|>`."""
    i = pool_index.get(pass_list)
    return pool_token(i) if i is not None else NEW_MARK


def _eligible(rec: LabelRecord) -> list[ListResult]:
    """The module's known lists that are not larger than -Oz in `.text` or allocated bytes, best first."""
    assert rec.oz is not None
    out = [t for t in rec.top if t.text <= rec.oz.text and t.alloc <= rec.oz.alloc]
    return sorted(out, key=lambda t: (t.text, t.alloc, t.count or 0))


def rank_targets(rec: LabelRecord, pool_index: dict[str, int], exclude: frozenset[str] = frozenset(),
                 temperature: float = RANK_TEMPERATURE) -> list[tuple[str, float]]:
    """The first answer token's target distribution: every choice that leads to one of the
    module's good lists, weighted by how close to the best `.text` that list comes.

    Stored lists take their own token; lists not stored share `<|new|>` (weighted by the best of
    them). A module where nothing beats -Oz targets the stored `Oz` list (pool entry 0): the
    model learns that this TU has nothing to gain. `exclude` removes lists already tried (a
    feedback prompt's previous answer): the loop never tries a list twice."""
    assert rec.oz is not None
    oz_text = max(1, rec.oz.text)
    lists = [t for t in _eligible(rec) if t.pass_list not in exclude and t.text < rec.oz.text]
    if not lists:
        return [(choice_of("Oz", pool_index), 1.0)]
    best = math.log(max(1, lists[0].text) / oz_text)
    weights: dict[str, float] = {}
    for t in lists:
        w = math.exp(-(math.log(max(1, t.text) / oz_text) - best) / temperature)
        tok = choice_of(t.pass_list, pool_index)
        weights[tok] = max(weights.get(tok, 0.0), w) if tok == NEW_MARK else weights.get(tok, 0.0) + w
    total = sum(weights.values())
    kept = sorted(((tok, w / total) for tok, w in weights.items() if w / total >= 1e-3), key=lambda kv: -kv[1])
    norm = sum(w for _, w in kept)
    return [(tok, round(w / norm, 4)) for tok, w in kept]


def risk_losses(sizes: PoolSizes, pool: list[str], exclude: frozenset[str] = frozenset()) -> list[tuple[str, float]]:
    """What every stored list measured on the module costs, as the first answer token's
    minimum-risk targets: ``(choice token, log(.text / -Oz .text))`` for each list its pool
    sweep measured, `Oz` (0) and lists that grow the object included (`trainer.risk_term`).

    Why: `rank_targets` names the lists that win a module, so the model's likeliest choice is
    the one that most often wins, however much it loses elsewhere; measured losses teach what
    each list costs where it does not win, and the trainer turns them into a distribution whose
    likeliest choice is the list of smallest expected size -- what one answer with no backup
    should be. `<|new|>` has no loss: the list the model would write is not measured at
    training time (the search's best list is not what the model writes), so the greedy first
    token is always a stored list; the loop reaches `<|new|>` by putting it in the prompt.
    Lists that failed on the module and `exclude` (already tried) are left out; a list repeated
    in the pool counts once, as its first entry."""
    if sizes.oz is None or sizes.oz.text <= 0 or len(sizes.sizes) != len(pool):
        return []
    oz = sizes.oz.text
    first = {name: i for i, name in reversed(list(enumerate(pool)))}
    out: dict[str, float] = {}
    for name, s in zip(pool, sizes.sizes, strict=True):
        if s is None or name in exclude:
            continue
        tok = pool_token(first[name])
        out[tok] = min(out.get(tok, math.inf), round(math.log(max(1, s.text) / oz), 6))
    return list(out.items())


def _rendered(entry: ListResult, before: int, pool_index: dict[str, int]) -> str:
    """An answer for `entry` as the loop records it: a ranked stored list is its choice token and
    its list; a list the model wrote carries its counts (sampled after `<|new|>`, which is the
    prompt's, not the answer's)."""
    i = pool_index.get(entry.pass_list)
    if i is not None:
        return f"{pool_token(i)}passes: {entry.pass_list}"
    return render_answer(entry.pass_list, before, entry.count or 0)


def _worse(rec: LabelRecord, best: ListResult, rng: random.Random) -> ListResult:
    """A list the search passed through before its best: an earlier new best of its trajectory,
    or one of its other top lists, or -Oz itself."""
    assert rec.oz is not None
    earlier = [ListResult(p.pass_list, p.text, p.alloc, p.count) for p in (rec.trajectory or ())
               if p.pass_list != best.pass_list and (p.text, p.alloc) > (best.text, best.alloc)]
    others = [t for t in rec.top[1:] if t.pass_list != best.pass_list and (t.text, t.alloc) > (best.text, best.alloc)]
    pool = earlier or others
    return rng.choice(pool) if pool else _oz(rec)


def examples_v2_for(rec: LabelRecord, prompt: str, pool_index: dict[str, int], count_tokens: CountTokens,
                    context: int, max_new_tokens: int, rng: random.Random, form: str = "short",
                    risk: tuple[PoolSizes, list[str]] | None = None) -> list[dict[str, Any]]:
    """cllm-v2 examples of one module, each with `targets` for its first answer token.

    - direct: the prompt, answered by the best list (its choice token, then the list and counts);
    - new: when the best is a stored list and a list not stored also beats -Oz, the prompt
      answered by `<|new|>` and the best such list (what a sample after `<|new|>` should write);
    - feedback: the search's own path: a worse list it met, that list's real findings (Short
      form), answered by the best list, targets excluding the worse one.

    `risk` (the module's pool sweep and the pool): the first token learns the measured losses
    of `risk_losses` (key `losses`) instead of `rank_targets` (key `targets`); the answers stay
    the same.
    """
    def targets(exclude: frozenset[str] = frozenset()) -> dict[str, list[tuple[str, float]]]:
        if risk is not None:
            got = risk_losses(risk[0], risk[1], exclude)
            if got:
                return {"losses": got}
        return {"targets": rank_targets(rec, pool_index, exclude=exclude)}

    _, budget = prompt_budgets(context, max_new_tokens)
    before, best = rec.count_before, rec.best
    assert before is not None and best is not None and rec.oz is not None
    good = _eligible(rec)
    top = good[0] if good and good[0].text < rec.oz.text else _oz(rec)
    first = targets()
    out: list[dict[str, Any]] = [{
        "prompt": prompt, "answer": render_answer(top.pass_list, before, top.count or 0,
                                                  choice=choice_of(top.pass_list, pool_index)),
        "kind": "direct", "id": rec.id, **first}]
    novel = [t for t in good if t.text < rec.oz.text and t.pass_list not in pool_index]
    if top.pass_list in pool_index and novel:
        out.append({"prompt": prompt, "answer": render_answer(novel[0].pass_list, before, novel[0].count or 0,
                                                              choice=NEW_MARK),
                    "kind": "new", "id": rec.id, **first})
    if top.pass_list != "Oz":
        worse = _worse(rec, top, rng)
        oz = _oz(rec)
        fb = feedback_text(form, _finding(worse, before), None, oz=_finding(oz, before),
                           prediction=None if worse.pass_list in pool_index else _claimed(worse, before))
        fb_prompt = build_feedback_prompt(prompt, _rendered(worse, before, pool_index), fb, max_tokens=budget,
                                          count_tokens=count_tokens)
        out.append({"prompt": fb_prompt,
                    "answer": render_answer(top.pass_list, before, top.count or 0,
                                            choice=choice_of(top.pass_list, pool_index)),
                    "kind": "feedback", "id": rec.id,
                    **targets(frozenset({worse.pass_list}))})
    return out


def model_pool(labels: Iterable[LabelRecord], size: int) -> list[str]:
    """The stored lists a cllm-v2 model ranks: `Oz` first (choice 0: nothing to gain), then
    the coreset of the train labels (greedy by marginal geomean gain, eval/methods.py)."""
    from clang_llm.train.coreset import coreset_lists

    rest = [s for s in coreset_lists(list(labels), size) if s != "Oz"]
    return ["Oz", *rest][:size]


def with_sweep(rec: LabelRecord, sizes: PoolSizes | None, pool: list[str]) -> LabelRecord:
    """The label with every stored list's measured size added to its known lists: the search
    kept only its own top lists, the sweep measured the whole pool on the module."""
    if sizes is None or sizes.status != "ok" or len(sizes.sizes) != len(pool):
        return rec
    known = {t.pass_list for t in rec.top}
    extra = [ListResult(p, s.text, s.alloc, s.count) for p, s in zip(pool, sizes.sizes, strict=True)
             if s is not None and p not in known and p != "Oz"]
    return replace(rec, top=(*rec.top, *extra))


def write_examples_v2(labels: Iterable[LabelRecord], prompts: dict[str, str], pool: list[str], out_path: Path,
                      count_tokens: CountTokens, context: int, max_new_tokens: int,
                      splits: tuple[str, ...] = ("train",), seed: int = 0,
                      sweep: dict[str, PoolSizes] | None = None, risk: bool = False) -> int:
    """Write the cllm-v2 examples of the given splits as JSONL, after a first line that holds
    the pool (`{"pool": [...]}`: the model's stored lists travel with its examples); returns
    how many examples. `risk`: the first token of a swept module's examples learns the
    measured losses of `risk_losses` (the others keep `rank_targets`)."""
    rng = random.Random(seed)
    index = {s: i for i, s in enumerate(pool)}
    n = 0
    with atomic_path(out_path) as tmp, open(tmp, "w") as f:
        f.write(json.dumps({"pool": pool}) + "\n")
        for rec in labels:
            if usable(rec) and rec.split in splits and rec.id in prompts:
                swept = (sweep or {}).get(rec.id)
                rec = with_sweep(rec, swept, pool)
                measured = (swept, pool) if swept is not None and risk else None
                for ex in examples_v2_for(rec, prompts[rec.id], index, count_tokens, context, max_new_tokens, rng,
                                          risk=measured):
                    f.write(json.dumps(ex) + "\n")
                    n += 1
    return n
