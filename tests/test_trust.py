"""Trust and the never-fail promise: what a project file may do, whom the clients talk to, what
we write, and a build that never fails for our reasons (a full or read-only state dir, huge
argv, odd bytes, a hanging opt), plus the bounds of `serve`. Each test names the finding it
guards; each runs the real wrapper with the shipped model."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLE_C, run_clang, run_wrapper
from fsfaults import can_mount, fill

from clang_llm.db import Database
from clang_llm.toolchain import ToolTimeout, run

ROOT = Path(__file__).resolve().parent.parent
TOOL = [sys.executable, "-c", "from clang_llm.cli import app; app()"]
NOBODY = 65534
IS_ROOT = os.getuid() == 0


def _reasons(state: Path) -> dict[str, int]:
    db = Database(state)
    try:
        return {f"{k}:{r}": n for k, r, n in db.event_counts()}
    finally:
        db.close()


def _oz(src: Path, out: str = "ref.o", extra: tuple[str, ...] = ()) -> bytes:
    assert run_clang([*extra, "-Oz", "-c", src.name, "-o", out], src.parent).returncode == 0
    return (src.parent / out).read_bytes()


class _Listener:
    """An HTTP server that records every request (path, headers, body) and answers 404."""

    def __init__(self) -> None:
        seen: list[dict[str, str]] = []
        self.seen = seen

        class H(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                seen.append({"path": self.path, "auth": self.headers.get("Authorization", ""),
                             "body": self.rfile.read(n).decode(errors="replace")})
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _any  # noqa: N815

            def log_message(self, *a: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    lst = _Listener()
    yield lst
    lst.close()


# -- finding 1: a project file cannot send anything anywhere -------------------------------------

def test_project_file_cannot_choose_the_backend_or_the_key(state: Path, src: Path, listener: _Listener) -> None:
    (src.parent / ".clang-llm.toml").write_text(
        f'backend = "{listener.url}"\nbackend_key_env = "VERY_SECRET"\nrank = 2\n')
    env = {**os.environ, "VERY_SECRET": "s3cr3t-value"}
    r = run_wrapper(["-c", src.name, "-o", "out.o"], src.parent, env=env)
    assert r.returncode == 0 and r.stderr == b""
    assert listener.seen == []  # not a request: no key, no IR
    assert (src.parent / "out.o").is_file()
    out = " ".join(subprocess.run([*TOOL, "config"], cwd=src.parent, capture_output=True, text=True, env=env,
                                  check=True).stdout.split())
    assert "backend ignored" in out and "backend_key_env ignored" in out
    assert "where data, source or credentials go" in out
    # What a project may set still applies (how hard we try).
    rows = json.loads(subprocess.run([*TOOL, "config", "--json"], cwd=src.parent, capture_output=True, text=True,
                                     env=env, check=True).stdout)
    assert rows["rank"]["value"] == 2 and rows["backend"]["value"] == ""


def test_project_file_is_looked_for_up_to_the_repository_root_only(state: Path, tmp_path: Path) -> None:
    from clang_llm.config import find_project_file

    outer = tmp_path / "outer"
    repo = outer / "repo"
    sub = repo / "src"
    sub.mkdir(parents=True)
    (outer / ".clang-llm.toml").write_text("rank = 3\n")
    assert find_project_file(sub) == (outer / ".clang-llm.toml").resolve()
    (repo / ".git").mkdir()  # the repository root: nothing above it is the project's
    assert find_project_file(sub) is None
    (repo / ".clang-llm.toml").write_text("rank = 3\n")
    assert find_project_file(sub) == (repo / ".clang-llm.toml").resolve()
    (repo / ".clang-llm.toml").chmod(0o666)  # anyone may write it: not the user's
    assert find_project_file(sub) is None


def test_project_file_model_must_be_inside_the_project(state: Path, tmp_path: Path) -> None:
    from clang_llm.config import load_settings

    proj = tmp_path / "p"
    (proj / "models" / "m").mkdir(parents=True)
    (proj / ".clang-llm.toml").write_text('model = "/etc"\n')
    problems: list[str] = []
    s = load_settings(cwd=proj, problems=problems, env={})
    assert s.model == "" and any("model ignored" in p for p in problems)
    (proj / ".clang-llm.toml").write_text('model = "models/m"\n')
    (proj / "sub").mkdir()
    s = load_settings(cwd=proj / "sub", problems=[], env={})
    assert s.model == str((proj / "models" / "m").resolve())


# -- finding 2: the clients talk only to the user's own daemon ---------------------------------------

_FAKE_DAEMON = r'''
import marshal, os, socket, sys
state, log = sys.argv[1], sys.argv[2]
d = os.path.join(state, "daemon")
os.makedirs(d, mode=0o700, exist_ok=True)
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(d, "socket"))
os.chmod(os.path.join(d, "socket"), 0o777)
s.listen(8)
open(os.path.join(state, "ready"), "w").close()
while True:
    c, _ = s.accept()
    data = c.recv(1 << 20)
    with open(log, "ab") as f:
        f.write(data)
    ack = marshal.dumps({"ack": 1}, 0)
    c.sendall(len(ack).to_bytes(4, "big") + ack)
    c.recv(16)
    ex = marshal.dumps({"exec": ["/bin/sh", "-c", "touch " + log + ".pwned"], "env": {}}, 0)
    c.sendall(len(ex).to_bytes(4, "big") + ex)
    c.close()
'''


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="clang-llm-shared-"))
    d.chmod(0o1777)  # a shared dir, as /tmp is
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _start_fake_daemon(state: Path, log: Path, as_nobody: bool = True) -> subprocess.Popen[bytes]:
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    log.touch()
    log.chmod(0o666)
    script = state.parent / "fake_daemon.py"
    script.write_text(_FAKE_DAEMON)
    script.chmod(0o644)
    who = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if as_nobody else []
    proc = subprocess.Popen([*who, SYSTEM_PYTHON, "-S", str(script), str(state), str(log)])
    for _ in range(200):
        if (state / "ready").exists():
            return proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the fake daemon did not start")


@pytest.fixture(scope="module")
def native_front(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The native front built from this tree's front.c (what `front install` installs)."""
    from clang_llm.driver.native import build

    path = tmp_path_factory.mktemp("front") / "clang-llm"
    build(path)
    return path


