"""The warm daemon behind the thin client, sccache's way: one per user and state dir.

A single-threaded parent listens on ``<state>/daemon/socket`` (0600, in a 0700 directory that
must be ours) as soon as it starts, and imports the compile path's modules one by one while no
call waits (the model runtime only once a call needed it), so that forked children find them
warm. Each call gets a forked child: it
takes the client's stdin/stdout/stderr (passed as file descriptors), working directory and
environment, runs the same `safe_main` as an in-process call, and answers with the exit status.
A fork per call keeps calls apart (cwd, environment, signals, crashes) at the price of one fork.

One daemon per state dir (an exclusive lock); it replaces a stale socket; it exits after
`CLANG_LLM_DAEMON_IDLE` seconds (default 600) with no call, on SIGTERM (`clang-llm-tool daemon
stop`), or when its directory disappears. A client whose protocol or code differs gets a
``protocol`` error and runs in-process; it then stops this daemon so the next call starts one
that runs the current code.
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import time
from pathlib import Path
from typing import Any

from clang_llm.build.jobslots import FDS_ENV
from clang_llm.driver.client import PROTOCOL, code_id, code_root, daemon_dir, recv_frame, send_frame

DEFAULT_IDLE_S = 600.0
MAX_CHILDREN = 64  # calls in flight; more wait in the listen backlog


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(f"{path} must be a directory of ours with mode 0700")


def _peer_is_us(conn: socket.socket) -> bool:
    """The socket's mode already keeps others out; the peer's credentials say so again."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid == os.getuid()


def _handoff(conn: socket.socket, argv: list[str]) -> bool:
    """Tell the client to exec `argv` itself, with the environment this call would give it."""
    env = {k: v for k, v in os.environ.items() if k != FDS_ENV}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        send_frame(conn, {"exec": argv, "env": env})
    except OSError:
        return False
    return True


