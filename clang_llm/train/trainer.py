"""Train a small Llama-style decoder from scratch on (prompt, answer) examples.

Examples are JSONL lines ``{"prompt": ..., "answer": ...}`` (prompts from `build_prompt`, answers
from `render_answer`). The loss covers the answer tokens only: the model should learn to answer,
not to write IR prompts. Runs on CUDA when there is one (bf16 autocast, fused AdamW), else on
CPU; the same run can move between them, because checkpoints hold model, optimizer, scheduler
and step, and the batch order depends only on the seed and the step.

Layout of ``out_dir``::

    checkpoint/        Hugging Face model + tokenizer + trainer_state.pt + train-summary.json
    loss.jsonl         one line per logged step: step, loss, lr, tokens, seconds

Needs the ``train`` extra (torch, transformers); nothing outside `clang_llm.train` imports it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from clang_llm.atomic import replace_dir
from clang_llm.optimizer.prompt import END_MARK
from clang_llm.prompt_format import BOS, PAD, UNK
from clang_llm.train.configs import ModelRecipe

if TYPE_CHECKING:
    from rich.progress import Progress
    from tokenizers import Tokenizer

CHECKPOINT = "checkpoint"
STATE_FILE = "trainer_state.pt"
SUMMARY_FILE = "train-summary.json"
LOSS_LOG = "loss.jsonl"
IGNORE = -100


@dataclass
class Dims:
    """Model shape; ``intermediate_size`` defaults to the Llama ratio (8/3, rounded up to 64)."""

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None
    intermediate_size: int | None = None

    def config(self, vocab_size: int, seq_len: int, bos: int, eos: int, pad: int) -> LlamaConfig:
        inter = self.intermediate_size or 64 * math.ceil(self.hidden_size * 8 / 3 / 64)
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=inter,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads or self.num_heads,
            max_position_embeddings=seq_len,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=pad,
            tie_word_embeddings=False,
        )


@dataclass
class _Example:
    ids: list[int]
    n_prompt: int  # tokens (BOS included) that carry no loss
    # cllm-v2: the first answer token's target distribution (token id, weight), learnt instead
    # of that token's one-hot label: the model should rank every good stored list, not one.
    targets: tuple[tuple[int, float], ...] = ()
    # cllm-v2, minimum-risk examples: log(.text / -Oz .text) of each stored list's choice token
    # on the module; that token's distribution learns exp(-E[loss | prompt] / risk_lambda).
    losses: tuple[tuple[int, float], ...] = ()


def load_examples(examples_path: Path, tokenizer: Tokenizer, seq_len: int) -> tuple[list[_Example], int]:
    """Tokenize examples; cut long prompts from the left, skip answers that cannot fit. Lines
    without a prompt (a cllm-v2 file's pool record) are not examples."""
    bos = tokenizer.token_to_id(BOS)
    prompts, answers, targets, losses = [], [], [], []
    with open(examples_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                ex = json.loads(line)
                if "prompt" not in ex:
                    continue
                prompts.append(ex["prompt"])
                answers.append(ex["answer"])
                targets.append(ex.get("targets") or [])
                losses.append(ex.get("losses") or [])
    out: list[_Example] = []
    skipped = 0
    p_enc = tokenizer.encode_batch(prompts)
    a_enc = tokenizer.encode_batch(answers)
    for p, a, tg, ls in zip(p_enc, a_enc, targets, losses, strict=True):
        room = seq_len - 1 - len(a.ids)
        if room < min(16, len(p.ids)) or not a.ids:
            skipped += 1
            continue
        prompt_ids = p.ids[-room:] if len(p.ids) > room else p.ids
        soft = [(tokenizer.token_to_id(tok), float(w)) for tok, w in tg]
        risk = [(tokenizer.token_to_id(tok), float(v)) for tok, v in ls]
        if any(i is None for i, _ in (*soft, *risk)):
            raise ValueError(f"{examples_path}: a target token is not in the tokenizer ({tg or ls})")
        out.append(_Example([bos, *prompt_ids, *a.ids], 1 + len(prompt_ids), tuple(soft),  # type: ignore[arg-type]
                            tuple(risk)))  # type: ignore[arg-type]
    return out, skipped


def _batch(examples: list[_Example], pad: int) -> dict[str, torch.Tensor]:
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    n_soft = max((len(e.targets) for e in examples), default=0)
    soft_ids = torch.zeros((len(examples), max(1, n_soft)), dtype=torch.long)
    soft_w = torch.zeros((len(examples), max(1, n_soft)), dtype=torch.float32)
    soft_pos = torch.zeros(len(examples), dtype=torch.long)
    n_risk = max((len(e.losses) for e in examples), default=0)
    risk_ids = torch.zeros((len(examples), max(1, n_risk)), dtype=torch.long)
    risk_loss = torch.zeros((len(examples), max(1, n_risk)), dtype=torch.float32)
    risk_mask = torch.zeros((len(examples), max(1, n_risk)), dtype=torch.bool)
    for i, e in enumerate(examples):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        labels[i, e.n_prompt : n] = ids[i, e.n_prompt : n]
        mask[i, :n] = 1
        if e.targets or e.losses:
            labels[i, e.n_prompt] = IGNORE  # the first answer token learns the distribution instead
            soft_pos[i] = e.n_prompt - 1  # the position whose logits predict that token
            for j, (tok, w) in enumerate(e.targets):
                soft_ids[i, j], soft_w[i, j] = tok, w
            for j, (tok, v) in enumerate(e.losses):
                risk_ids[i, j], risk_loss[i, j], risk_mask[i, j] = tok, v, True
    return {"input_ids": ids, "attention_mask": mask, "labels": labels,
            "soft_ids": soft_ids, "soft_w": soft_w, "soft_pos": soft_pos,
            "risk_ids": risk_ids, "risk_loss": risk_loss, "risk_mask": risk_mask}


def risk_term(logp: torch.Tensor, ids: torch.Tensor, loss: torch.Tensor, mask: torch.Tensor,
              risk_lambda: float) -> torch.Tensor:
    """Per row: ``-log P(a measured choice) + KL(q || softmax(-loss / risk_lambda))``, with q the
    model's first-token distribution renormalized over the row's measured choices (0 for rows
    without any).

    Why this and not the soft cross-entropy of ``softmax(-loss / t)``: averaged over modules the
    model cannot tell apart, the cross-entropy's optimum is the mean of each module's target,
    whose argmax is the list that most often comes near the best, while this reverse KL's
    optimum is ``q ∝ exp(-E[loss] / risk_lambda)``, whose argmax is the list of smallest
    expected size -- the right single answer for a geomean of sizes. Never negative: the
    optimum of each row's KL is 0."""
    neg = torch.finfo(logp.dtype).min / 4
    lp = torch.where(mask, logp.gather(1, ids), torch.full_like(loss, neg))
    log_in = torch.logsumexp(lp, dim=1)  # log of the probability mass on the measured choices
    logq = lp - log_in[:, None]
    scaled = torch.where(mask, -loss / risk_lambda, torch.full_like(loss, neg))
    logg = scaled - torch.logsumexp(scaled, dim=1, keepdim=True)
    kl = torch.where(mask, logq.exp() * (logq - logg), torch.zeros_like(loss)).sum(dim=1)
    has = mask.any(dim=1)
    return torch.where(has, kl - log_in, torch.zeros_like(kl))


def _loss(model: LlamaForCausalLM, batch: dict[str, torch.Tensor], rank_weight: float,
          risk_lambda: float = 0.01) -> torch.Tensor:
    """Mean cross-entropy over answer tokens, plus `rank_weight` times the first answer token's
    loss of each ranked example (the soft cross-entropy of its targets, or `risk_term` of its
    measured losses; each counted as `rank_weight` tokens)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    labels = batch["labels"][:, 1:]
    flat = logits[:, :-1].reshape(-1, logits.size(-1))
    ce = torch.nn.functional.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    n_tokens = (labels != IGNORE).sum()
    soft_rows = batch["soft_w"].sum(dim=1) > 0
    risk_rows = batch["risk_mask"].any(dim=1)
    ranked = soft_rows | risk_rows
    if not bool(ranked.any()):
        return ce / n_tokens.clamp(min=1)
    rows = torch.arange(logits.size(0), device=logits.device)
    logp = torch.log_softmax(logits[rows, batch["soft_pos"]], dim=-1)  # (batch, vocab)
    first = -(batch["soft_w"] * logp.gather(1, batch["soft_ids"])).sum(dim=1)  # zero for unranked rows
    if bool(risk_rows.any()):
        first = first + risk_term(logp, batch["risk_ids"], batch["risk_loss"], batch["risk_mask"], risk_lambda)
    n_ranked = ranked.sum()
    return (ce + rank_weight * first.sum()) / (n_tokens + rank_weight * n_ranked).clamp(min=1)


class _Order:
    """Batch order from (seed, step) alone: a fresh permutation per epoch, so resume is exact."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._perms: dict[int, list[int]] = {}

    def indices(self, step: int, batch_size: int) -> list[int]:
        out = []
        for pos in range(step * batch_size, (step + 1) * batch_size):
            epoch, i = divmod(pos, self.n)
            if epoch not in self._perms:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}
            out.append(self._perms[epoch][i])
        return out


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float, cuda: bool) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=cuda)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:16]