SYSTEM_PYTHON = "/usr/bin/python3"  # one that uid 65534 may run (the venv's may sit in /root)


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv") or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root (to run a daemon as nobody) and the system's python3")
@pytest.mark.parametrize("which", ["python", "native"])
@pytest.mark.parametrize("case", ["planted", "owner-swapped", "open-dir"])
def test_a_daemon_of_another_user_gets_nothing(shared_dir: Path, tmp_path: Path, which: str, case: str,
                                               native_front: Path) -> None:
    """A socket at the daemon's path served by uid 65534 gets no environment and no stdio, and
    cannot make the client exec anything; the call compiles in-process, counted. With the
    directory and socket chowned to us, only the peer's uid (SO_PEERCRED) tells: still refused.
    And a socket of ours in a directory others may write (where anyone could swap it) is refused
    before any connection, though the process behind it is ours."""
    client = [sys.executable, "-c", "from clang_llm.driver.client import main_c; main_c()"] \
        if which == "python" else [str(native_front)]
    state, log = shared_dir / "state", shared_dir / "received"
    daemon = _start_fake_daemon(state, log, as_nobody=case != "open-dir")
    try:
        if case == "owner-swapped":
            os.chown(state / "daemon", 0, 0)
            os.chown(state / "daemon" / "socket", 0, 0)
        elif case == "open-dir":
            (state / "daemon").chmod(0o777)
        src = tmp_path / "prog.c"
        src.write_text(SAMPLE_C)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLANG_LLM_")}
        env.update(CLANG_LLM_DIR=str(state), CLANG_LLM_API_KEY="key-from-env", XDG_CONFIG_HOME=str(tmp_path / "x"))
        r = subprocess.run([*client, "-c", src.name, "-o", "out.o"], cwd=tmp_path, env=env, capture_output=True)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "out.o").is_file()
        assert log.read_bytes() == b""  # not one byte: no argv, no environment
        assert not Path(str(log) + ".pwned").exists()
        assert _reasons(state).get("daemon:untrusted") == 1
    finally:
        daemon.kill()
        daemon.wait()


