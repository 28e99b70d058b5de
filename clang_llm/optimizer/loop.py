"""The feedback loop (Grubisic et al. 2024): the model proposes, the real toolchain judges.

Round r: the model gives k distinct candidates (its greedy answer, then seeded samples) and, for a
cllm-v2 model with `rank` set, the `rank` stored lists of its pool it ranks highest for this
prompt (one forward pass ranks the whole pool); each parsed pass list is run
through real opt + codegen (in parallel, up to `jobs`); generated IR, if any, is parsed and
scored with BLEU against the IR opt really produced. If no candidate beats -Oz with a correct
prediction, the feedback on the round's best answer (Fast / Short / Long) extends the original
prompt for round r+1. The best validated object over all rounds wins; -Oz when none beats it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from clang_llm import ir
from clang_llm.errors import ModelError, PassListError, PromptTooLong
from clang_llm.model.risk import module_weights, risk_order, shipped_log_ratio, stop_rule
from clang_llm.optimizer.base import Decision, TUContext, select_best
from clang_llm.optimizer.formats import CLLM, PromptFormat, get_format
from clang_llm.optimizer.in_order import GoOn, run_in_order
from clang_llm.optimizer.prompt import (
    Answer,
    build_feedback_prompt,
    feedback_text,
    normalize_ir,
    prompt_budgets,
    without_ir,
)
from clang_llm.passes import OZ, PassList, parse_pass_list
from clang_llm.prompt_format import NEW_MARK, pool_token
from clang_llm.records import Candidate, Finding, Prediction, Round

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from clang_llm.config import Settings
    from clang_llm.model import Model
    from clang_llm.model.http import HttpModel

log = logging.getLogger("clang_llm")

# Bumped when the loop's behaviour changes, so that cached evaluation results are not reused.
LOOP_VERSION = 6  # 2: greedy answer first, then samples; 3: samples drawn until k lists are distinct;
# 4: ranked stored lists (cllm-v2) beside the samples
# 5: evaluations decide through optimizer/decide.py: a decision's only list runs verified at once
# 6: ranked lists run in order and stop early (settings.stop, risk.further_gain)
MAX_DRAWS_PER_SAMPLE = 4  # sampling stops after 4k draws, distinct or not (bounds the latency)


def _bleu(generated: str, compiled: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_bleu(normalize_ir(generated), [normalize_ir(compiled)]).score) / 100.0


def _compiled_ir(f: Finding) -> str | None:
    if f.ir_path is None:
        return None
    try:
        return str(ir.parse(f.ir_path))
    except Exception:
        return None


class ModelLoop:
    """An Optimizer backed by a local model; `model_id` enters the decision cache key."""

    def __init__(self, model: Model | HttpModel, settings: Settings, prompt_format: PromptFormat | None = None) -> None:
        self.model = model  # a local `Model` or an `HttpModel`: the same interface
        self.settings = settings
        # A local model's card names its format (cllm-v1 or cllm-v2); a server's is passed in.
        self.format = prompt_format or (get_format(model.card.prompt_format) if model.card.prompt_format else CLLM)
        self._ir_texts: dict[Path | None, str | None] = {}  # per TU: opt's IR by file, parsed once
        # Per round: the ranked lists' pool indices in try order, and the model's belief over the
        # loss table's modules (None: no loss table, no early stop).
        self._plan: list[int] = []
        self._weights: np.ndarray | None = None

    @property
    def model_id(self) -> str:
        return self.model.id

    def _compiled(self, f: Finding) -> str | None:
        """The IR opt produced for `f`, parsed once per TU however many answers ask for it."""
        if f.ir_path not in self._ir_texts:
            self._ir_texts[f.ir_path] = _compiled_ir(f)
        return self._ir_texts[f.ir_path]

    def _check(self, text: str, ans: Answer, tu: TUContext, pass_findings: dict[str, Finding]) -> Candidate:
        """One answer as a candidate: its list's finding (one opt run shared by every answer that
        names the list), and what the answer predicted, its IR checked against opt's."""
        if ans.pass_list is None:
            kind = "unknown-pass" if any(p.startswith("unknown pass") for p in ans.problems) else "parse"
            f = Finding(pass_list=ans.pass_text or "", valid=False, error_kind=kind,
                        error="; ".join(ans.problems)[:1500], count_before=tu.count_before)
        else:
            f = pass_findings[str(ans.pass_list)]
        pred = Prediction(count_before=ans.count_before, count_after=ans.count_after)
        if ans.ir is not None:
            err = ir.verify_text(ans.ir)
            compiled = self._compiled(f)
            pred = replace(pred, ir_parses=err is None, ir_error=err,
                           bleu=_bleu(ans.ir, compiled) if compiled is not None else None)
        return Candidate(answer=text[:4000], finding=f, pass_list=f.pass_list, problems=tuple(ans.problems),
                         prediction=pred)

    def _feedback(self, prompt: str, answer: str, cand: Candidate, tu: TUContext, budget: int) -> tuple[str, str]:
        """(previous answer as echoed, feedback text) for the next round's prompt."""
        form = self.settings.feedback
        finding, pred = cand.finding, cand.prediction
        if form != "long":
            return answer, feedback_text(form, finding, None, oz=tu.oz, prediction=pred)
        # Long: the compiled IR says more than the model's own IR, so it replaces it, and gets
        # what is left of the context (first guess 2 characters a token, halved until it fits).
        previous = without_ir(answer) + "\nir:\n"
        short = feedback_text("short", finding, None, oz=tu.oz, prediction=pred)
        used = self.model.count_tokens(build_feedback_prompt(prompt, previous, short))
        compiled = self._compiled(finding)
        chars = max(0, budget - used - 8) * 2
        while True:
            fb = feedback_text("long", finding, compiled, oz=tu.oz, long_budget_chars=chars, prediction=pred)
            if chars == 0 or self.model.count_tokens(build_feedback_prompt(prompt, previous, fb)) <= budget:
                return previous, fb
            chars //= 2

    def _pool(self) -> list[str]:
        """The model's stored lists when it can rank them (a cllm-v2 model, in process or on a
        clang-llm server), else none."""
        if self.settings.rank < 1 or not hasattr(self.model, "rank_pool"):
            return []
        return list(getattr(self.model, "pool", []) or [])

    def _ranked(self, prompt: str, tried: set[str]) -> list[tuple[str, Answer]]:
        """The `rank` stored lists to try for this prompt, skipping lists already tried in
        earlier rounds (and -Oz, the baseline); as answers naming them. By likelihood, or, with
        the model's loss table and a card temperature, in minimum-risk order (model/risk.py)."""
        pool = self._pool()
        if not pool:
            return []
        scores = self.model.rank_pool(prompt)  # type: ignore[union-attr]
        allowed: list[tuple[int, PassList]] = []
        seen = {*tried, str(OZ)}  # a list repeated in the pool is tried once
        for i in sorted(range(len(pool)), key=lambda j: (-scores[j], j)):
            try:
                pl = parse_pass_list(pool[i])
            except PassListError:  # a list from another vocabulary: never tried
                continue
            if str(pl) in seen:
                continue
            seen.add(str(pl))
            allowed.append((i, pl))
        lists = dict(allowed)
        order = self._risk_order(scores, [i for i, _ in allowed]) or [i for i, _ in allowed]
        self._plan = order[: self.settings.rank]
        out: list[tuple[str, Answer]] = []
        for i in self._plan:
            pl = lists[i]
            tried.add(str(pl))
            out.append((f"{pool_token(i)}passes: {pl}", Answer(pass_text=str(pl), pass_list=pl, choice=i)))
        return out

    def _risk_order(self, scores: list[float], allowed: list[int]) -> list[int]:
        """Minimum-risk order of the allowed lists, or [] when the model has no loss table (a
        server, an older model) or its card's temperature is 0."""
        losses = getattr(self.model, "pool_losses", None)
        temp = float(getattr(getattr(self.model, "card", None), "risk_temperature", 0.0) or 0.0)
        if losses is None or temp <= 0 or not allowed:
            return []
        self._weights = module_weights(losses, scores, temp)
        return risk_order(scores, losses, temp, self.settings.rank, allowed, self._weights)

    def _stop_rule(self, tu: TUContext, earlier: list[Finding]) -> GoOn[Finding] | None:
        """`settings.stop` as a rule for `run_in_order` over this round's lists (the ranked ones
        first, `risk.stop_rule`), counting what earlier rounds found. None: no early stop (stop
        0, or a model without a loss table)."""
        losses = getattr(self.model, "pool_losses", None)
        if self.settings.stop <= 0 or self._weights is None or losses is None or not self._plan:
            return None
        oz = tu.oz.sizes
        assert oz is not None

        def logratio(f: Finding) -> float:
            if not f.valid or f.sizes is None:
                return 0.0
            return shipped_log_ratio(f.sizes.text, f.sizes.alloc, oz.text, oz.alloc)

        return stop_rule(self._weights, losses, self._plan, self.settings.stop, logratio,
                         min([0.0, *(logratio(f) for f in earlier)]))

    def _stored(self, ans: Answer) -> Answer:
        """A cllm-v2 answer that opens with a stored list's choice token names that list: the
        text after the token only repeats it (a differing text is noted, not used)."""
        pool = list(getattr(self.model, "pool", []) or [])
        if ans.choice is None or not 0 <= ans.choice < len(pool):
            return ans
        try:
            pl = parse_pass_list(pool[ans.choice])
        except PassListError:
            return ans
        problems = list(ans.problems)
        if ans.pass_text is not None and ans.pass_text.strip() != str(pl):
            problems.append(f"the text after choice {ans.choice} is not its stored list; used the stored list")
        return replace(ans, pass_text=str(pl), pass_list=pl,
                       problems=[p for p in problems if not p.startswith(("unknown pass", "bad pass list",
                                                                           "could not parse"))])

    def _answers(self, prompt: str, k: int, seed: int) -> list[tuple[str, Answer]]:
        """Answers with k distinct pass lists: the greedy one first, then samples at the
        configured temperature, drawn until k lists are distinct or 4k samples are spent.

        Why greedy first: the model's single best guess is always among the candidates, so k
        samples never do worse than one. Why distinct: a repeated list costs no opt run but
        explores nothing; `--llm-samples=8` should mean 8 lists tried, as `coreset@8` tries 8.
        Answers that name no valid list are kept (they are reported) but fill no slot.
        """
        s = self.settings
        if k < 1:  # only ranked stored lists this round
            return []
        def parse(text: str) -> Answer:  # each answer is read once; the pairs are passed on
            return self._stored(self.format.parse_answer(text))

        answers = [(a, parse(a)) for a in self.model.generate(prompt, k=1, seed=seed, temperature=0.0,
                                                              max_new_tokens=s.max_new_tokens)]
        seen = {str(p.pass_list) for _, p in answers if p.pass_list is not None}
        drawn, batch = 0, 0
        while k > 1 and len(seen) < k and drawn < MAX_DRAWS_PER_SAMPLE * k:
            want = k - max(1, len(seen))
            more = self.model.generate(prompt, k=want, seed=seed + 100_003 * batch, temperature=s.temperature,
                                       max_new_tokens=s.max_new_tokens)
            drawn, batch = drawn + want, batch + 1
            for a in more:
                parsed = parse(a)
                key = parsed.pass_list
                if key is None or str(key) not in seen:
                    answers.append((a, parsed))
                if key is not None:
                    seen.add(str(key))
        return answers

    def optimize(self, tu: TUContext) -> Decision:
        s = self.settings
        first_budget, budget = prompt_budgets(self.model.context_length, s.max_new_tokens,
                                              self.model.card.prompt_budget)
        rounds: list[Round] = []
        findings: list[Finding] = []
        self._ir_texts = {}
        try:
            # A format without feedback rounds never needs room for one in its first prompt.
            prompt = self.format.build_prompt(tu.ir_text, first_budget if self.format.feedback else budget,
                                              self.model.count_tokens)
        except PromptTooLong as e:
            return self._decision(tu, findings, [Round(error=str(e))], 0, "prompt-too-long")
        except ModelError as e:
            return self._decision(tu, findings, [Round(error=str(e)[:300])], 0, e.reason)
        current = prompt
        calls = 0
        tried: set[str] = set()  # stored lists ranked in any round (each is tried once per TU)
        ranking = bool(self._pool())
        for r in range(s.rounds):
            t_model = time.monotonic()
            self._plan, self._weights = [], None
            try:
                pairs = self._ranked(current, tried)
                # Beside ranked stored lists, the samples are lists the model writes itself.
                # A model without a pool to rank always writes at least one list.
                pairs += self._answers(current + NEW_MARK if ranking else current,
                                       s.samples if ranking else max(1, s.samples), s.seed + r)
            except ModelError as e:  # a failing model or server ends the rounds; what was found stays
                log.warning("model failed in round %d: %s", r + 1, e)
                rounds.append(Round(round=r + 1, error=str(e)[:300]))
                return self._decision(tu, findings, rounds, calls, e.reason)
            model_s = time.monotonic() - t_model
            calls += 1
            t_cand = time.monotonic()
            # Evaluate each distinct valid pass list once, in parallel, in a fixed order.
            parsed = [p for _, p in pairs]
            # The baseline's own list (a frequent answer for small TUs) is the baseline's finding.
            distinct = list({str(p.pass_list): p.pass_list for p in parsed
                             if p.pass_list is not None and str(p.pass_list) != str(OZ)}.values())
            evaluate = tu.evaluate
            if len(distinct) == 1 and r + 1 == s.rounds and tu.evaluate_verified is not None:
                # The last round's only list: if it wins it ships, and the driver would re-run it
                # with -verify-each; one verified run instead of two runs.
                evaluate = tu.evaluate_verified
            # Ranked lists first, in their order: the stop rule may end the round after any.
            results = run_in_order(distinct, evaluate, max(1, s.jobs), self._stop_rule(tu, findings))
            candidates_s = time.monotonic() - t_cand
            by_list = {str(OZ): tu.oz, **{str(pl): f for pl, f in zip(distinct, results, strict=False)}}
            stopped = len(results) < len(distinct)
            cands = [self._check(a, p, tu, by_list) for a, p in pairs
                     if p.pass_list is None or str(p.pass_list) in by_list]
            round_findings = [c.finding for c in cands]
            findings.extend(round_findings)
            best, why = select_best(tu.oz, round_findings)
            # The answer that named the best list first (select_best keeps the earliest of equals).
            idx = round_findings.index(best) if best in round_findings else 0
            rec = Round(round=r + 1, prompt_tokens=self.model.count_tokens(current), candidates=tuple(cands),
                        opt_evaluations=len(results), model_s=round(model_s, 4), candidates_s=round(candidates_s, 4))
            rounds.append(rec)
            if stopped:
                rounds[-1] = replace(rec, stop=f"the model expects the {len(distinct) - len(results)} lists left "
                                               f"to gain less than stop = {s.stop:g}")
                break
            if why == "beats-oz" and cands[idx].prediction.correct_count(best):
                rounds[-1] = replace(rec, stop="beats -Oz with a correct prediction")
                break
            if r + 1 == s.rounds:
                break
            if not self.format.feedback:
                continue  # the next round samples the same prompt again (its own seed)
            # Feedback on the round's most useful answer: the best valid one, else the first.
            previous, fb = self._feedback(prompt, pairs[idx][0], cands[idx], tu, budget)
            rounds[-1] = replace(rec, feedback=fb)
            current = build_feedback_prompt(prompt, previous, fb, max_tokens=budget,
                                            count_tokens=self.model.count_tokens)
        return self._decision(tu, findings, rounds, calls, None)

    def _decision(self, tu: TUContext, findings: list[Finding], rounds: list[Round], calls: int,
                  failure: str | None) -> Decision:
        """The best finding; a failure's reason when it cut the rounds short and nothing beat -Oz."""
        chosen, reason = select_best(tu.oz, findings)
        if failure is not None and reason != "beats-oz":
            reason = failure
        return Decision(chosen=chosen, reason=reason, rounds=rounds, model_calls=calls,
                        remote_calls=self.model.requests, findings=findings)
