"""The prompt format's fixed tokens (format `cllm-v1`), shared by the prompt builder, the model
backend and training: below all of them, so none imports another for a constant."""

from __future__ import annotations

PROMPT_FORMAT = "cllm-v1"
FTD_FORMAT = "llm-compiler-ftd"  # Meta LLM Compiler FTD's flag-tuning format (optimizer/ftd.py)
PROMPT_FORMATS = (PROMPT_FORMAT, FTD_FORMAT)

PROMPT_MARK = "<|prompt|>"
ANSWER_MARK = "<|answer|>"
END_MARK = "<|end|>"
FEEDBACK_MARK = "<|feedback|>"
MARKERS = (PROMPT_MARK, ANSWER_MARK, END_MARK, FEEDBACK_MARK)
FEEDBACK_FORMS = ("fast", "short", "long")
# The tokenizer's own special tokens (ids 0..3, before MARKERS): sequence start and end, padding.
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