_FOREIGN_CLIENT = r'''
import marshal, socket, sys
path, code, cwd = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(path)
msg = marshal.dumps({"protocol": 2, "code": code, "argv": ["-c", "prog.c", "-o", "foreign.o"], "cxx": False,
                     "cwd": cwd, "env": {"PATH": "/usr/bin:/bin"}}, 0)
try:
    s.sendall(len(msg).to_bytes(4, "big") + msg)
    head = s.recv(4)
except (ConnectionResetError, BrokenPipeError):
    head = b""  # refused without a word
print("answered" if head else "closed")
'''


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv") or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root (to connect as nobody) and the system's python3")
def test_the_daemon_serves_only_its_own_user(shared_dir: Path) -> None:
    """The daemon checks its peer's uid (SO_PEERCRED): with the socket opened to everyone, a
    client of uid 65534 is still refused, while one of ours is answered (the control)."""
    from clang_llm.driver.client import code_root

    state, work = shared_dir / "state", shared_dir / "work"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    (work / "prog.c").write_text(SAMPLE_C)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLANG_LLM_")}
    env["CLANG_LLM_DIR"] = str(state)
    client = [sys.executable, "-c", "from clang_llm.driver.client import main_c; main_c()"]
    try:
        assert subprocess.run([*client, "-c", "prog.c", "-o", "first.o"], cwd=work, env=env).returncode == 0
        sock = state / "daemon" / "socket"
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        for d in (state, state / "daemon"):
            d.chmod(0o755)
        sock.chmod(0o777)
        script = shared_dir / "foreign.py"
        script.write_text(_FOREIGN_CLIENT)
        script.chmod(0o644)
        args = [str(script), str(sock), code_root(), str(work)]
        ours = subprocess.run([SYSTEM_PYTHON, "-S", *args], capture_output=True, text=True, timeout=30)
        foreign = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                                  SYSTEM_PYTHON, "-S", *args], capture_output=True, text=True, timeout=30)
        assert ours.stdout.strip() == "answered", (ours.stderr, (state / "clang-llm.log").read_text()[-3000:])
        assert foreign.stdout.strip() == "closed", foreign.stderr
        assert not (work / "foreign.o").exists()
    finally:
        from clang_llm.driver.client import stop_daemon

        stop_daemon(str(state))


# -- finding 3: no URL credential in what we write; private state ---------------------------------------

def test_a_password_in_a_backend_flag_is_never_written(state: Path, src: Path, listener: _Listener) -> None:
    url = listener.url.replace("http://", "http://alice:pw-d0nt-leak@")
    state.mkdir(mode=0o700)
    (state / "clang-llm.log").write_text("")  # an older version's log, readable by everyone
    (state / "clang-llm.log").chmod(0o644)
    r = run_wrapper(["-c", src.name, "-o", "out.o", f"--llm-backend={url}"], src.parent)
    assert r.returncode == 0 and r.stderr == b""
    rec = Database(state).get_record(str((src.parent / "out.o").resolve()))
    assert rec is not None and "pw-d0nt-leak" not in json.dumps(rec.to_json())
    assert rec.llm_flags["backend"] == listener.url
    for p in state.rglob("*"):
        if p.is_file():
            assert b"pw-d0nt-leak" not in p.read_bytes(), p
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "clang-llm.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "clang-llm.log").stat().st_mode) == 0o600


