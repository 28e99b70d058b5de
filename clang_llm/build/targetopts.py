"""The target options clang's own `-c` gives its backend, translated for `opt`.

`opt` builds its TargetMachine from its command line, not from the TU's flags: left alone it
uses the static relocation model and the small code model, so passes that ask the target
(`rel-lookup-table-converter`, TTI cost models, dso_local inference) decide differently from
clang building PIE, and the "-Oz baseline" is not the object clang ships. clang is asked (its
`-###` job line) rather than the options being guessed from the user's flags, so whatever the
driver implies (PIE by default, `-fno-pic`, `-mcmodel`, `-march`) arrives exactly.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clang_llm.toolchain import run

# cc1 options that take a value, and the `opt` option that sets the same TargetMachine field.
_VALUE_OPTIONS: dict[str, str] = {
    "-mrelocation-model": "-relocation-model",
    "-target-cpu": "-mcpu",
}
# cc1 `-name=value` options and their `opt` spelling.
_JOINED_OPTIONS: dict[str, str] = {
    "-mcmodel=": "-code-model=",
    "-mlarge-data-threshold=": "-large-data-threshold=",
}
# cc1 flags without a value.
_FLAG_OPTIONS: dict[str, str] = {
    "-femulated-tls": "-emulated-tls",
    "-enable-tlsdesc": "-enable-tlsdesc",
}


@dataclass(frozen=True)
class TargetOptions:
    """What `opt` needs on its command line to model the same target as clang's backend."""

    opt_flags: tuple[str, ...]

    @classmethod
    def from_cc1(cls, cc1: Sequence[str]) -> TargetOptions:
        flags: list[str] = []
        features: list[str] = []
        i = 0
        while i < len(cc1):
            a = cc1[i]
            nxt = cc1[i + 1] if i + 1 < len(cc1) else None
            if a in _VALUE_OPTIONS and nxt is not None:
                flags.append(f"{_VALUE_OPTIONS[a]}={nxt}")
                i += 2
                continue
            if a == "-target-feature" and nxt is not None:
                features.append(nxt)
                i += 2
                continue
            for prefix, opt_prefix in _JOINED_OPTIONS.items():
                if a.startswith(prefix):
                    flags.append(opt_prefix + a[len(prefix):])
            if a in _FLAG_OPTIONS:
                flags.append(_FLAG_OPTIONS[a])
            i += 1
        if features:
            flags.append("-mattr=" + ",".join(features))
        return cls(tuple(flags))


def cc1_job(compiler: Path, flags: Sequence[str], lang: str, timeout: float) -> list[str]:
    """The `-cc1` command clang would run to compile a `lang` TU with `flags` (nothing runs)."""
    cmd = [str(compiler), *flags, "-###", "-x", lang, "-c", "/dev/null", "-o", "/dev/null",
           "-Wno-unused-command-line-argument"]
    res = run(cmd, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"clang -### failed: {res.stderr.decode(errors='replace')[-500:]}")
    for line in reversed(res.stderr.decode(errors="replace").splitlines()):
        args = shlex.split(line)
        if len(args) > 1 and args[1] == "-cc1":
            return args
    raise RuntimeError("clang -### printed no -cc1 job")


def derive(compiler: Path, flags: Sequence[str], lang: str, timeout: float) -> TargetOptions:
    """The target options clang would give its backend for a TU built with `flags`."""
    return TargetOptions.from_cc1(cc1_job(compiler, flags, lang, timeout))
