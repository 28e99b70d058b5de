"""Classify a compiler command line, ccache-style: a table of options, each with what it implies.

`classify(argv)` answers one question: is this a single-TU compile (`-c x.c -o x.o`) that we may
optimize, or must the real compiler run untouched (and if so, why — the reason is counted)?
Unknown options are opaque: forwarded as they are, never "fixed".
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

LLM_PREFIX = "--llm-"


class Role(Enum):
    """What an argument is to the wrapper; it decides which derived argument list keeps it."""

    OUTPUT = "output"  # -o: the wrapper chooses its own outputs
    COMPILE = "compile"  # -c
    LANG = "lang"  # -x: the IR steps say `-x ir`
    OPT_LEVEL = "opt-level"  # -O…: emit and codegen get -Oz after it
    DEPFILE = "depfile"  # -MD/-MMD/-MP/-MF/-MT/-MQ, -Wp,-MD,f: written once, by the IR step
    PREPROCESSOR = "preprocessor"  # -D/-I/-include…: nothing to do once the IR exists
    PASSTHROUGH = "passthrough"  # the real compiler runs the whole command untouched (reason)
    SOURCE = "source"  # an input file
    OTHER = "other"  # opaque: forwarded to the IR step and to codegen alike


class Form(Enum):
    """How an option is spelled (clang's Options.td kinds)."""

    FLAG = "flag"  # exactly `-c`
    SEPARATE = "separate"  # `-o out`
    JOINED = "joined"  # any argument starting with the spelling: `-fsanitize=…`, `-fdump-…`
    JOINED_OR_SEPARATE = "joined-or-separate"  # `-I dir` or `-Idir`


@dataclass(frozen=True)
class OptionSpec:
    spelling: str
    form: Form
    role: Role
    reason: str = ""  # for Role.PASSTHROUGH: the counted reason


def _specs(role: Role, form: Form, spellings: str, reason: str = "") -> list[OptionSpec]:
    return [OptionSpec(s, form, role, reason) for s in spellings.split()]


P, F, S, J, JS = Role.PASSTHROUGH, Form.FLAG, Form.SEPARATE, Form.JOINED, Form.JOINED_OR_SEPARATE

# The one option table. Every argument is matched once (exact spellings first, then the longest
# joined prefix); classification, the IR step's arguments, codegen's arguments and the depfile
# handling are all read from the matched spec. A flag that writes a file beside the object is
# either reproduced exactly (depfiles) or sends the TU through untouched ("side-output").
OPTIONS: list[OptionSpec] = [
    OptionSpec("-o", JS, Role.OUTPUT),
    OptionSpec("-c", F, Role.COMPILE),
    OptionSpec("-x", JS, Role.LANG),
    OptionSpec("-O", J, Role.OPT_LEVEL),
    *_specs(Role.DEPFILE, F, "-MD -MMD -MP -MG"),
    *_specs(Role.DEPFILE, JS, "-MF -MT -MQ"),
    OptionSpec("-Wp,-MD,", J, Role.DEPFILE),
    OptionSpec("-Wp,-MMD,", J, Role.DEPFILE),
    *_specs(Role.PREPROCESSOR, JS, "-D -U -I -include -imacros -isystem -idirafter -iquote -iprefix "
            "-iwithprefix -iwithprefixbefore -Xpreprocessor"),
    *_specs(Role.PREPROCESSOR, J, "-Wp,"),  # -Wp,-M… spellings other than the two above: see _wp
    # Other options with a separate argument: opaque, but the argument must travel with them.
    *_specs(Role.OTHER, S, "-isysroot -Xlinker -Xassembler -arch -target --target -L -l -u -T -z "
            "-aux-info -F --sysroot -B -Xarch_host -Xarch_device -ivfsoverlay -working-directory "
            "-main-file-name -dependency-file --param -imultilib -resource-dir -module-dependency-dir "
            "-fmodule-file -Xopenmp-target"),
    # Not a single-TU compile, or not one whose IR we may re-optimize.
    *_specs(P, F, "-E", "preprocess"), *_specs(P, F, "-M -MM", "depfile-only"),
    *_specs(P, F, "-fsyntax-only", "syntax-only"), *_specs(P, F, "-S", "assembly-output"),
    *_specs(P, F, "-emit-llvm", "llvm-output"),
    *_specs(P, F, "--version -v -V -### -dumpmachine -dumpversion -dumpfullversion --help -help", "info"),
    *_specs(P, J, "-print- --print- -Wl,--version", "info"),
    *_specs(P, F, "-fembed-bitcode", "embed-bitcode"), *_specs(P, J, "-fembed-bitcode=", "embed-bitcode"),
    *_specs(P, F, "-flto", "lto"), *_specs(P, J, "-flto=", "lto"),
    *_specs(P, F, "-fobjc-arc", "objc-arc"),
    *_specs(P, F, "--coverage -coverage -fprofile-arcs -ftest-coverage -fcoverage-mapping", "coverage"),
    *_specs(P, J, "-fcoverage-", "coverage"),
    *_specs(P, J, "-fprofile- -fcs-profile-", "pgo"), *_specs(P, F, "-pg", "profiling"),
    *_specs(P, J, "-fsanitize=", "sanitizer"),
    *_specs(P, F, "-finstrument-functions -fxray-instrument", "instrumentation"),
    *_specs(P, J, "-fxray-", "instrumentation"),
    *_specs(P, F, "-fmodules -fcxx-modules", "modules"), *_specs(P, J, "-fmodules-", "modules"),
    *_specs(P, F, "-emit-ast -emit-interface-stubs", "ast-output"),
    *_specs(P, F, "--precompile", "pch"), *_specs(P, F, "--analyze", "analyze"),
    *_specs(P, S, "-Xclang -mllvm", "unsupported-flag"),
    *_specs(P, J, "-fplugin= -fpass-plugin= -fveclib=", "unsupported-flag"),
    *_specs(P, F, "-fplugin", "unsupported-flag"),
    # Side outputs clang writes beside (or named after) the object: the real compiler writes them.
    *_specs(P, F, "-save-temps --save-temps -gsplit-dwarf -ftime-trace -fstack-usage -save-stats "
            "--save-stats -fsave-optimization-record -fproc-stat-report -ftime-report -gen-reproducer",
            "side-output"),
    *_specs(P, J, "-save-temps= --save-temps= -gsplit-dwarf= -ftime-trace= -fdump- -save-stats= "
            "--save-stats= -fsave-optimization-record= -foptimization-record-file= "
            "-fproc-stat-report= -ftime-report= -gen-reproducer=", "side-output"),
    *_specs(P, JS, "-MJ", "side-output"),  # the compilation-database fragment: -MJfile or -MJ file
    *_specs(P, S, "--serialize-diagnostics -serialize-diagnostics -gen-cdb-fragment-path", "side-output"),
]
_EXACT: dict[str, OptionSpec] = {}
for _spec in OPTIONS:
    if _spec.form is not Form.JOINED:
        _EXACT.setdefault(_spec.spelling, _spec)
_JOINED = sorted((s for s in OPTIONS if s.form in (Form.JOINED, Form.JOINED_OR_SEPARATE)),
                 key=lambda s: -len(s.spelling))
# Joined spellings that only look like a prefix of ours.
_NOT_PGO = ("-fprofile-list", "-fprofile-sample-accurate")


@dataclass(frozen=True)
class Arg:
    """One argument of the command line as the table reads it (`tokens` as the user wrote it)."""

    tokens: tuple[str, ...]
    role: Role
    spelling: str = ""  # the matched option ("" for a source or an unknown option)
    value: str | None = None  # the option's argument, joined or separate
    reason: str = ""


def _wp(a: str) -> Arg | None:
    """`-Wp,…` carrying a depfile option we do not reproduce (`-Wp,-MT,x`…): a side output."""
    parts = a.split(",")[1:]
    if any(p.startswith("-M") for p in parts):
        return Arg((a,), Role.PASSTHROUGH, "-Wp,", reason="side-output")
    return None


def match(args: list[str], i: int) -> tuple[Arg, int]:
    """The argument at `args[i]` and the index of the next one."""
    a = args[i]
    nxt = args[i + 1] if i + 1 < len(args) else None
    if a == "-" or not a.startswith("-"):
        return Arg((a,), Role.SOURCE, value=a), i + 1
    spec = _EXACT.get(a)
    if spec is not None:
        if spec.form in (Form.SEPARATE, Form.JOINED_OR_SEPARATE):
            if nxt is None:
                return Arg((a,), Role.PASSTHROUGH, a, reason="bad-arguments"), i + 1
            return Arg((a, nxt), spec.role, a, nxt, spec.reason), i + 2
        return Arg((a,), spec.role, a, reason=spec.reason), i + 1
    for spec in _JOINED:
        if a.startswith(spec.spelling):
            if spec.reason == "pgo" and a.startswith(_NOT_PGO):
                break
            if spec.spelling == "-Wp,":
                odd = _wp(a)
                if odd is not None:
                    return odd, i + 1
            return Arg((a,), spec.role, spec.spelling, a[len(spec.spelling):], spec.reason), i + 1
    return Arg((a,), Role.OTHER, a), i + 1


def parse_args(args: list[str]) -> list[Arg]:
    """Read the whole command line once."""
    out: list[Arg] = []
    i = 0
    while i < len(args):
        arg, i = match(args, i)
        out.append(arg)
    return out


def _tokens(parsed: list[Arg], keep: set[Role]) -> list[str]:
    return [t for a in parsed if a.role in keep for t in a.tokens]


# What each derived command keeps of the user's arguments.
EMIT_ROLES = {Role.COMPILE, Role.LANG, Role.OPT_LEVEL, Role.DEPFILE, Role.PREPROCESSOR, Role.SOURCE,
              Role.OTHER}
CODEGEN_ROLES = {Role.OPT_LEVEL, Role.OTHER}


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
    has_dep: bool = False  # -MD / -MMD (or -Wp,-MD,f) present: the IR step writes a depfile
    mf: str | None = None  # the depfile's name when the command gives it
    has_mt: bool = False
    source_positions: list[int] = field(default_factory=list)  # indexes of sources in argv
    parsed: list[Arg] = field(default_factory=list)

    @property
    def passthrough(self) -> bool:
        return self.reason is not None

    def emit_args(self, depfiles: bool = True) -> list[str]:
        """The user's arguments for the IR step: everything but -o (the IR's path is ours), and
        without the depfile flags when another run (plain clang beside it) writes the depfile."""
        return _tokens(self.parsed, EMIT_ROLES if depfiles else EMIT_ROLES - {Role.DEPFILE})

    def depfile_args(self) -> list[str]:
        """Added to the IR step so its depfile is the one a plain compile writes: the final
        object as target, the default name next to -o."""
        if not self.has_dep:
            return []
        extra: list[str] = []
        if self.mf is None:
            extra += ["-MF", os.path.splitext(self.output or "")[0] + ".d"]
        if not self.has_mt:
            extra += ["-MT", self.output or ""]
        return extra

    def codegen_args(self) -> list[str]:
        """What codegen from IR (and the pipeline and target queries) keep of the user's flags."""
        return _tokens(self.parsed, CODEGEN_ROLES)


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


def classify(raw_argv: list[str], default_lang: str = "c") -> Invocation:
    """Parse `raw_argv` (without the program name) into an Invocation."""
    args, llm_flags = split_llm_flags(expand_response_files(raw_argv))
    inv = Invocation(argv=args, llm_flags=llm_flags)
    if not args:
        inv.reason = "no-arguments"
        return inv
    inv.parsed = parse_args(args)
    sources: list[tuple[str, str | None]] = []
    has_c = False
    x_lang: str | None = None
    reason: str | None = None
    pos = 0
    for arg in inv.parsed:
        here, pos = pos, pos + len(arg.tokens)
        if arg.role is Role.PASSTHROUGH:
            reason = reason or arg.reason
        elif arg.role is Role.COMPILE:
            has_c = True
        elif arg.role is Role.OUTPUT:
            inv.output, inv.output_given = arg.value, True
        elif arg.role is Role.LANG:
            x_lang = None if arg.value == "none" else arg.value
        elif arg.role is Role.OPT_LEVEL:
            inv.opt_level = arg.tokens[0]
        elif arg.role is Role.DEPFILE:
            if arg.spelling in ("-MD", "-MMD", "-Wp,-MD,", "-Wp,-MMD,"):
                inv.has_dep = True
            if arg.spelling in ("-MF", "-Wp,-MD,", "-Wp,-MMD,"):
                inv.mf = arg.value
            elif arg.spelling in ("-MT", "-MQ"):
                inv.has_mt = True
        elif arg.role is Role.SOURCE:
            sources.append((arg.tokens[0], x_lang))
            inv.source_positions.append(here)

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
    """The codegen flags of any command line (a recording's argv too): see `Invocation.codegen_args`."""
    return _tokens(parse_args(args), CODEGEN_ROLES)