# -- finding 4: a full or read-only state dir -------------------------------------------------------------

def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True,
                   capture_output=True)


needs_mount = pytest.mark.skipif(not can_mount(), reason="needs root and tmpfs mounts")


@pytest.fixture
def small_state(tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "small-state"
    _mount_tmpfs(d, "2m")
    monkeypatch.setenv("CLANG_LLM_DIR", str(d))
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@needs_mount
@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_full_or_read_only_state_dir_never_fails_the_build(small_state: Path, src: Path, fault: str) -> None:
    src.write_text(SAMPLE_C + "\nint unused_warning(void) { int x; return 0; }\n")
    assert run_wrapper(["-c", src.name, "-o", "first.o"], src.parent).returncode == 0  # history to keep
    before = _reasons(small_state)
    assert sum(before.values()) == 1
    if fault == "full":
        fill(small_state)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_state)], check=True)
    for extra in ([], ["-Wall"]):
        r = run_wrapper([*extra, "-c", src.name, "-o", "out.o"], src.parent)
        plain = run_clang([*extra, "-Oz", "-c", src.name, "-o", "ref.o"], src.parent)
        assert r.returncode == 0
        assert r.stderr == plain.stderr  # clang's own warnings, once; nothing of ours
        assert (src.parent / "out.o").read_bytes() == (src.parent / "ref.o").read_bytes()
    names = sorted(p.name for p in small_state.iterdir())
    assert not [n for n in names if "corrupt" in n], names
    if fault == "read-only":
        subprocess.run(["mount", "-o", "remount,rw", str(small_state)], check=True)
    else:
        (small_state / "filler").unlink()
    with sqlite3.connect(small_state / "clang-llm.sqlite") as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    after = _reasons(small_state)
    assert all(after.get(k, 0) >= n for k, n in before.items())  # the history is still there


def test_a_write_error_of_ours_is_not_the_users_compile_error(tmp_path: Path) -> None:
    """Unit check of the rule: clang failing on our work dir (full disk) is ours, not the user's."""
    from clang_llm.driver.pipeline import _ours

    work = tmp_path / "w"
    err = f"error: unable to open output file '{work}/in.bc': 'No space left on device'".encode()
    assert _ours(subprocess.CompletedProcess([], 1, b"", err), work)
    assert not _ours(subprocess.CompletedProcess([], 1, b"", b"prog.c:1:1: error: unknown type name 'x'"), work)


# -- finding 5: huge response files -----------------------------------------------------------------------

@pytest.mark.parametrize("llm_line", ["--llm-rounds=1", "--llm-off"])
def test_a_huge_response_file_with_an_llm_flag_builds(state: Path, src: Path, llm_line: str) -> None:
    rsp = src.parent / "big.rsp"
    with open(rsp, "w") as f:
        for i in range(150_000):
            f.write(f"-DMACRO_NUMBER_{i}=value_{i}\n")
        f.write(llm_line + "\n")
    r = run_wrapper(["-c", src.name, "-o", "out.o", f"@{rsp.name}"], src.parent)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == b""
    assert (src.parent / "out.o").is_file()
    reasons = _reasons(state)
    assert not [k for k in reasons if k.startswith("fallback")], reasons


