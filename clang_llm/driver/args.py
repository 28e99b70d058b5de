"""Classify a compiler command line, ccache-style: a table of options, each with what it implies.

`classify(argv)` answers one question: is this a single-TU compile (`-c x.c -o x.o`) that we may
optimize, or must the real compiler run untouched (and if so, why — the reason is counted)?
Unknown options are opaque: forwarded as they are, never "fixed".
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

LLM_PREFIX = "--llm-"

# Options that take a separate argument (`-o out`, `-I dir`, ...): we must skip the argument.
TAKES_ARG = {
    "-o", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-idirafter", "-iquote", "-isysroot",
    "-iprefix", "-iwithprefix", "-iwithprefixbefore", "-MF", "-MT", "-MQ", "-x", "-Xclang", "-Xlinker",
    "-Xassembler", "-Xpreprocessor", "-mllvm", "-arch", "-target", "--target", "-L", "-l", "-u",
    "-T", "-z", "-aux-info", "-F", "--sysroot", "-B", "-MJ", "-Xarch_host", "-Xarch_device",
    "-ivfsoverlay", "-working-directory", "-main-file-name", "-dependency-file", "-serialize-diagnostics",
    "--param", "-imultilib", "-resource-dir", "-module-dependency-dir", "-fmodule-file", "-Xopenmp-target",
}

# Exact options that make the call something other than a plain single-TU compile.
PASSTHROUGH_EXACT: dict[str, str] = {
    "-E": "preprocess", "-M": "depfile-only", "-MM": "depfile-only", "-fsyntax-only": "syntax-only",
    "-S": "assembly-output", "-emit-llvm": "llvm-output", "--version": "info", "-v": "info", "-V": "info",
    "-###": "info", "-dumpmachine": "info", "-dumpversion": "info", "-dumpfullversion": "info",
    "--help": "info", "-help": "info", "-save-temps": "side-output", "--save-temps": "side-output",
    "-MJ": "side-output", "-gsplit-dwarf": "side-output", "-fembed-bitcode": "embed-bitcode",
    "-flto": "lto", "-fobjc-arc": "objc-arc", "--coverage": "coverage", "-coverage": "coverage",
    "-fprofile-arcs": "coverage", "-ftest-coverage": "coverage", "-fprofile-generate": "pgo",
    "-fprofile-instr-generate": "pgo", "-fprofile-use": "pgo", "-fcoverage-mapping": "coverage",
    "-pg": "profiling", "-Xclang": "unsupported-flag", "-mllvm": "unsupported-flag",
    "-fplugin": "unsupported-flag", "--analyze": "analyze", "-arch": "unsupported-flag",
    "-finstrument-functions": "instrumentation", "-fxray-instrument": "instrumentation",
    "-fmodules": "modules", "-fcxx-modules": "modules", "--precompile": "pch",
}
# Option prefixes with the same meaning (`-fsanitize=address`, `-ftime-trace=...`, `-print-...`).
PASSTHROUGH_PREFIX: tuple[tuple[str, str], ...] = (
    ("-fsanitize=", "sanitizer"), ("-flto=", "lto"), ("-fembed-bitcode=", "embed-bitcode"),
    ("-fprofile-", "pgo"), ("-fcs-profile-", "pgo"), ("-fdebug-prefix-map", ""),
    ("-ftime-trace", "side-output"), ("-fdump-", "side-output"), ("-gen-cdb-fragment-path", "side-output"),
    ("-save-temps=", "side-output"), ("--save-temps=", "side-output"), ("-print-", "info"),
    ("--print-", "info"), ("-fplugin=", "unsupported-flag"), ("-fpass-plugin=", "unsupported-flag"),
    ("-Wl,--version", "info"), ("-fmodules-", "modules"), ("-gsplit-dwarf=", "side-output"),
    ("-fsave-optimization-record", "side-output"), ("-foptimization-record-file", "side-output"),
    ("-fxray-", "instrumentation"), ("-fcoverage-", "coverage"),
)

C_EXT = {".c": "c", ".i": "c"}
CXX_EXT = {".cc": "c++", ".cpp": "c++", ".cxx": "c++", ".c++": "c++", ".C": "c++", ".cp": "c++",
           ".CPP": "c++", ".ii": "c++"}
OTHER_SOURCE_EXT = {".s", ".S", ".sx", ".asm", ".ll", ".bc", ".m", ".mm", ".M", ".cu", ".hip", ".cl",
                    ".f", ".f90", ".F", ".F90", ".h", ".hh", ".hpp", ".H", ".pcm", ".ast"}
LANG_FROM_X = {"c": "c", "c++": "c++", "cpp-output": "c", "c++-cpp-output": "c++"}


@dataclass
class Invocation:
    """A parsed command line. `reason` is None for an optimizable single-TU compile."""

    argv: list[str]  # the user's arguments, @files expanded, --llm-* removed
    llm_flags: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    source: str | None = None
    lang: str | None = None  # "c" | "c++"
    output: str | None = None  # -o as given, or the default name clang would pick
    output_given: bool = False
    opt_level: str | None = None  # last -O flag, e.g. "-O2"
    dep_flags: list[str] = field(default_factory=list)
    has_dep: bool = False  # -MD / -MMD present
    mf: str | None = None
    has_mt: bool = False
    source_positions: list[int] = field(default_factory=list)  # indexes of sources in argv

    @property
    def passthrough(self) -> bool:
        return self.reason is not None


def expand_response_files(args: list[str], depth: int = 0) -> list[str]:
    """Expand `@file` arguments inline (GNU quoting via shlex), as clang does, recursively."""
    out: list[str] = []
    for a in args:
        if a.startswith("@") and len(a) > 1 and depth < 16:
            try:
                text = Path(a[1:]).read_text()
            except OSError:
                out.append(a)  # clang treats an unreadable @file as a literal argument
                continue
            out.extend(expand_response_files(shlex.split(text, posix=True), depth + 1))
        else:
            out.append(a)
    return out


def split_llm_flags(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Remove our own `--llm-*` options; they must never reach clang."""
    rest: list[str] = []
    flags: dict[str, str] = {}
    for a in args:
        if a.startswith(LLM_PREFIX):
            key, eq, value = a[len(LLM_PREFIX):].partition("=")
            flags[key] = value if eq else "1"
        else:
            rest.append(a)
    return rest, flags


