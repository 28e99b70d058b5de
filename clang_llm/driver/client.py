"""The thin client: what `clang-llm` runs on every call. Standard library only, no package imports.

It hands the call to the user's warm daemon (`driver/daemon.py`) over a Unix socket: the
command line, working directory, environment and, once the daemon has acknowledged the call,
its stdin, stdout and stderr as file descriptors (so colours, ttys and pipes behave exactly as
for clang). The daemon forks a child with every module already imported, which runs the same
driver as an in-process call and answers with the exit status. A call that is not a compile we
optimize (a link, `-E`, `--version`: most of a configure run) comes back, once counted, as
"exec this yourself", so plain clang runs in this very process with nothing of ours between it
and make. Anything wrong with the daemon (not running, a stale socket, another protocol or code
version, no acknowledgement in time, dying mid-compile) makes this call run in-process instead,
with the reason counted (`daemon:<reason>` in `clang-llm-tool stats`); a daemon that is not
running is started for the next calls.

`CLANG_LLM_DAEMON=0` (or `--llm-daemon=0`) keeps every call in-process.
"""

from __future__ import annotations

import _socket  # not `socket`: its enum-based wrapper costs more to import than the rest of a call
import marshal  # not `json` (its import is ~10 ms, paid on every configure probe)
import os
import sys

PROTOCOL = 2
ACK_TIMEOUT_S = 10.0  # a live daemon acknowledges at once (one fork); longer means it is hung
MAX_FRAME = 4 << 20
FRONT_REASON_ENV = "CLANG_LLM_FRONT_REASON"  # set by the native front (front.c) when it gives up
_OFF = ("0", "false", "no", "off")
_SOL_SOCKET, _SCM_RIGHTS, _SO_PEERCRED = 1, 1, 17  # Linux values; `_socket` has them too, as plain ints


def state_dir(env: dict[str, str] | os._Environ[str]) -> str:
    """The state dir as the environment gives it (the daemon is per user and per state dir)."""
    if env.get("CLANG_LLM_DIR"):
        return env["CLANG_LLM_DIR"]
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "clang-llm")


def daemon_dir(state: str) -> str:
    return os.path.join(state, "daemon")


def package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_root() -> str:
    """Which installation a client is: the daemon serves only clients of its own package and
    interpreter (the native front has the same string built in)."""
    return f"{package_root()}|{sys.hexversion:x}"


def code_id() -> str:
    """Which code the daemon runs: a change to any module (an upgrade, an edit) makes a new id.
    The daemon compares it, recomputed on every call, with the one it started with."""
    newest, n = 0, 0
    for d, _, files in os.walk(package_root()):
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


def send_frame(sock: _socket.socket, msg: dict[str, object]) -> None:
    """One message: a 4-byte big-endian length, then the dict in marshal's version 0 (str, int,
    list, dict only: simple enough for the native front to read and write)."""
    data = marshal.dumps(msg, 0)
    sock.sendall(len(data).to_bytes(4, "big") + data)


def _recv_exact(sock: _socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(65536, n - got))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_frame(sock: _socket.socket) -> dict[str, object] | None:
    """The next message, or None when the peer closed, sent garbage or an oversized frame."""
    head = _recv_exact(sock, 4)
    if head is None or int.from_bytes(head, "big") > MAX_FRAME:
        return None
    body = _recv_exact(sock, int.from_bytes(head, "big"))
    try:
        msg = marshal.loads(body) if body is not None else None
    except (ValueError, EOFError, TypeError):
        return None
    return msg if isinstance(msg, dict) else None


def _owned_privately(daemon: str, sock_path: str) -> bool:
    """Whether the daemon's directory is ours with mode 0700 and its socket ours: another user's
    socket in a shared state dir must never get our environment or tell us what to exec. A path
    that is not there yet is left to `connect` (not running)."""
    uid = os.getuid()
    try:
        d, s = os.lstat(daemon), os.lstat(sock_path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return (d.st_uid == uid and d.st_mode & 0o170077 == 0o040000  # a directory, nothing for others
            and s.st_uid == uid and s.st_mode & 0o170000 == 0o140000)  # a socket


def peer_uid(sock: _socket.socket) -> int | None:
    """The uid of the process at the other end (SO_PEERCRED), None if it cannot be read."""
    try:
        creds = sock.getsockopt(_SOL_SOCKET, _SO_PEERCRED, 12)
    except OSError:
        return None
    return int.from_bytes(creds[4:8], sys.byteorder) if len(creds) >= 8 else None


def _handoff(msg: dict[str, object]) -> tuple[list[str], dict[str, str]] | None:
    """A daemon's "run this yourself" answer (a passthrough): the command and its environment."""
    argv, env = msg.get("exec"), msg.get("env")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv) and isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        return None
    return argv, env