def test_long_tool_arguments_go_through_a_response_file(tmp_path: Path) -> None:
    from clang_llm.toolchain import ARGS_INLINE_MAX

    src = tmp_path / "x.c"
    src.write_text('int f(void) { return MACRO_7 + sizeof("a\\\\b \\"q\\""); }\n')
    defs = [f"-DMACRO_{i}={i}" for i in range(ARGS_INLINE_MAX // 8)]
    odd = ['-DSTR="with space"', "-DQ=a\\b"]
    r = run(["clang-22", *defs, *odd, "-c", src, "-o", tmp_path / "x.o"], timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
    assert r.args[1].startswith("@")  # it did go through a file


# -- finding 6: paths of any bytes --------------------------------------------------------------------------

def test_a_non_utf8_output_path_is_recorded_and_counted_once(state: Path, src: Path) -> None:
    src.write_text(SAMPLE_C + "\nint g(void) { int x; return x; }\n")  # one warning with -Wall
    out = os.fsdecode(b"out-\xff\xfe.o")
    r = run_wrapper(["-Wall", "-c", src.name, "-o", out], src.parent)
    assert r.returncode == 0
    assert r.stderr.count(b"warning:") == 1  # clang's warning, once (no second compile)
    shipped = (src.parent / out).read_bytes()
    rec = Database(state).get_record(str((src.parent / out).resolve()))
    assert rec is not None  # recorded under a key that the same bytes find again
    from measure import text_and_alloc

    obj = src.parent / out
    assert rec.chosen.sizes is not None and (rec.chosen.sizes.text, rec.chosen.sizes.alloc) == text_and_alloc(obj)
    reasons = _reasons(state)
    assert sum(reasons.values()) == 1 and not [k for k in reasons if k.startswith("fallback")], reasons
    assert shipped


# -- finding 7: a config file of bad bytes never costs the kill switch -------------------------------------

@pytest.mark.parametrize("where", ["project", "user"])
def test_a_non_utf8_config_file_keeps_the_kill_switch_and_the_state_dir(state: Path, src: Path, tmp_path: Path,
                                                                          where: str) -> None:
    bad = b"rounds = 2\n# \xff\xfe not utf-8\n"
    if where == "project":
        (src.parent / ".clang-llm.toml").write_bytes(bad)
    else:
        user = tmp_path / "xdg" / "clang-llm"
        user.mkdir(parents=True)
        (user / "config.toml").write_bytes(bad)
    env = {**os.environ, "CLANG_LLM_DISABLE": "1"}
    r = run_wrapper(["-c", src.name, "-o", "out.o"], src.parent, env=env)
    assert r.returncode == 0
    assert run_clang(["-c", src.name, "-o", "plain.o"], src.parent).returncode == 0
    assert (src.parent / "out.o").read_bytes() == (src.parent / "plain.o").read_bytes()  # untouched clang
    r = run_wrapper(["-c", src.name, "-o", "off.o", "--llm-off"], src.parent)
    assert r.returncode == 0 and r.stderr == b""
    assert (src.parent / "off.o").read_bytes() == _oz(src)
    assert _reasons(state) == {"oz:llm-off": 1}  # counted in CLANG_LLM_DIR


# -- finding 8: a TU-wide time budget; a timed-out tool dies with its children ------------------------------

def test_a_timed_out_tool_dies_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child-alive"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/sh\n(sleep 3; touch {marker}) &\nsleep 30\n")
    script.chmod(0o755)
    with pytest.raises(ToolTimeout):
        run([script], timeout=0.5)
    time.sleep(3.5)
    assert not marker.exists()  # the background child was killed with the script


def test_a_hanging_opt_costs_at_most_the_time_budget(state: Path, src: Path, tmp_path: Path) -> None:
    """The -Oz baseline runs (the first opt in a work dir), every later opt hangs: without a budget
    the 15 candidates cost 15 timeouts; with it the TU ends by 1.5 budgets and ships -Oz."""
    opt = tmp_path / "opt-hangs-after-the-baseline"
    opt.write_text('#!/bin/sh\nout=""; prev=""\nfor a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done\n'
                   'first="$(dirname "$out")/.first"\n'
                   'if [ ! -e "$first" ]; then : > "$first"; exec opt-22 "$@"; fi\n'
                   'sleep 61.25 & \nsleep 62.25\n')
    opt.chmod(0o755)
    env = {**os.environ, "CLANG_LLM_OPT": str(opt), "CLANG_LLM_OPT_TIMEOUT": "3", "CLANG_LLM_TIME_BUDGET_MIN": "4",
           "CLANG_LLM_TIME_BUDGET": "1", "CLANG_LLM_SPECULATE_BYTES": "0"}
    t0 = time.monotonic()
    r = run_wrapper(["-c", src.name, "-o", "out.o"], src.parent, env=env)
    took = time.monotonic() - t0
    assert r.returncode == 0 and r.stderr == b""
    assert (src.parent / "out.o").read_bytes() == _oz(src)
    assert took < 12, took  # 15 candidates x 3 s / 2 jobs would be > 20 s
    time.sleep(1)
    assert subprocess.run(["pgrep", "-f", "sleep 6[12].25"], capture_output=True).stdout == b""


# -- finding 9: serve's bounds -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served_small() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    code = ("import clang_llm.serve as s; s.Handler.timeout = 1.0; s.BoundedThreads.max_connections = 4; "
            "from clang_llm.cli import app; app()")
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    addr = line.split("listening on ", 1)[1].strip()
    yield addr, proc
    proc.terminate()
    proc.wait(timeout=20)


def _conn(addr: str) -> socket.socket:
    host, port = addr.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _post(addr: str, path: str, body: bytes) -> tuple[int, bytes]:
    s = _conn(addr)
    s.settimeout(30)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1]), data


