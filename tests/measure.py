"""Independent measurements for tests: object sizes from the ELF section headers (pyelftools) and
instruction counts (llvmlite), computed here rather than by the code under test."""

from __future__ import annotations

from pathlib import Path

import llvmlite.binding as llvm
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile


def text_and_alloc(obj: Path) -> tuple[int, int]:
    """(.text, allocated) bytes: executable allocated sections, and every allocated section."""
    text = alloc = 0
    with open(obj, "rb") as f:
        for s in ELFFile(f).iter_sections():
            if s["sh_flags"] & SH_FLAGS.SHF_ALLOC:
                alloc += s["sh_size"]
                if s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR:
                    text += s["sh_size"]
    return text, alloc


def instructions(path: Path) -> int:
    """Instructions of the defined functions of a .bc or .ll module."""
    data = path.read_bytes()
    ctx = llvm.create_context()
    if data[:2] == b"BC":
        mod = llvm.parse_bitcode(data, context=ctx)
    else:
        mod = llvm.parse_assembly(data.decode(), context=ctx)
    return sum(len(list(b.instructions)) for fn in mod.functions if not fn.is_declaration for b in fn.blocks)
