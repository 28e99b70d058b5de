"""Build and install the native front (`front.c`) as `clang-llm` / `clang++-llm`.

A Python start-up costs every compiler call 20-30 ms; a configure script makes hundreds of calls,
most of them links and probes that end as plain clang. The front speaks the daemon's protocol
in C and leaves everything else to the Python client, so the two never disagree on what a call
does. It is built with the clang the wrapper uses anyway, for this interpreter and this package
(both paths are built in); `front status` says whether the installed one still matches.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from clang_llm.driver.client import PROTOCOL, code_root
from clang_llm.errors import ToolError
from clang_llm.toolchain import find_tool, run

SOURCE = Path(__file__).with_name("front.c")
NAMES = ("clang-llm", "clang++-llm")
_MARK, _END = b"clang-llm-front:", b":end"


def scripts_dir() -> Path:
    """Where this environment's `clang-llm` lives (a venv's bin)."""
    return Path(sysconfig.get_path("scripts"))


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build(dest: Path) -> None:
    """Compile the front to `dest` (atomically: a half-built file never takes the name)."""
    clang = find_tool("clang")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    cmd = [str(clang), "-O2", "-std=c11", "-Wall", "-Werror", "-o", str(tmp), str(SOURCE),
           f"-DCLANG_LLM_PYTHON={_c_string(sys.executable)}", f"-DCLANG_LLM_CODE={_c_string(code_root())}",
           f"-DCLANG_LLM_PROTOCOL={PROTOCOL}"]
    try:
        done = run(cmd, timeout=120)
        if done.returncode != 0:
            raise ToolError(f"building the native front failed: {done.stderr.decode(errors='replace')[-800:]}")
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def install(directory: Path | None = None) -> list[Path]:
    """Build the front as `clang-llm` and `clang++-llm` in `directory` (default: this venv's bin),
    replacing the Python entry scripts of the same names."""
    directory = directory or scripts_dir()
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / n for n in NAMES]
    for p in paths:
        build(p)
    return paths


@dataclass(frozen=True)
class FrontStatus:
    path: Path
    native: bool  # the file is a built front (else: the Python entry script, or missing)
    current: bool  # built for this package and interpreter (its protocol is checked per call)


def status(path: Path) -> FrontStatus:
    try:
        data = path.read_bytes()
    except OSError:
        return FrontStatus(path, False, False)
    at = data.find(_MARK)
    if at < 0:
        return FrontStatus(path, False, False)
    end = data.find(_END, at)
    built_for = data[at + len(_MARK):end].decode(errors="replace")
    return FrontStatus(path, True, built_for == code_root())
