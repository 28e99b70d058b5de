"""What the real toolchain said about one pass list: validity, errors, counts, object sizes (and,
for model candidates, what the model predicted)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clang_llm.objsize import Sizes


@dataclass
class Finding:
    """What the real toolchain said about one pass list (validation result)."""

    pass_list: str
    valid: bool  # every token in the vocabulary, opt accepted and ran it, codegen succeeded
    error: str | None = None  # parse / opt / codegen error text (trimmed)
    error_kind: str | None = None  # parse | unknown-pass | opt-error | opt-crash | timeout | codegen
    count_before: int | None = None  # real instruction count of the unoptimized IR
    count_after: int | None = None  # real instruction count after opt
    sizes: Sizes | None = None
    object_path: Path | None = None  # object built from this list (inside the private temp dir)
    ir_path: Path | None = None  # optimized bitcode (for Long feedback / BLEU)
    seconds: float = 0.0
    # Filled by the loop for model candidates:
    predicted_before: int | None = None
    predicted_after: int | None = None
    generated_ir_parses: bool | None = None
    generated_ir_error: str | None = None
    bleu: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["object_path"] = d["ir_path"] = None
        return d
