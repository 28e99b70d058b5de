"""The local model backend: a CTranslate2 int8 decoder plus its `tokenizers` tokenizer.

A model directory holds ``model.bin``, ``config.json``, ``vocabulary.json`` (CTranslate2),
``tokenizer.json`` and ``model-card.json``. Only ``ctranslate2`` and ``tokenizers`` are used,
imported lazily, so the compiler driver never pays for (or needs) torch.

Reproducible sampling: CTranslate2 seeds each worker thread's generator once, from the global
seed, at its first draw, so re-seeding a used `Generator` changes nothing. `generate` therefore
samples on a generator whose workers have never drawn (the one loaded first, then a fresh one
per sampling call, ~0.03 s for a 17 MB model), right after `ctranslate2.set_random_seed(seed)`,
under a lock. Greedy and beam search draw nothing and reuse the loaded generator.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clang_llm import LLVM_MAJOR
from clang_llm.errors import ModelError, first_line
from clang_llm.model.card import CARD_FILE, ModelCard, read_card
from clang_llm.model.risk import LOSSES_FILE, load_losses
from clang_llm.passes import Vocabulary
from clang_llm.prompt_format import ANSWER_MARK, BOS, CLLM_FORMATS, END_MARK, EOS, POOL_MAX, pool_token

if TYPE_CHECKING:
    import ctranslate2
    import numpy as np
    from tokenizers import Tokenizer

MODEL_FILES = ("model.bin", "config.json", "vocabulary.json", "tokenizer.json", CARD_FILE)
OPTIONAL_FILES = (LOSSES_FILE,)  # part of the model (and of its id) when present
DEFAULT_TOP_K = 50
_LOCK = threading.Lock()


class Model:
    """A loaded model: tokenizer, card and a CTranslate2 generator factory."""

    requests = 0  # requests sent to a model server: none in-process (HttpModel counts its own)

    def __init__(self, path: Path, card: ModelCard, tokenizer: Tokenizer, intra_threads: int, device: str) -> None:
        self.path = path
        self.card = card
        self.intra_threads = intra_threads
        self.device = device
        self.warnings: list[str] = []
        self._tokenizer = tokenizer
        self._generator: ctranslate2.Generator = self._new_generator()  # also proves that model.bin loads
        self._drawn = False  # whether its worker has drawn random numbers (then it is stale)
        # The pool's loss table on the train modules (pool-losses.npy), for the minimum-risk
        # ranking; None: the pool is ranked by likelihood.
        self.pool_losses: np.ndarray | None = None

    @property
    def context_length(self) -> int:
        return self.card.context_length

    @cached_property
    def id(self) -> str:
        """Stable content hash of the model files (names and bytes): part of every cache key."""
        return model_content_id(self.path)

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes in a prompt (the measure of `build_prompt` budgets)."""
        return len(self._tokenizer.encode(text).ids)

    @cached_property
    def max_token_chars(self) -> int:
        """The most text characters one token can stand for (byte-level BPE: its length), so a
        text longer than ``n * max_token_chars`` needs more than ``n`` tokens, untokenized."""
        return max((len(t) for t in self._tokenizer.get_vocab()), default=1)

    def fits_untokenized(self, text: str, tokens: int) -> bool:
        """False when `text` certainly needs more than `tokens` tokens (checked without tokenizing)."""
        return len(text) <= tokens * self.max_token_chars

    def tokenize_ids(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text).ids)

    def _encode_prompt(self, prompt: str) -> list[str]:
        return [BOS, *self._tokenizer.encode(prompt).tokens]

    def _new_generator(self) -> ctranslate2.Generator:
        import ctranslate2

        try:
            return ctranslate2.Generator(
                str(self.path),
                device=self.device,
                compute_type="auto",
                intra_threads=self.intra_threads,
                inter_threads=1,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"{self.path}: cannot load the CTranslate2 model ({first_line(exc)})") from None

    def generate(
        self,
        prompts: list[str] | str,
        k: int = 1,
        seed: int = 0,
        temperature: float = 0.8,
        max_new_tokens: int = 256,
        *,
        top_k: int = DEFAULT_TOP_K,
    ) -> list[str]:
        """Sample ``k`` answers per prompt; a list of prompts gives ``k`` answers each, in order.

        Same prompts, k, seed and settings give the same answers. Temperature 0 decodes without
        sampling: greedy for k == 1, a k-wide beam search for k > 1. Raises `ModelError` when a
        prompt does not fit the context (build prompts with `build_prompt` to avoid it).
        """
        return [text for text, _ in self.generate_detailed(prompts, k, seed, temperature, max_new_tokens,
                                                           top_k=top_k)]

    def score(self, prompt: str, continuations: list[str]) -> list[float]:
        """Log-likelihood (natural log, summed over tokens) of each continuation after `prompt`:
        how much the model believes each of a given set of answers, for ranking stored lists.

        One `score_batch` call scores every continuation together (the prompt is repeated; its
        tokens carry no score). Raises `ModelError` if a sequence does not fit the context."""
        if not continuations:
            return []
        n_prompt = len(self._encode_prompt(prompt))
        seqs = [self._encode_prompt(prompt + c) for c in continuations]
        longest = max(len(s) for s in seqs)
        if longest > self.context_length:
            raise ModelError(f"scored sequence of {longest} tokens does not fit the context of {self.context_length}")
        with _LOCK:
            if self._generator is None:
                self._generator = self._new_generator()
            try:
                results = self._generator.score_batch(seqs, max_input_length=0)
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"scoring failed ({first_line(exc)})") from None
        # log_probs[i] is the log-probability of token i + 1 given the tokens before it.
        return [float(sum(r.log_probs[n_prompt - 1:])) for r in results]

    @property
    def pool(self) -> list[str]:
        """The stored pass lists this model ranks (cllm-v2; empty for a cllm-v1 model)."""
        return self.card.pool

    def rank_pool(self, prompt: str) -> list[float]:
        """Log-probability of each stored list's choice token as the answer's first token: the
        model's ranking of its whole pool from one forward pass over the prompt (the pool is
        what `score` would rank, at the cost of one prompt instead of one per list)."""
        import numpy as np

        if not self.card.pool:
            return []
        ids = [self._tokenizer.token_to_id(pool_token(i)) for i in range(len(self.card.pool))]
        encoded = self._encode_prompt(prompt)
        if len(encoded) >= self.context_length:
            raise ModelError(f"prompt of {len(encoded)} tokens does not fit the context of {self.context_length}")
        with _LOCK:
            if self._generator is None:
                self._generator = self._new_generator()
            try:  # greedy, one step: draws no random numbers, so the generator stays fresh
                result = self._generator.generate_batch([encoded], max_length=1, include_prompt_in_result=False,
                                                        sampling_topk=1, return_logits_vocab=True)
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"ranking failed ({first_line(exc)})") from None
        logits = np.asarray(result[0].logits[0], dtype=np.float64).reshape(-1)
        top = float(logits.max())
        log_z = top + float(np.log(np.exp(logits - top).sum()))
        return [float(logits[i]) - log_z for i in ids]

    def generate_detailed(
        self,
        prompts: list[str] | str,
        k: int = 1,
        seed: int = 0,
        temperature: float = 0.8,
        max_new_tokens: int = 256,
        *,
        top_k: int = DEFAULT_TOP_K,
    ) -> list[tuple[str, bool]]:
        """`generate`'s answers, each with whether it was cut at the token limit (no end token)."""
        import ctranslate2

        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        if k < 1 or max_new_tokens < 1:
            raise ValueError("k and max_new_tokens must be at least 1")
        if not batch:
            return []
        encoded = [self._encode_prompt(p) for p in batch]
        longest = max(len(e) for e in encoded)
        room = self.context_length - longest
        if room < 1:
            raise ModelError(f"prompt of {longest} tokens does not fit the context of {self.context_length}")
        options: dict[str, Any] = {
            "max_length": min(max_new_tokens, room),
            "include_prompt_in_result": False,
            "num_hypotheses": k,
            "end_token": [END_MARK, EOS],
            "return_end_token": False,
        }
        if temperature <= 0:
            options.update(beam_size=k, sampling_topk=1)
        else:
            options.update(beam_size=1, sampling_topk=max(1, top_k), sampling_temperature=temperature)
        sampling = temperature > 0
        with _LOCK:
            if self._generator is None or (sampling and self._drawn):
                self._generator, self._drawn = self._new_generator(), False
            self._drawn = self._drawn or sampling  # greedy and beam search draw no random numbers
            ctranslate2.set_random_seed(seed & 0xFFFFFFFF)
            try:
                results = self._generator.generate_batch(encoded, **options)
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"generation failed ({first_line(exc)})") from None
        limit = options["max_length"]
        return [(self._tokenizer.decode(ids, skip_special_tokens=False), len(ids) >= limit)
                for r in results for ids in r.sequences_ids]


