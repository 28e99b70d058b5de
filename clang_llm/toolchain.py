"""Find the real LLVM 22 tools and run them with timeouts.

The wrapper may be installed as `clang` on PATH (masquerade symlinks), so discovery
skips any candidate that resolves to one of our own launchers.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


# Longer command lines go to the tool as one response file: Linux refuses an exec whose
# arguments pass 2 MiB in all (E2BIG) or 128 KiB in one; LLVM's tools all read `@file`.
ARGS_INLINE_MAX = 96 << 10


def _rsp_quote(arg: str) -> bytes:
    """One argument in the GNU response-file syntax clang and opt read (any bytes)."""
    raw = os.fsencode(arg)
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def args_too_long(cmd: list[str]) -> bool:
    return sum(len(os.fsencode(a)) + 1 for a in cmd) > ARGS_INLINE_MAX


@contextmanager
def exec_argv(cmd: list[str]) -> Iterator[list[str]]:
    """`cmd` itself, or, when its arguments are too long to exec, the tool and one response file
    (in a private temp dir, removed when the block ends)."""
    if not args_too_long(cmd):
        yield cmd
        return
    with tempfile.TemporaryDirectory(prefix="clang-llm-args-") as d:
        path = os.path.join(d, "args.rsp")
        with open(path, "wb") as f:
            f.write(b"\n".join(_rsp_quote(a) for a in cmd[1:]) + b"\n")
        yield [cmd[0], "@" + path]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the tool and everything it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def run(
    cmd: list[str | Path],
    *,
    timeout: float | None = None,
    capture: bool = True,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool in its own process group; raise ToolTimeout when it runs past `timeout`
    seconds, after killing the whole group (a script's children too)."""
    with exec_argv([str(c) for c in cmd]) as argv:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            process_group=0,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            _kill_group(proc)
            proc.communicate()
            raise ToolTimeout(f"{Path(str(cmd[0])).name} timed out after {timeout:g}s") from e
        except BaseException:  # an interrupt: never leave the tool (or its children) running
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # what the tool left behind in its group
            except OSError:
                pass
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)
