"""The prompt formats' fixed tokens (`cllm-v1`, `cllm-v2`), shared by the prompt builder, the model
backend and training: below all of them, so none imports another for a constant."""

from __future__ import annotations

PROMPT_FORMAT = "cllm-v1"
# cllm-v2: the prompt adds a whole-TU summary (optimizer/summary.py); the answer opens with a
# choice token, one of the model's stored lists (`<|L0|>` ...) or `<|new|>` for a list it writes.
PROMPT_FORMAT_V2 = "cllm-v2"
CLLM_FORMATS = (PROMPT_FORMAT, PROMPT_FORMAT_V2)
FTD_FORMAT = "llm-compiler-ftd"  # Meta LLM Compiler FTD's flag-tuning format (optimizer/ftd.py)
PROMPT_FORMATS = (*CLLM_FORMATS, FTD_FORMAT)

PROMPT_MARK = "<|prompt|>"
ANSWER_MARK = "<|answer|>"
END_MARK = "<|end|>"
FEEDBACK_MARK = "<|feedback|>"
MARKERS = (PROMPT_MARK, ANSWER_MARK, END_MARK, FEEDBACK_MARK)
FEEDBACK_FORMS = ("fast", "short", "long")
NEW_MARK = "<|new|>"
POOL_MAX = 64  # choice tokens a cllm-v2 tokenizer holds: a model's pool has at most this many lists


def pool_token(i: int) -> str:
    """The choice token of stored list `i` in a cllm-v2 answer."""
    return f"<|L{i}|>"


CHOICE_TOKENS = (NEW_MARK, *(pool_token(i) for i in range(POOL_MAX)))
# The tokenizer's own special tokens (ids 0..3, before MARKERS): sequence start and end, padding.
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
