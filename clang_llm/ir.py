"""LLVM IR through llvmlite: parse, count instructions, hash.

One counter serves prediction targets, validation and reports: functions → blocks →
instructions, declarations have none (matches opt's func-properties TotalInstructionCount).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import llvmlite.binding as llvm


def parse(path_or_text: Path | str) -> llvm.ModuleRef:
    """Parse bitcode (a .bc Path) or textual IR (a str); raise RuntimeError on invalid input.

    Each module gets its own LLVM context: in llvmlite's global one, a named type seen before is
    renamed (`%struct.S` becomes `%struct.S.0`, `.1`, ...), so a module's text (a prompt, a cache
    key) would depend on what this process parsed earlier. The module keeps its context alive.
    """
    ctx = llvm.create_context()
    if isinstance(path_or_text, Path):
        data = path_or_text.read_bytes()
        if data[:2] == b"BC" or data[:4] == b"\xde\xc0\x17\x0b":
            return llvm.parse_bitcode(data, context=ctx)
        return llvm.parse_assembly(data.decode("utf-8", "replace"), context=ctx)
    return llvm.parse_assembly(path_or_text, context=ctx)


def count_instructions(mod: llvm.ModuleRef) -> int:
    return count_text(str(mod))


def count_text(text: str) -> int:
    """Instructions in printed IR: the lines of a function body that start an instruction (two
    spaces, then neither a continuation of `switch`/`landingpad`, nor `]`, a `#dbg_` record or a
    comment). The same number as walking llvmlite's functions → blocks → instructions (checked
    on all 6,091 corpus modules). Printing a module costs about what that walk's FFI calls do,
    but where the text is at hand anyway (the TU's prompt and cache key) the scan is ~10x
    cheaper than the walk."""
    n = 0
    in_body = False
    for line in text.split("\n"):
        if line.startswith("define "):
            in_body = True
        elif line.startswith("}"):
            in_body = False
        elif in_body and line.startswith("  ") and len(line) > 2 and line[2] not in " ]#;":
            n += 1
    return n


def count_walk(mod: llvm.ModuleRef) -> int:
    """The reference count, by llvmlite's walk (tests hold `count_text` to it)."""
    return sum(
        sum(1 for _ in block.instructions) for fn in mod.functions if not fn.is_declaration for block in fn.blocks
    )


def count_file(path: Path) -> int:
    return count_instructions(parse(path))


def verify_text(text: str) -> str | None:
    """Parse and verify textual IR; None when fine, else the first line(s) of the error."""
    try:
        mod = parse(text)
        mod.verify()
    except Exception as e:  # llvmlite raises RuntimeError with LLVM's message
        return str(e).strip()[:2000]
    return None


_NOISE = re.compile(r"^(source_filename|; ModuleID).*$", re.M)


def ir_hash(text: str) -> str:
    """Hash of the module text without its name lines: the key of the decision cache."""
    return hashlib.sha256(_NOISE.sub("", text).encode()).hexdigest()
