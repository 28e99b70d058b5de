"""A short, deterministic summary of a whole translation unit for the prompt (format `cllm-v2`).

Why: a small model sees only a budget of IR tokens, and most real TUs are cut to a few of their
functions. The features that decide which pass list shrinks a TU (AutoPhase's kind: how many
instructions of which opcode, functions, blocks, loops, switches, calls, globals) are cheap to
count over the whole module and fit in two lines that no truncation removes.

Counted on the normalized IR text (`normalize_ir`), the same text at training and at compile
time. Loops are the back edges of the text order: a branch to a block defined earlier in the same
function (clang at -O0 emits blocks in source order, so each loop's latch jumps back to its
header); it is an estimate, stable for one input, and needs no CFG analysis.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

SUMMARY_PREFIX = "; tu: "
OPCODES_PREFIX = "; ops: "
TOP_OPCODES = 12  # opcodes listed in the ops line, most frequent first

_ASSIGN = re.compile(r"^\s+(?:%[-\w.$\"]+\s*=\s*)?(\w+)")
_LABEL = re.compile(r"^([-\w.$]+):")
_TARGET = re.compile(r"label %([-\w.$]+)")
_DEFINE = re.compile(r"^define\b")
_GLOBAL = re.compile(r"^@[-\w.$\"]+\s*=\s*(.*)$")
_MODIFIERS = {"tail", "musttail", "notail"}
_CALLEE = re.compile(r"\b(?:call|invoke|callbr)\b.*?([@%][-\w.$\"]+)\(")


@dataclass(frozen=True)
class TUSummary:
    """Whole-module counts, the prompt's `; tu:` and `; ops:` lines."""

    instructions: int
    functions: int  # defined
    declarations: int
    internal_functions: int  # internal/private/linkonce definitions (inlining and merging candidates)
    blocks: int
    loops: int  # back edges in text order
    switches: int
    calls: int  # call/invoke instructions, direct or not, intrinsics excluded
    indirect_calls: int
    globals: int  # global variables and constants
    constant_globals: int
    largest_function: int  # instructions in the largest function
    opcodes: tuple[tuple[str, int], ...]  # most frequent first, ties by name

    def render(self) -> str:
        head = (f"{SUMMARY_PREFIX}insts {self.instructions} fns {self.functions} internal {self.internal_functions} "
                f"decls {self.declarations} blocks {self.blocks} loops {self.loops} switches {self.switches} "
                f"calls {self.calls} indirect {self.indirect_calls} globals {self.globals} "
                f"const {self.constant_globals} largest {self.largest_function}\n")
        ops = " ".join(f"{name} {n}" for name, n in self.opcodes[:TOP_OPCODES])
        return head + f"{OPCODES_PREFIX}{ops}\n"


def summarize(norm_ir: str) -> TUSummary:
    """Count the summary's features over normalized IR text (`normalize_ir`'s output)."""
    opcodes: Counter[str] = Counter()
    functions = declarations = internal = blocks = loops = switches = calls = indirect = 0
    n_globals = constants = largest = 0
    in_body = in_switch = False
    labels: set[str] = set()
    body_insts = 0
    for line in norm_ir.splitlines():
        if not in_body:
            if _DEFINE.match(line):
                functions += 1
                head = line.split("@", 1)[0]
                internal += any(w in head for w in (" internal ", " private ", " linkonce", " linkonce_odr "))
                in_body, labels, body_insts = True, {"entry"}, 0
                blocks += 1  # the entry block, whether or not it is named
            elif line.startswith("declare "):
                declarations += 1
            elif (m := _GLOBAL.match(line)) is not None:
                n_globals += 1
                constants += " constant " in f" {m.group(1)} "
            continue
        if in_switch:  # a switch's case lines: `i32 1, label %5` up to `]`
            loops += sum(1 for t in _TARGET.findall(line) if t in labels)
            in_switch = "]" not in line
            continue
        if line == "}":
            in_body = False
            largest = max(largest, body_insts)
            continue
        if (lab := _LABEL.match(line)) is not None:
            if lab.group(1) not in labels:
                blocks += 1
            labels.add(lab.group(1))
            continue
        m = _ASSIGN.match(line)
        if m is None:
            continue
        words = line.split("=", 1)[-1].split() if "=" in line.split("(", 1)[0] else line.split()
        op = next((w for w in words if w not in _MODIFIERS), m.group(1))
        opcodes[op] += 1
        body_insts += 1
        if op in ("call", "invoke", "callbr"):
            callee = _CALLEE.search(line)
            name = callee.group(1) if callee else ""
            if not name.startswith("@llvm."):  # intrinsics (lifetime markers, memcpy) are not calls
                calls += 1
                indirect += not name.startswith("@")
        elif op == "switch":
            switches += 1
            in_switch = "[" in line and "]" not in line
        if op in ("br", "switch", "invoke", "callbr", "indirectbr"):
            loops += sum(1 for t in _TARGET.findall(line) if t in labels)
    total = sum(opcodes.values())
    ranked = tuple(sorted(opcodes.items(), key=lambda kv: (-kv[1], kv[0])))
    return TUSummary(instructions=total, functions=functions, declarations=declarations,
                     internal_functions=internal, blocks=blocks, loops=loops, switches=switches,
                     calls=calls, indirect_calls=indirect, globals=n_globals, constant_globals=constants,
                     largest_function=largest, opcodes=ranked)