def _save(
    out_dir: Path,
    model: LlamaForCausalLM,
    hf_tokenizer: PreTrainedTokenizerFast,
    state: dict[str, Any],
    summary: dict[str, Any],
) -> Path:
    """Write the checkpoint beside the old one and swap it in: a crash never leaves half of one."""
    final = out_dir / CHECKPOINT
    tmp = out_dir / (CHECKPOINT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    hf_tokenizer.save_pretrained(tmp)
    torch.save(state, tmp / STATE_FILE)
    (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    replace_dir(tmp, final)
    return final


def _trim_log(log: Path, step: int) -> None:
    """Drop log lines after the resumed step (they belong to work the crash threw away)."""
    if not log.exists():
        return
    keep = [ln for ln in log.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    log.write_text("".join(ln + "\n" for ln in keep))


_RECIPE = ModelRecipe()  # the defaults of every hyper-parameter the recipe names


def train(
    examples_path: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    *,
    steps: int = _RECIPE.steps,
    schedule_steps: int | None = _RECIPE.schedule_steps,
    batch_size: int = _RECIPE.batch_size,
    seq_len: int = _RECIPE.context,
    hidden_size: int = _RECIPE.hidden_size,
    num_layers: int = _RECIPE.num_layers,
    num_heads: int = _RECIPE.num_heads,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    lr: float = _RECIPE.lr,
    warmup_steps: int | None = None,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    seed: int = _RECIPE.seed,
    save_every: int = 200,
    log_every: int = 10,
    resume: bool = True,
    device: str | None = None,
    cpu_threads: int | None = _RECIPE.cpu_threads,
    progress: bool = True,
    rank_weight: float = _RECIPE.rank_weight,
    risk_lambda: float = _RECIPE.risk_lambda,
) -> Path:
    """Train (or resume) and return the checkpoint directory (a Hugging Face model dir).

    ``cpu_threads`` caps torch's CPU threads for this call: on a busy machine one thread can be
    ten times faster than two for small models (OpenMP barriers wait on descheduled threads).
    ``schedule_steps`` is the length of the warmup + cosine learning-rate schedule (default:
    ``steps``); training stops after ``steps``, so a run cut short of its schedule can be
    reproduced exactly (the shipped model is step 1,400 of a 2,000-step schedule).
    """
    threads_before = torch.get_num_threads()
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    try:
        return _train(
            examples_path,
            tokenizer_path,
            out_dir,
            steps=steps,
            schedule_steps=schedule_steps or steps,
            batch_size=batch_size,
            seq_len=seq_len,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            intermediate_size=intermediate_size,
            lr=lr,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            seed=seed,
            save_every=save_every,
            log_every=log_every,
            resume=resume,
            device=device,
            progress=progress,
            rank_weight=rank_weight,
            risk_lambda=risk_lambda,
        )
    finally:
        torch.set_num_threads(threads_before)


def _train(
    examples_path: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    *,
    steps: int,
    schedule_steps: int,
    batch_size: int,
    seq_len: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int | None,
    intermediate_size: int | None,
    lr: float,
    warmup_steps: int | None,
    weight_decay: float,
    grad_clip: float,
    seed: int,
    save_every: int,
    log_every: int,
    resume: bool,
    device: str | None,
    progress: bool,
    rank_weight: float,
    risk_lambda: float,
) -> Path:
    from tokenizers import Tokenizer

    examples_path, out_dir = Path(examples_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=END_MARK, pad_token=PAD, unk_token=UNK
    )
    pad = tokenizer.token_to_id(PAD)
    examples, skipped = load_examples(examples_path, tokenizer, seq_len)
    if not examples:
        raise ValueError(f"{examples_path}: no usable examples ({skipped} too long for seq_len={seq_len})")
    dims = Dims(hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size)

    ckpt = out_dir / CHECKPOINT
    state: dict[str, Any] = {}
    torch.manual_seed(seed)
    if resume and (ckpt / STATE_FILE).exists():
        model = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    else:
        config = dims.config(
            tokenizer.get_vocab_size(),
            seq_len,
            tokenizer.token_to_id(BOS),
            tokenizer.token_to_id(END_MARK),
            pad,
        )
        model = LlamaForCausalLM(config)
    model.to(dev)
    cfg = model.config
    dims = Dims(cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads)
    dims.num_kv_heads, dims.intermediate_size = cfg.num_key_value_heads, cfg.intermediate_size
    opt = _optimizer(model, lr, weight_decay, cuda)
    if state:
        opt.load_state_dict(state["optimizer"])
    step = int(state.get("step", 0))
    tokens_seen = int(state.get("tokens", 0))
    seconds = float(state.get("seconds", 0.0))
    warmup = warmup_steps if warmup_steps is not None else max(1, min(100, schedule_steps // 10))
    log = out_dir / LOSS_LOG
    if state:
        _trim_log(log, step)
    else:
        log.unlink(missing_ok=True)

    order = _Order(len(examples), seed)
    n_params = sum(p.numel() for p in model.parameters())
    ema: float | None = state.get("ema_loss")

    def summary() -> dict[str, Any]:
        return {
            "examples": len(examples),
            "examples_skipped": skipped,
            "examples_sha256": _file_digest(examples_path),
            "steps": step,
            "schedule_steps": schedule_steps,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "tokens_seen": tokens_seen,
            "params": n_params,
            "dims": asdict(dims),
            "loss": ema,
            "device": dev.type,
            "seconds": round(seconds, 1),
            "seed": seed,
            "rank_weight": rank_weight,
            "risk_lambda": risk_lambda,
        }

    def save() -> None:
        st = {"optimizer": opt.state_dict(), "step": step, "tokens": tokens_seen, "seconds": seconds}
        st["ema_loss"] = ema
        _save(out_dir, model, hf_tokenizer, st, summary())

    bar = _progress(progress, steps, step)
    model.train()
    with bar as live, open(log, "a", encoding="utf-8") as log_f:
        task = live.add_task("training", total=steps, completed=step, loss=float("nan"), tps=0.0)
        t_last = time.perf_counter()
        while step < steps:
            t0 = time.perf_counter()
            batch = {
                k: v.to(dev) for k, v in _batch([examples[i] for i in order.indices(step, batch_size)], pad).items()
            }
            for group in opt.param_groups:
                group["lr"] = lr * _lr_factor(step, schedule_steps, warmup)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda):
                loss = _loss(model, batch, rank_weight, risk_lambda)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            step += 1
            n_tok = int(batch["attention_mask"].sum())  # what the forward pass cost
            tokens_seen += n_tok
            value = float(loss.detach())
            ema = value if ema is None else 0.9 * ema + 0.1 * value
            now = time.perf_counter()
            seconds += now - t0
            live.update(task, completed=step, loss=ema, tps=n_tok / max(1e-9, now - t_last))
            t_last = now
            if step % log_every == 0 or step == steps:
                rec = {
                    "step": step,
                    "loss": round(value, 5),
                    "lr": opt.param_groups[0]["lr"],
                    "tokens": tokens_seen,
                }
                rec["seconds"] = round(seconds, 2)
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
            if step % save_every == 0 and step < steps:
                save()
    if step >= steps and (not state or int(state.get("step", 0)) < steps):
        save()
    return ckpt


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def update(self, *args: object, **kwargs: object) -> None:
        return None


def _progress(enabled: bool, steps: int, start: int) -> Progress | _NoProgress:
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[tps]:.0f} tok/s"),
        TimeRemainingColumn(),
    )
