"""Fit the model's tokenizer: byte-level BPE over normalized IR and answer texts.

Byte-level BPE can encode any byte string, so no IR ever hits an unknown token; the prompt and
answer markers are special tokens, so they are single ids that plain text never produces.
Only `tokenizers` is needed here (no torch).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from clang_llm.atomic import atomic_path
from clang_llm.prompt_format import BOS, CHOICE_TOKENS, EOS, MARKERS, PAD, UNK

SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, *MARKERS]  # ids 0..7, in this order
# cllm-v2 adds the answer's choice tokens after them (ids 8..): `<|new|>`, then `<|L0|>` ...
V2_SPECIAL_TOKENS = [*SPECIAL_TOKENS, *CHOICE_TOKENS]


def fit_tokenizer(
    texts: Iterable[str], out_path: str | Path, *, vocab_size: int = 8000, min_frequency: int = 2,
    choice_tokens: bool = False,
) -> Path:
    """Train a byte-level BPE on ``texts`` and save it as a ``tokenizer.json`` at ``out_path``;
    `choice_tokens` adds cllm-v2's choice tokens as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=V2_SPECIAL_TOKENS if choice_tokens else SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    out = Path(out_path)
    with atomic_path(out) as tmp:
        tok.save(str(tmp))
    return out


def example_texts(examples_path: str | Path) -> Iterator[str]:
    """Prompt and answer texts of a JSONL file of ``{"prompt": ..., "answer": ...}`` examples."""
    with open(examples_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                ex = json.loads(line)
                yield ex["prompt"]
                yield ex["answer"]


def fit_from_examples(
    examples_path: str | Path, out_path: str | Path, *, vocab_size: int = 8000, min_frequency: int = 2
) -> Path:
    """Fit the tokenizer on the texts of a training JSONL file (prompts are normalized IR)."""
    return fit_tokenizer(example_texts(examples_path), out_path, vocab_size=vocab_size, min_frequency=min_frequency)