def _passthrough_reason(arg: str) -> str | None:
    if arg in PASSTHROUGH_EXACT:
        return PASSTHROUGH_EXACT[arg]
    for prefix, reason in PASSTHROUGH_PREFIX:
        if reason and arg.startswith(prefix):
            if prefix == "-fprofile-" and arg.startswith(("-fprofile-list", "-fprofile-sample-accurate")):
                continue
            return reason
    return None


def classify(raw_argv: list[str], default_lang: str = "c") -> Invocation:
    """Parse `raw_argv` (without the program name) into an Invocation."""
    args, llm_flags = split_llm_flags(expand_response_files(raw_argv))
    inv = Invocation(argv=args, llm_flags=llm_flags)
    if not args:
        inv.reason = "no-arguments"
        return inv
    sources: list[tuple[str, str | None]] = []
    has_c = False
    x_lang: str | None = None
    reason: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        r = _passthrough_reason(a)
        if r and reason is None:
            reason = r
        if a == "-c":
            has_c = True
        elif a == "-o":
            if nxt is None:
                return _with(inv, "bad-arguments")
            inv.output, inv.output_given = nxt, True
        elif a.startswith("-o") and len(a) > 2:
            inv.output, inv.output_given = a[2:], True
        elif a == "-x":
            if nxt is None:
                return _with(inv, "bad-arguments")
            x_lang = None if nxt == "none" else nxt
        elif a.startswith("-x") and len(a) > 2:
            x_lang = a[2:]
        elif a.startswith("-O"):
            inv.opt_level = a
        elif a in ("-MD", "-MMD", "-MP"):
            inv.dep_flags.append(a)
            inv.has_dep = inv.has_dep or a != "-MP"
        elif a in ("-MF", "-MT", "-MQ"):
            if nxt is None:
                return _with(inv, "bad-arguments")
            inv.dep_flags += [a, nxt]
            if a == "-MF":
                inv.mf = nxt
            else:
                inv.has_mt = True
        elif a.startswith(("-MF", "-MT", "-MQ")) and len(a) > 3:
            inv.dep_flags.append(a)
            if a.startswith("-MF"):
                inv.mf = a[3:]
            else:
                inv.has_mt = True
        elif a == "-" or not a.startswith("-"):
            sources.append((a, x_lang))
            inv.source_positions.append(i)
        if a in TAKES_ARG:
            i += 2
            continue
        i += 1

    if reason:
        return _with(inv, reason)
    if not has_c:
        return _with(inv, "link" if sources else "no-input")
    if len(sources) != 1:
        return _with(inv, "multiple-sources" if sources else "no-input")
    src, lang_opt = sources[0]
    if src == "-":
        return _with(inv, "stdin-input")
    if inv.output == "-":
        return _with(inv, "stdout-output")
    ext = os.path.splitext(src)[1]
    if lang_opt is not None:
        lang = LANG_FROM_X.get(lang_opt)
        if lang is None:
            return _with(inv, "assembler" if "assembler" in lang_opt else "unsupported-language")
    elif ext in C_EXT:
        lang = C_EXT[ext]
    elif ext in CXX_EXT:
        lang = CXX_EXT[ext]
    elif ext in (".s", ".S", ".sx", ".asm"):
        return _with(inv, "assembler")
    elif ext in (".ll", ".bc"):
        return _with(inv, "ir-input")
    elif ext in OTHER_SOURCE_EXT:
        return _with(inv, "unsupported-language")
    else:
        return _with(inv, "link")  # an object/library, or an unknown file: clang decides
    if default_lang == "c++" and lang == "c" and lang_opt is None and ext == ".c":
        lang = "c++"  # clang++ compiles .c as C++ (with a deprecation warning)
    inv.source, inv.lang = src, lang
    if not inv.output_given:
        inv.output = os.path.splitext(os.path.basename(src))[0] + ".o"
    return inv


