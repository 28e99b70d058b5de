"""Entry points `clang-llm` / `clang++-llm`: classify, pass through, or optimize one TU.

The outermost layer is a safety net: whatever happens inside, the user gets what plain clang
(at -Oz, for a compile we would have optimized) gives, with clang's own output and exit code.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clang_llm.clang_args import Invocation, classify, split_llm_flags, split_sources
from clang_llm.config import Settings, load_settings
from clang_llm.db import Database
from clang_llm.errors import ToolMissing
from clang_llm.logs import setup_logging
from clang_llm.records import Event
from clang_llm.toolchain import Toolchain, args_too_long, exec_argv, find_tool, is_our_wrapper

if TYPE_CHECKING:
    from clang_llm.driver.pipeline import Outcome

log = logging.getLogger("clang_llm")
RECURSION_ENV = "CLANG_LLM_ACTIVE"


def _on_signal(signum: int, _frame: object) -> None:
    # Turn SIGTERM/SIGHUP into an exception so temp dirs are removed and children killed.
    raise KeyboardInterrupt(f"signal {signum}")


# Set by the daemon's child: hands a command back to the thin client, which execs it itself (so
# a passthrough costs the client one round trip, not a process of ours waiting on clang).
handoff: Callable[[list[str]], bool] | None = None
handed_off = False


def _hand_off(compiler: Path, args: list[str]) -> bool:
    """Whether the daemon's client took the command to exec itself (never in-process)."""
    global handed_off
    if handoff is not None and not handed_off and handoff([str(compiler), *args]):
        handed_off = True
    return handed_off


def _exec_real(compiler: Path, args: list[str], final: bool = False) -> int:
    """Run the real compiler with inherited stdio; return its exit status. `final`: its status is
    the call's and nothing of ours follows it, so the daemon's client may run it instead."""
    cmd = [str(compiler), *args]
    # A long command goes through a response file that must outlive the run: ours to run.
    if final and not args_too_long(cmd) and _hand_off(compiler, args):
        return 0
    try:
        with exec_argv(cmd) as argv:
            return subprocess.run(argv, check=False).returncode
    except KeyboardInterrupt:
        return 130


def _compiler_or_die(cxx: bool) -> Path:
    try:
        return find_tool("clang++" if cxx else "clang")
    except ToolMissing as e:
        print(str(e), file=sys.stderr)
        sys.exit(127)


def _launcher_args(argv: list[str]) -> tuple[list[str], bool | None]:
    """Support `clang-llm clang-22 …` (prefix / CMAKE_<LANG>_COMPILER_LAUNCHER form): the named
    compiler becomes the real one (unless it is ourselves)."""
    if not argv or argv[0].startswith("-") or os.path.splitext(argv[0])[1]:
        return argv, None
    name = os.path.basename(argv[0])
    if not name.startswith(("clang", "cc", "gcc", "c++", "g++")):
        return argv, None
    found = shutil.which(argv[0])
    if not found:
        return argv, None
    cxx = "++" in name
    if not is_our_wrapper(Path(found)):
        os.environ["CLANG_LLM_CLANGXX" if cxx else "CLANG_LLM_CLANG"] = found
    return argv[1:], cxx


def run_driver(argv: list[str], cxx: bool, daemon_reason: str = "") -> int:
    args, launcher_cxx = _launcher_args(argv)
    if launcher_cxx is not None:
        cxx = launcher_cxx
    if os.environ.get(RECURSION_ENV):
        # We were invoked by ourselves (a masquerade symlink found first on PATH by a child):
        # never loop; behave as the real compiler.
        return _exec_real(_compiler_or_die(cxx), split_llm_flags(args)[0], final=True)
    os.environ[RECURSION_ENV] = "1"
    inv = classify(args, default_lang="c++" if cxx else "c")
    problems: list[str] = []
    try:
        src = Path(inv.source) if inv.source else None
        settings = load_settings(_flag_settings(inv), source_file=src, problems=problems)
    except Exception as e:  # noqa: BLE001  (a broken config file must not break the build, nor
        # cost the kill switch: the environment and the flags still apply)
        problems.append(f"settings: {type(e).__name__}: {e}")
        settings = _env_and_flags(_flag_settings(inv))
    setup_logging(settings)
    for p in problems:
        log.warning("config: %s", p)
    compiler = _compiler_or_die(cxx)
    if "identity" in inv.llm_flags:
        # For compiler caches (ccache's compiler_check): everything that decides our objects.
        from clang_llm.identity import wrapper_identity

        sys.stdout.write(wrapper_identity(settings, Toolchain.discover(), Path.cwd()))
        return 0
    plain = _plain_args(args, inv)
    if settings.disable:
        return _exec_real(compiler, plain, final=True)
    db = Database(settings.state_dir, timeout=settings.db_timeout)
    if daemon_reason:  # the thin client could not use the daemon: this call runs in-process
        db.safe("stats", db.add_event, Event("daemon", daemon_reason))
    try:
        units = [inv]
        if inv.passthrough:
            units = split_sources(inv, default_lang="c++" if cxx else "c") or []
            if not units:
                return _passthrough(compiler, plain, db, inv.reason)
        if inv.opt_level == "-O0" and not settings.optimize_o0:
            return _passthrough(compiler, plain, db, "O0-untouched")
        jobs = [(u, settings if u is inv else _settings_for(u)) for u in units]
        if all(s.off and not s.record for _, s in jobs):
            return _compile_direct([u for u, _ in jobs], compiler, plain, db)
        return _optimize(jobs, cxx, compiler, plain, db)
    finally:
        db.close()