def through_daemon(argv: list[str], cxx: bool) -> tuple[int | None, str]:
    """(exit status, "") when the daemon ran the call; (None, reason) when it cannot. A call the
    daemon hands back (plain clang, untouched) is exec'd here and does not return."""
    env = os.environ
    state = state_dir(env)
    path = os.path.join(daemon_dir(state), "socket")
    try:
        timeout = float(env.get("CLANG_LLM_DAEMON_TIMEOUT", ACK_TIMEOUT_S))
    except ValueError:
        timeout = ACK_TIMEOUT_S
    if not _owned_privately(daemon_dir(state), path):
        return None, "untrusted"
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    handoff = None
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except FileNotFoundError:
            return None, "not-running"
        except ConnectionRefusedError:
            return None, "stale-socket"
        except TimeoutError:
            return None, "timeout"
        except OSError:
            return None, "unreachable"
        if peer_uid(sock) != os.getuid():  # checked on the connection itself: no race with a swap
            return None, "untrusted"
        header = {"protocol": PROTOCOL, "code": code_root(), "argv": argv, "cxx": cxx, "cwd": os.getcwd(),
                  "env": dict(env)}
        try:
            send_frame(sock, header)
            ack = recv_frame(sock)
            if ack is None:
                return None, "crashed"
            if ack.get("error") == "protocol":
                return None, "protocol-mismatch"
            if "ack" not in ack:
                return None, "protocol-mismatch"
            # Only an acknowledged daemon gets our stdio: one that hangs before that holds nothing.
            fds = [0, 1, 2, *_jobserver_fds(env)]
            sock.sendmsg([b"F"], [(_SOL_SOCKET, _SCM_RIGHTS, b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))])
            sock.settimeout(None)  # acknowledged: the compile itself may take its time
            done = recv_frame(sock)
        except TimeoutError:
            return None, "timeout"
        except OSError:
            return None, "crashed"
        if done is not None and "exec" in done:
            handoff = _handoff(done)
            if handoff is None:
                return None, "crashed"  # a garbled answer, as any other
        elif done is None or not isinstance(done.get("rc"), int):
            return None, "crashed"
        else:
            return int(done["rc"]), ""  # type: ignore[call-overload]
    finally:
        sock.close()
    try:  # the daemon counted the call; the real compiler takes over this process, stdio and all
        os.execve(handoff[0][0], handoff[0], handoff[1])
    except OSError:
        return None, "exec-failed"


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
    import json
    import signal

    try:
        with open(os.path.join(daemon_dir(state), "status.json")) as f:
            pid = int(json.load(f)["pid"])
        os.kill(pid, signal.SIGTERM)
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def after_failure(reason: str) -> str:
    """What a failed daemon call leaves to do, whichever client saw it: start a daemon for the
    next calls (none, or a stale socket: the new one replaces it), or stop one that runs other
    code (the next call starts one with ours)."""
    state = state_dir(os.environ)
    if reason in ("not-running", "stale-socket"):
        spawn_daemon(state)
    elif reason == "protocol-mismatch":
        stop_daemon(state)
    return reason


def main(cxx: bool) -> int:
    argv = sys.argv[1:]
    reason = ""
    front = os.environ.pop(FRONT_REASON_ENV, None)
    if front is not None:  # the native front tried the daemon already (or left the call to us)
        reason = after_failure(front) if front else ""
    if not reason and wanted(argv, os.environ):
        rc, reason = through_daemon(argv, cxx)
        if rc is not None:
            return rc
        after_failure(reason)
    from clang_llm.driver.main import safe_main

    return safe_main(argv, cxx, daemon_reason=reason)


def main_c() -> None:
    sys.exit(main(cxx=False))


def main_cxx() -> None:
    sys.exit(main(cxx=True))