def split_sources(inv: Invocation, default_lang: str = "c") -> list[Invocation] | None:
    """`clang -c a.c b.c` compiles several TUs: one Invocation each, when every one of them is
    optimizable (no -o, no -x, C/C++ sources only); None when the call must pass through."""
    if inv.reason != "multiple-sources" or inv.output_given or any(a.startswith("-x") for a in inv.argv):
        return None
    parts = []
    for pos in inv.source_positions:
        others = set(inv.source_positions) - {pos}
        part = classify([a for i, a in enumerate(inv.argv) if i not in others], default_lang)
        if part.passthrough:
            return None
        part.llm_flags = inv.llm_flags
        parts.append(part)
    return parts


def _with(inv: Invocation, reason: str) -> Invocation:
    inv.reason = reason
    return inv


def strip_for_codegen(args: list[str]) -> list[str]:
    """The user's flags minus inputs, outputs, depfile and -x options: what codegen from IR keeps."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-o", "-MF", "-MT", "-MQ", "-x"):
            i += 2
            continue
        if a in ("-c", "-MD", "-MMD", "-MP") or a.startswith(("-MF", "-MT", "-MQ")) or (
            a.startswith("-o") and len(a) > 2
        ) or (a.startswith("-x") and len(a) > 2):
            i += 1
            continue
        if not a.startswith("-"):
            i += 1  # the source file
            continue
        out.append(a)
        if a in TAKES_ARG and i + 1 < len(args):
            out.append(args[i + 1])
            i += 2
            continue
        i += 1
    return out