def test_serve_closes_idle_connections_and_bounds_how_many(served_small: tuple[str, subprocess.Popen[str]]) -> None:
    addr, _ = served_small
    idle = _conn(addr)
    t0 = time.monotonic()
    assert idle.recv(10) == b""  # closed by the server after its idle time
    assert time.monotonic() - t0 < 4
    held = [_conn(addr) for _ in range(4)]
    time.sleep(0.2)
    extra = _conn(addr)
    assert extra.recv(100).startswith(b"HTTP/1.1 503")  # at once, not after the idle ones time out
    for s in (*held, extra, idle):
        s.close()


def test_serve_refuses_deep_json_and_long_prompts_before_work(served_small: tuple[str, subprocess.Popen[str]]) -> None:
    addr, proc = served_small
    status, body = _post(addr, "/v1/completions", b"[" * 200_000)
    assert status == 400 and b"nests deeper" in body
    big = json.dumps({"prompt": "x" * (4 << 20), "max_tokens": 4}).encode()
    t0 = time.monotonic()
    status, body = _post(addr, "/v1/completions", big)
    assert status == 400 and b"context length" in body
    assert time.monotonic() - t0 < 2.0  # 4 MB through the tokenizer takes seconds
    status, _ = _post(addr, "/v1/completions", json.dumps({"prompt": "define i32 @f()", "max_tokens": 2}).encode())
    assert status == 200
    assert proc.poll() is None


def test_the_log_never_keeps_a_url_password(tmp_path: Path) -> None:
    """Whatever a message carries (a library's error text naming a URL), the log file gets it
    without the URL's user-info; and a line that cannot be written costs nothing on stderr."""
    code = ("import logging, sys\n"
            "from clang_llm.config import Settings\n"
            "from clang_llm.logs import setup_logging\n"
            f"setup_logging(Settings(dir={str(tmp_path / 'st')!r}))\n"
            "log = logging.getLogger('clang_llm')\n"
            "log.warning('server %s refused', 'http://bob:hunter2-xyz@10.0.0.1:8000/v1')\n"
            "try:\n"
            "    raise OSError('connect to https://bob:hunter2-xyz@h/ failed')\n"
            "except OSError:\n"
            "    log.exception('backend')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = (tmp_path / "st" / "clang-llm.log").read_text()
    assert "10.0.0.1:8000/v1" in text and "https://h/" in text
    assert "hunter2-xyz" not in text and "bob" not in text
