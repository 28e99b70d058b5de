"""Find the real LLVM 22 tools and run them with timeouts.

The wrapper may be installed as `clang` on PATH (masquerade symlinks), so discovery
skips any candidate that resolves to one of our own launchers.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from clang_llm import LLVM_MAJOR
from clang_llm.errors import ToolMissing, ToolTimeout

INSTALL_HINT = f"install it with: apt-get install clang-{LLVM_MAJOR} llvm-{LLVM_MAJOR}"

# Environment variable that overrides each tool, and the names tried on PATH.
_TOOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "clang": ("CLANG_LLM_CLANG", (f"clang-{LLVM_MAJOR}",)),
    "clang++": ("CLANG_LLM_CLANGXX", (f"clang++-{LLVM_MAJOR}",)),
    "opt": ("CLANG_LLM_OPT", (f"opt-{LLVM_MAJOR}",)),
    "llvm-size": ("CLANG_LLM_LLVM_SIZE", (f"llvm-size-{LLVM_MAJOR}",)),
    "llvm-ar": ("CLANG_LLM_LLVM_AR", (f"llvm-ar-{LLVM_MAJOR}",)),
}


def is_our_wrapper(path: Path) -> bool:
    """True when `path` is one of clang-llm's own launchers (avoid exec'ing ourselves)."""
    try:
        real = path.resolve()
        with open(real, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return b"clang_llm" in head or b"clang-llm" in real.name.encode()


def find_tool(name: str) -> Path:
    """Locate tool `name`: the CLANG_LLM_* override first, else the versioned name on PATH."""
    env_var, candidates = _TOOLS[name]
    override = os.environ.get(env_var)
    if override:
        p = Path(override) if os.sep in override else Path(shutil.which(override) or override)
        if not p.exists():
            raise ToolMissing(f"clang-llm: {env_var}={override} does not exist; {INSTALL_HINT}")
        if is_our_wrapper(p):
            raise ToolMissing(f"clang-llm: {env_var}={override} points at clang-llm itself (recursion)")
        return p
    for cand in candidates:
        found = shutil.which(cand)
        if found and not is_our_wrapper(Path(found)):
            return Path(found)
    raise ToolMissing(f"clang-llm: cannot find {candidates[0]} on PATH; {INSTALL_HINT}")


@dataclass(frozen=True)
class Toolchain:
    clang: Path
    clangxx: Path
    opt: Path

    @classmethod
    def discover(cls) -> Toolchain:
        return _discover_cached(
            tuple(os.environ.get(v) or "" for v, _ in _TOOLS.values()), os.environ.get("PATH", "")
        )

    def compiler(self, cxx: bool) -> Path:
        return self.clangxx if cxx else self.clang

    @functools.cached_property
    def identity(self) -> str:
        """A string that changes when any tool changes (path + size + mtime): part of cache keys."""
        parts = []
        for p in (self.clang, self.opt):
            st = p.resolve().stat()
            parts.append(f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}")
        return "|".join(parts)


@functools.lru_cache(maxsize=4)
def _discover_cached(_env: tuple[str, ...], _path: str) -> Toolchain:
    return Toolchain(clang=find_tool("clang"), clangxx=find_tool("clang++"), opt=find_tool("opt"))


def run(
    cmd: list[str | Path],
    *,
    timeout: float | None = None,
    capture: bool = True,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; raise ToolTimeout (after killing it) when it runs past `timeout` seconds."""
    try:
        return subprocess.run(
            [str(c) for c in cmd],
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            cwd=cwd,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise ToolTimeout(f"{Path(str(cmd[0])).name} timed out after {timeout:g}s") from e
