"""The thin client: what `clang-llm` runs on every call. Standard library only, no package imports.

It hands the call to the user's warm daemon (`driver/daemon.py`) over a Unix socket: the
command line, working directory, environment and, once the daemon has acknowledged the call,
its stdin, stdout and stderr as file descriptors (so colours, ttys and pipes behave exactly as
for clang). The daemon forks a child with
every module already imported, which runs the same driver as an in-process call and answers
with the exit status. Anything wrong with the daemon (not running, a stale socket, another
protocol or code version, no acknowledgement in time, dying mid-compile) makes this call run
in-process instead, with the reason counted (`daemon:<reason>` in `clang-llm-tool stats`);
a daemon that is not running is started for the next calls.

`CLANG_LLM_DAEMON=0` (or `--llm-daemon=0`) keeps every call in-process.
"""

from __future__ import annotations

import json
import os
import socket
import sys

PROTOCOL = 1
ACK_TIMEOUT_S = 10.0  # a live daemon acknowledges at once (one fork); longer means it is hung
_OFF = ("0", "false", "no", "off")


def state_dir(env: dict[str, str] | os._Environ[str]) -> str:
    """The state dir as the environment gives it (the daemon is per user and per state dir)."""
    if env.get("CLANG_LLM_DIR"):
        return env["CLANG_LLM_DIR"]
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "clang-llm")


def daemon_dir(state: str) -> str:
    return os.path.join(state, "daemon")


def code_id() -> str:
    """Which code the daemon runs: a change to any module (an upgrade, an edit) makes a new id."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    newest, n = 0, 0
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                newest, n = max(newest, os.stat(os.path.join(d, f)).st_mtime_ns), n + 1
    return f"{newest:x}-{n}"


def wanted(argv: list[str], env: dict[str, str] | os._Environ[str]) -> bool:
    if env.get("CLANG_LLM_ACTIVE") or env.get("CLANG_LLM_DISABLE", "").lower() not in ("", *_OFF):
        return False  # recursion guard / kill switch: the in-process driver handles those at once
    if env.get("CLANG_LLM_DAEMON", "").lower() in _OFF:
        return False
    return not any(a.startswith("--llm-daemon=") and a.split("=", 1)[1].lower() in _OFF for a in argv)


def _jobserver_fds(env: dict[str, str] | os._Environ[str]) -> list[int]:
    """make's jobserver pipe, when make passed it to us (a `+` recipe under make 4.3)."""
    flags = env.get("MAKEFLAGS", "")
    for key in ("--jobserver-auth=", "--jobserver-fds="):
        at = flags.rfind(key)
        if at < 0:
            continue
        spec = flags[at + len(key):].split(" ", 1)[0]
        if spec.startswith("fifo:"):
            return []  # a path: the daemon opens it itself
        try:
            fds = [int(x) for x in spec.split(",", 1)]
            for fd in fds:
                os.fstat(fd)
        except (ValueError, OSError):
            return []
        return fds if len(fds) == 2 else []
    return []


def _send_header(sock: socket.socket, header: dict[str, object]) -> None:
    data = json.dumps(header).encode()
    sock.sendall(len(data).to_bytes(4, "big") + data)


def _read_line(sock: socket.socket, buf: bytearray) -> dict[str, object] | None:
    while b"\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


def through_daemon(argv: list[str], cxx: bool) -> tuple[int | None, str]:
    """(exit status, "") when the daemon ran the call; (None, reason) when it cannot."""
    env = os.environ
    state = state_dir(env)
    path = os.path.join(daemon_dir(state), "socket")
    try:
        timeout = float(env.get("CLANG_LLM_DAEMON_TIMEOUT", ACK_TIMEOUT_S))
    except ValueError:
        timeout = ACK_TIMEOUT_S
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except FileNotFoundError:
            spawn_daemon(state)
            return None, "not-running"
        except ConnectionRefusedError:
            spawn_daemon(state)  # it replaces the stale socket
            return None, "stale-socket"
        except TimeoutError:
            return None, "timeout"
        except OSError:
            return None, "unreachable"
        header = {"protocol": PROTOCOL, "code": code_id(), "argv": argv, "cxx": cxx, "cwd": os.getcwd(),
                  "env": dict(env)}
        try:
            _send_header(sock, header)
            buf = bytearray()
            ack = _read_line(sock, buf)
            if ack is None:
                return None, "crashed"
            if ack.get("error") == "protocol":
                stop_daemon(state)
                return None, "protocol-mismatch"
            if "ack" not in ack:
                return None, "protocol-mismatch"
            # Only an acknowledged daemon gets our stdio: one that hangs before that holds nothing.
            socket.send_fds(sock, [b"F"], [0, 1, 2, *_jobserver_fds(env)])
            sock.settimeout(None)  # acknowledged: the compile itself may take its time
            done = _read_line(sock, buf)
        except TimeoutError:
            return None, "timeout"
        except OSError:
            return None, "crashed"
        if done is None or not isinstance(done.get("rc"), int):
            return None, "crashed"
        return int(done["rc"]), ""  # type: ignore[call-overload]
    finally:
        sock.close()


def spawn_daemon(state: str) -> None:
    """Start the daemon detached (its own session, no terminal, stdio on /dev/null)."""
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        # Nothing else of the caller's: an inherited pipe (configure keeps its stdout on fd 6)
        # held open by a long-lived daemon would keep whoever reads that pipe waiting.
        os.closerange(3, 1 << 16)
        env = {k: v for k, v in os.environ.items() if k != "CLANG_LLM_ACTIVE"}
        os.execve(sys.executable, [sys.executable, "-m", "clang_llm.driver.daemon", state], env)
    finally:
        os._exit(0)


def stop_daemon(state: str) -> bool:
    """Ask the daemon of `state` to exit (SIGTERM to the pid it wrote); whether one was there."""
    import signal

    try:
        with open(os.path.join(daemon_dir(state), "status.json")) as f:
            pid = int(json.load(f)["pid"])
        os.kill(pid, signal.SIGTERM)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def main(cxx: bool) -> int:
    argv = sys.argv[1:]
    reason = ""
    if wanted(argv, os.environ):
        rc, reason = through_daemon(argv, cxx)
        if rc is not None:
            return rc
    from clang_llm.driver.main import safe_main

    return safe_main(argv, cxx, daemon_reason=reason)


def main_c() -> None:
    sys.exit(main(cxx=False))


def main_cxx() -> None:
    sys.exit(main(cxx=True))