_CONTENT_IDS: dict[tuple[object, ...], str] = {}


def model_content_id(model_dir: str | Path) -> str:
    """SHA-256 (16 hex digits) over the names and bytes of a model directory's files: the same
    model gives the same id wherever it is unpacked; a retrained one never does. Remembered per
    process by the files' (path, size, mtime), so a compile that looks its stored object up
    before loading the model does not hash the model twice."""
    names = (*MODEL_FILES, *(f for f in OPTIONAL_FILES if (Path(model_dir) / f).is_file()))
    stats = [(n, st.st_size, st.st_mtime_ns) for n in names for st in [(Path(model_dir) / n).stat()]]
    memo = (str(Path(model_dir).resolve()), *stats)
    if memo not in _CONTENT_IDS:
        _CONTENT_IDS[memo] = _hash_model_files(Path(model_dir), names)
    return _CONTENT_IDS[memo]


def _hash_model_files(model_dir: Path, names: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0")
        with open(Path(model_dir) / name, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


def load_model(model_dir: str | Path, *, intra_threads: int | None = None, device: str = "cpu") -> Model:
    """Open a model directory, checking it fully; any problem is one `ModelError` line."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelError(f"{path}: model directory not found")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise ModelError(f"{path}: not a model directory (missing {', '.join(missing)})")
    card = read_card(path)
    if card.llvm_major != LLVM_MAJOR:
        raise ModelError(f"{path}: model is for LLVM {card.llvm_major}, this is LLVM {LLVM_MAJOR}")
    if card.prompt_format not in CLLM_FORMATS:
        raise ModelError(f"{path}: prompt format {card.prompt_format!r}, expected one of {', '.join(CLLM_FORMATS)}")
    if len(card.pool) > POOL_MAX:
        raise ModelError(f"{path}: a pool of {len(card.pool)} lists (at most {POOL_MAX})")
    tokenizer = _load_tokenizer(path / "tokenizer.json")
    lacking = [pool_token(i) for i in range(len(card.pool)) if tokenizer.token_to_id(pool_token(i)) is None]
    if lacking:
        raise ModelError(f"{path}: the card names {len(card.pool)} stored lists, the tokenizer lacks {lacking[0]}")
    threads = intra_threads if intra_threads is not None else min(4, os.cpu_count() or 1)
    model = Model(path, card, tokenizer, threads, device)
    if card.pool and (path / LOSSES_FILE).is_file():
        try:
            model.pool_losses = load_losses(path / LOSSES_FILE, len(card.pool))
        except (OSError, ValueError, EOFError) as exc:
            raise ModelError(f"{path}: unreadable {LOSSES_FILE} ({first_line(exc)})") from None
    vocab_version = Vocabulary.default().version
    if card.pass_vocabulary_version != vocab_version:
        model.warnings.append(
            f"model trained on pass vocabulary {card.pass_vocabulary_version}, current is {vocab_version}"
        )
    return model


def _load_tokenizer(path: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception on malformed JSON
        raise ModelError(f"{path}: unreadable tokenizer ({first_line(exc)})") from None
    absent = [t for t in (BOS, ANSWER_MARK, END_MARK) if tokenizer.token_to_id(t) is None]
    if absent:
        raise ModelError(f"{path}: tokenizer lacks special tokens {', '.join(absent)}")
    return tokenizer
