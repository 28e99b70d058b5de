"""Object sizes read from the ELF section headers (pyelftools): .text and all allocated bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Sizes:
    """Object sizes that the user cares about: .text and every SHF_ALLOC section together."""

    text: int
    alloc: int

    def not_larger_than(self, other: Sizes) -> bool:
        return self.text <= other.text and self.alloc <= other.alloc


def object_sizes(path: Path) -> Sizes:
    """.text = every executable allocated section (covers -ffunction-sections' .text.*);
    alloc = every SHF_ALLOC section, NOBITS ones (.bss) included: they take no file bytes but do
    take memory at run time."""
    # pyelftools costs ~40 ms to import: only a TU that is measured pays it, not every record reader.
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    text = alloc = 0
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            flags = sec["sh_flags"]
            if not flags & SH_FLAGS.SHF_ALLOC:
                continue
            size = sec["sh_size"]
            alloc += size
            if flags & SH_FLAGS.SHF_EXECINSTR:
                text += size
    return Sizes(text=text, alloc=alloc)