def _passthrough(compiler: Path, plain: list[str], db: Database, reason: str) -> int:
    """Plain clang, untouched, counted: handed to the client first, so the count costs it nothing."""
    handed = _hand_off(compiler, plain)
    db.safe("stats", db.add_event, Event("passthrough", reason))
    return 0 if handed else _exec_real(compiler, plain)


def _settings_for(inv: Invocation) -> Settings:
    """The settings of one TU of a multi-source call (per-file sections may differ)."""
    try:
        return load_settings(_flag_settings(inv), source_file=Path(inv.source or ""))
    except Exception:  # noqa: BLE001
        return _env_and_flags(_flag_settings(inv))


def _env_and_flags(flags: dict[str, str]) -> Settings:
    """Settings from the environment and the flags alone (no file), or the defaults."""
    try:
        return load_settings(flags, files=False)
    except Exception:  # noqa: BLE001
        return Settings()


def _flag_settings(inv: Invocation) -> dict[str, str]:
    return {k.replace("-", "_"): v for k, v in inv.llm_flags.items()}


def _plain_args(raw: list[str], inv: Invocation) -> list[str]:
    """The user's arguments minus --llm-* (raw when no @file hid an --llm- flag, else expanded)."""
    stripped, flags = split_llm_flags(raw)
    return stripped if flags == inv.llm_flags else inv.argv


def _optimize(jobs: list[tuple[Invocation, Settings]], cxx: bool, compiler: Path, plain: list[str],
              db: Database) -> int:
    """Compile each TU through the pipeline; if any of them cannot be, plain clang -Oz builds the
    whole command (clang's own diagnostics and exit code)."""
    from clang_llm.driver.pipeline import compile_tu
    from clang_llm.errors import Fallback
    from clang_llm.optimizer.factory import known_model_id, make_optimizer

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    reason = None
    done: tuple[int, bytes, bytes] | None = None
    outcomes: list[Outcome] = []
    try:
        toolchain = Toolchain.discover()
        for inv, settings in jobs:
            outcomes.append(compile_tu(inv, settings, toolchain, cxx, db, make_optimizer, known_model_id))
    except Fallback as e:
        reason, done = e.reason, e.done
        if reason != "frontend-error":
            log.warning("%s: fallback to clang -Oz: %s", jobs[len(outcomes)][0].source, e)
    except ToolMissing as e:
        reason = "tool-missing"
        log.warning("%s", e)
    except KeyboardInterrupt:
        return 130
    except Exception:
        reason = "internal-error"
        log.exception("internal error on %s", jobs[min(len(outcomes), len(jobs) - 1)][0].source)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if reason is not None:
        db.safe("stats", db.add_event, Event("fallback", reason))
        if done is not None and len(jobs) == 1:  # plain clang -Oz already ran: its result is the call's
            sys.stdout.buffer.write(done[1])
            sys.stdout.flush()
            sys.stderr.buffer.write(done[2])
            sys.stderr.flush()
            return done[0]
        return _exec_real(compiler, [*plain, "-Oz"], final=True)
    for outcome in outcomes:
        sys.stdout.buffer.write(outcome.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(outcome.stderr)
        sys.stderr.flush()
        _count(db, outcome)
    return 0


def _compile_direct(units: list[Invocation], compiler: Path, plain: list[str], db: Database) -> int:
    """`--llm-off` without recording: the object is clang's -Oz object by definition, so clang
    makes it in one run (depfiles and all) instead of the IR / opt / codegen path; counted and
    recorded like that path's -Oz outcome."""
    from clang_llm.objsize import object_sizes
    from clang_llm.records import Finding, TURecord

    rc = _exec_real(compiler, [*plain, "-Oz"])
    if rc != 0:
        db.safe("stats", db.add_event, Event("fallback", "frontend-error"))
        return rc
    for inv in units:
        try:
            sizes = object_sizes(Path(inv.output or "a.o"))
        except (OSError, ValueError) as e:
            log.warning("%s: cannot measure %s: %s", inv.source, inv.output, e)
            continue
        oz = Finding(pass_list="Oz", valid=True, sizes=sizes)
        record = TURecord(object=str(Path(inv.output or "").resolve()), source=str(Path(inv.source or "").resolve()),
                          cwd=os.getcwd(), argv=tuple(inv.argv), llm_flags=dict(inv.llm_flags), oz=oz, chosen=oz,
                          reason="llm-off", settings={"off": True})
        db.safe("stats", db.add_event, record.event("oz", "llm-off"))
        db.safe("record", db.put_record, record)
    return 0


def _count(db: Database, outcome: Outcome) -> None:
    db.safe("stats", db.add_event, outcome.record.event(outcome.kind, outcome.reason))
    db.safe("record", db.put_record, outcome.record)


def safe_main(argv: list[str], cxx: bool, daemon_reason: str = "") -> int:
    """The last safety net: an unexpected error anywhere above becomes a plain clang run."""
    try:
        return run_driver(argv, cxx, daemon_reason)
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except BaseException:
        log.exception("clang-llm failed before compiling; running clang unchanged")
        args, _ = _launcher_args(argv)
        inv = classify(args, default_lang="c++" if cxx else "c")
        extra = [] if inv.passthrough else ["-Oz"]
        return _exec_real(_compiler_or_die(cxx), [*_plain_args(args, inv), *extra], final=True)


def main_c() -> None:
    sys.exit(safe_main(sys.argv[1:], cxx=False))


def main_cxx() -> None:
    sys.exit(safe_main(sys.argv[1:], cxx=True))