def handle(conn: socket.socket, code: str) -> int:
    """One call, in the forked child. Returns the status the child exits with."""
    conn.settimeout(30)
    if not _peer_is_us(conn):
        return 2
    header = recv_frame(conn)
    argv = header.get("argv") if header else None
    cwd = header.get("cwd") if header else None
    env = header.get("env") if header else None
    if header is None or header.get("protocol") != PROTOCOL or header.get("code") != code_root() \
            or code_id() != code or not (
            isinstance(argv, list) and all(isinstance(a, str) for a in argv) and isinstance(cwd, str)
            and isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        send_frame(conn, {"error": "protocol", "protocol": PROTOCOL, "code": code})
        return 0
    send_frame(conn, {"ack": os.getpid()})
    _, fds, _, _ = socket.recv_fds(conn, 1, 8)
    try:
        if len(fds) < 3:
            return 2
        conn.settimeout(None)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        if len(fds) >= 5:  # the client's jobserver pipe, under our own fd numbers
            os.environ[FDS_ENV] = f"{fds[3]},{fds[4]}"
        from clang_llm.driver import main

        main.handoff = lambda cmd: _handoff(conn, cmd)
        rc = main.safe_main(argv, bool(header.get("cxx")))
        if main.handed_off:
            return 0  # the client runs the command; it has its answer
        sys.stdout.flush()
        sys.stderr.flush()
        send_frame(conn, {"rc": rc})
        return 0
    finally:
        for fd in fds:
            os.close(fd)


# What the parent imports, one module per step between calls, so that the socket answers from
# the start: a cold build's first calls would otherwise each run in-process, a Python start and
# all these imports apiece (~0.2 s), while a daemon that imports everything first (~0.6 s) is
# not yet there to take them.
COMPILE_PATH = (
    "clang_llm.driver.main", "clang_llm.db", "clang_llm.records", "elftools.elf.elffile", "clang_llm.objsize",
    "clang_llm.build.speculative", "clang_llm.ir", "clang_llm.build.tubuilder", "clang_llm.driver.pipeline",
    "clang_llm.optimizer.factory", "clang_llm.optimizer.loop",
)
# Imported once a child has needed them (it says so on a pipe): a build with `--llm-off` never
# pays for the model runtime (~0.1 s) or the server client (~0.25 s).
ON_DEMAND = ("ctranslate2", "tokenizers", "clang_llm.model.ct2", "httpx", "clang_llm.model.http")


class Preloads:
    """The parent's import queue: the compile path first, then what the children asked for."""

    def __init__(self) -> None:
        self.todo = list(COMPILE_PATH)
        self.asked: set[str] = set(COMPILE_PATH)

    def want(self, names: list[str]) -> None:
        for name in names:
            if name in ON_DEMAND and name not in self.asked:
                self.asked.add(name)
                self.todo.append(name)

    def step(self) -> None:
        """Import the next module; once the queue is empty, freeze what is loaded (it stays out
        of the children's collections: fewer pages copied)."""
        name = self.todo.pop(0)
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # an extra that is not installed: the child reports its own failure
        if not self.todo:
            gc.freeze()


def _keep_database_open(state: str) -> tuple[int, int] | None:
    """Fork a process that holds the state dir's database open until the daemon exits (the read
    end of a pipe it waits on closes): while any connection is open, a call's own connect skips
    sqlite's WAL recovery and its close skips the checkpoint (~15 ms a call together). A process
    of its own, because a connection must not be carried across the fork of every call."""
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid:
        os.close(r)
        return pid, w
    code = 0
    try:
        os.closerange(3, r)  # the socket, the daemon's lock, the pipe's write end: not ours to hold
        os.closerange(r + 1, 1 << 16)
        from clang_llm.db import Database

        db = Database(Path(state))
        db.safe("open", db.touch)  # creates it if need be (WAL, schema), then stays idle
        os.read(r, 1)  # returns at EOF: the daemon has exited
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def report_imports(fd: int, had: set[str]) -> None:
    """In a child, before it exits: which on-demand modules it had to import itself (`had`: those
    it was forked with; a call that needed nothing new writes nothing)."""
    names = [n for n in ON_DEMAND if n in sys.modules and n not in had]
    if names:
        try:
            os.write(fd, ("\n".join(names) + "\n").encode())  # < PIPE_BUF: one atomic write
        except OSError:
            pass


class Daemon:
    def __init__(self, state: str, idle_s: float) -> None:
        self.state = state
        self.dir = Path(daemon_dir(state))
        self.idle_s = idle_s
        self.children: set[int] = set()
        self.stopping = False
        self.last = time.monotonic()
        self.code = code_id()

    def _listen(self) -> socket.socket:
        path = self.dir / "socket"
        tmp = self.dir / f".socket.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(tmp))
        finally:
            os.umask(old)
        os.chmod(tmp, 0o600)
        sock.listen(128)
        os.replace(tmp, path)  # atomically: clients never see a socket that does not answer yet
        return sock

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.discard(pid)
                self.last = time.monotonic()

    def run(self) -> int:
        _private_dir(self.dir)
        lock = open(self.dir / "lock", "a")  # noqa: SIM115 (held for the daemon's life)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another daemon serves this state dir
        sock = self._listen()
        kept = _keep_database_open(self.state)
        keeper = None if kept is None else kept[1]
        status = {"pid": os.getpid(), "pgid": os.getpgid(0), "started": time.time(), "protocol": PROTOCOL,
                  "code": self.code, "python": sys.executable, "keeper": None if kept is None else kept[0]}
        (self.dir / "status.json").write_text(json.dumps(status))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        preloads = Preloads()
        wants_r, wants_w = os.pipe()  # children name the modules they had to import
        os.set_blocking(wants_r, False)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        sel.register(wants_r, selectors.EVENT_READ)
        try:
            while not self.stopping:
                self._reap()
                if not self.children and time.monotonic() - self.last > self.idle_s:
                    break
                if not (self.dir / "socket").exists():
                    break  # removed (or the state dir was): nobody can reach us any more
                if len(self.children) >= MAX_CHILDREN:
                    time.sleep(0.01)
                    continue
                ready = {key.fileobj for key, _ in sel.select(timeout=0 if preloads.todo else 0.5)}
                if wants_r in ready:
                    try:
                        preloads.want(os.read(wants_r, 65536).decode(errors="replace").split())
                    except OSError:
                        pass
                if sock not in ready:
                    if preloads.todo:
                        preloads.step()  # nobody waiting: the next import
                    continue
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                self.last = time.monotonic()
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    sock.close()
                    os.close(wants_r)
                    if keeper is not None:
                        os.close(keeper)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    code = 1
                    had = {n for n in ON_DEMAND if n in sys.modules}
                    try:
                        code = handle(conn, self.code)
                    except BaseException:
                        code = 1
                    finally:
                        report_imports(wants_w, had)
                        os._exit(code)
                conn.close()
                self.children.add(pid)
        finally:
            sel.close()
            sock.close()
            os.close(wants_r)
            os.close(wants_w)
            if keeper is not None:
                os.close(keeper)
            try:
                if json.loads((self.dir / "status.json").read_text()).get("pid") == os.getpid():
                    (self.dir / "socket").unlink(missing_ok=True)
                    (self.dir / "status.json").unlink(missing_ok=True)
            except (OSError, ValueError):
                pass
        return 0


def status(state: str) -> dict[str, Any] | None:
    """The running daemon's status (pid, code, …), or None when none answers."""
    d = Path(daemon_dir(state))
    try:
        info = json.loads((d / "status.json").read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(str(d / "socket"))
    except OSError:
        return None
    finally:
        probe.close()
    return info


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m clang_llm.driver.daemon STATE_DIR", file=sys.stderr)
        return 2
    try:
        idle = float(os.environ.get("CLANG_LLM_DAEMON_IDLE", DEFAULT_IDLE_S))
    except ValueError:
        idle = DEFAULT_IDLE_S
    return Daemon(argv[0], idle).run()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
