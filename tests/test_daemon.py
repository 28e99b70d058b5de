"""The warm daemon and its thin client, for real: the first call starts it, later calls go
through it, and every way it can fail (killed mid-compile, stale socket, another protocol,
hung) ends with plain clang -Oz's object and a counted reason."""

from __future__ import annotations

import json
import marshal
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_clang
from measure import text_and_alloc

from clang_llm.db import Database
from clang_llm.driver.client import recv_frame, stop_daemon
from clang_llm.driver.daemon import status

PY_CLIENT = [sys.executable, "-c", "from clang_llm.driver.client import main_c; main_c()"]
CLIENT = PY_CLIENT


@pytest.fixture(scope="module")
def native_front(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clang_llm.driver.native import build

    path = tmp_path_factory.mktemp("front") / "clang-llm"
    build(path)
    return path


@pytest.fixture(params=["python", "native"], autouse=True)
def client(request: pytest.FixtureRequest, native_front: Path) -> Iterator[list[str]]:
    """Every test runs with both thin clients: the Python one and the native front (front.c),
    which must behave the same on every path, failures included."""
    global CLIENT
    CLIENT = PY_CLIENT if request.param == "python" else [str(native_front)]
    yield CLIENT
    CLIENT = PY_CLIENT


@pytest.fixture
def dstate(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "state"
    yield d
    info = status(str(d))
    if info:
        stop_daemon(str(d))
        _wait(lambda: status(str(d)) is None, 10)


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLANG_LLM_")}
    env.update({"CLANG_LLM_DIR": str(state), "XDG_CONFIG_HOME": str(state.parent / "xdg"), **extra})
    return env


def _wait(cond: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _compile(src: Path, state: Path, out: str = "out.o", **extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLIENT, "-c", src.name, "-o", out], cwd=src.parent, env=_env(state, **extra),
                          capture_output=True, timeout=120)


def _reference(src: Path) -> bytes:
    assert run_clang(["-Oz", "-c", src.name, "-o", "ref.o"], src.parent).returncode == 0
    return (src.parent / "ref.o").read_bytes()


def _daemon_reasons(state: Path) -> dict[str, int]:
    return {r: n for k, r, n in Database(state).event_counts() if k == "daemon"}


def test_first_call_starts_the_daemon_later_calls_use_it(src: Path, dstate: Path) -> None:
    ref = _reference(src)
    first = _compile(src, dstate, "a.o")
    assert first.returncode == 0 and first.stderr == b""
    assert (src.parent / "a.o").read_bytes() == ref
    assert _daemon_reasons(dstate) == {"not-running": 1}
    assert _wait(lambda: status(str(dstate)) is not None, 20), "the daemon did not come up"
    d = dstate / "daemon"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700 and stat.S_IMODE((d / "socket").stat().st_mode) == 0o600
    for name in ("b.o", "c.o"):
        res = _compile(src, dstate, name)
        assert res.returncode == 0 and res.stderr == b""
        assert (src.parent / name).read_bytes() == ref
    assert _daemon_reasons(dstate) == {"not-running": 1}  # no more fallbacks
    assert Database(dstate).get_record(str((src.parent / "c.o").resolve())) is not None
    # clang's own errors and exit status come through the daemon unchanged
    bad = src.parent / "bad.c"
    bad.write_text("int f( { return }\n")
    want = run_clang(["-c", "bad.c", "-o", "bad.o"], src.parent)
    got = subprocess.run([*CLIENT, "-c", "bad.c", "-o", "bad.o"], cwd=src.parent, env=_env(dstate),
                         capture_output=True, timeout=60)
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
    tool = subprocess.run([sys.executable, "-c", "from clang_llm.cli import app; app()", "daemon", "status",
                           "--json"], env=_env(dstate), capture_output=True, text=True)
    assert tool.returncode == 0 and json.loads(tool.stdout)["pid"] == status(str(dstate))["pid"]  # type: ignore[index]


def test_killed_mid_compile_recompiles_in_process(src: Path, dstate: Path, tmp_path: Path) -> None:
    ref = _reference(src)
    assert _compile(src, dstate, "warm.o").returncode == 0
    assert _wait(lambda: status(str(dstate)) is not None, 20)
    slow = tmp_path / "slow-opt"
    slow.write_text("#!/bin/sh\nsleep 2\nexec opt-22 \"$@\"\n")
    slow.chmod(0o755)
    proc = subprocess.Popen([*CLIENT, "-c", src.name, "-o", "out.o"], cwd=src.parent,
                            env=_env(dstate, CLANG_LLM_OPT=str(slow)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    pgid = status(str(dstate))["pgid"]  # type: ignore[index]
    assert _wait(lambda: b"slow-opt" in subprocess.run(["ps", "-ww", "-g", str(pgid), "-o", "args="],
                                                        capture_output=True).stdout, 20)
    os.killpg(pgid, signal.SIGKILL)  # the daemon and the child compiling, mid-compile
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (src.parent / "out.o").read_bytes() == ref
    assert _daemon_reasons(dstate).get("crashed") == 1
    assert not [p for p in src.parent.iterdir() if "tmp" in p.name]


def test_stale_socket_is_replaced(src: Path, dstate: Path) -> None:
    ref = _reference(src)
    d = dstate / "daemon"
    d.mkdir(parents=True, mode=0o700)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "socket"))
    s.close()  # the file stays, nobody listens: what a daemon killed with -9 leaves
    res = _compile(src, dstate)
    assert res.returncode == 0 and (src.parent / "out.o").read_bytes() == ref
    assert _daemon_reasons(dstate) == {"stale-socket": 1}
    assert _wait(lambda: status(str(dstate)) is not None, 20), "no new daemon on the stale socket"


def _fake_daemon(d: Path, answer: bytes | None) -> tuple[socket.socket, threading.Thread]:
    d.mkdir(parents=True, mode=0o700, exist_ok=True)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(d / "socket"))
    srv.listen(8)
    held: list[socket.socket] = []

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)  # a hung daemon keeps the connection open and says nothing
            recv_frame(conn)  # the whole header: the stdio comes after it, with the next byte
            ack = _frame({"ack": 1})
            if answer is not None and answer.startswith(ack):
                conn.sendall(ack)
                for fd in socket.recv_fds(conn, 1, 8)[1]:  # take the stdio (and let it go), then say the rest
                    os.close(fd)
                conn.sendall(answer[len(ack):])
            elif answer is not None:
                conn.sendall(answer)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return srv, t


def _frame(msg: dict[str, object]) -> bytes:
    data = marshal.dumps(msg, 0)  # the protocol's marshal version
    return len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize(("answer", "reason"), [
    (_frame({"error": "protocol", "protocol": 999, "code": "other"}), "protocol-mismatch"),
    (None, "timeout"),
    (b"garbage\n", "crashed"),
    (_frame({"ack": 1}) + _frame({"exec": "not a list", "env": {}}), "crashed"),
])
def test_wrong_protocol_and_hung_daemon(src: Path, dstate: Path, answer: bytes | None, reason: str) -> None:
    ref = _reference(src)
    srv, _ = _fake_daemon(dstate / "daemon", answer)
    try:
        t0 = time.monotonic()
        res = _compile(src, dstate, CLANG_LLM_DAEMON_TIMEOUT="1")
        assert time.monotonic() - t0 < 30
    finally:
        srv.close()
    assert res.returncode == 0 and res.stderr == b""
    assert (src.parent / "out.o").read_bytes() == ref
    assert _daemon_reasons(dstate) == {reason: 1}


def test_open_state_dir_gets_no_daemon(src: Path, dstate: Path) -> None:
    d = dstate / "daemon"
    d.mkdir(parents=True)
    d.chmod(0o755)
    ref = _reference(src)
    assert _compile(src, dstate).returncode == 0
    assert (src.parent / "out.o").read_bytes() == ref
    time.sleep(1.5)
    assert status(str(dstate)) is None and not (d / "socket").exists()


def test_daemon_off_stays_in_process(src: Path, dstate: Path) -> None:
    assert _compile(src, dstate, CLANG_LLM_DAEMON="0").returncode == 0
    assert _daemon_reasons(dstate) == {}
    time.sleep(0.5)
    assert not (dstate / "daemon" / "socket").exists()


def test_daemon_holds_no_pipe_of_the_first_caller(src: Path, dstate: Path) -> None:
    """configure keeps its stdout on fd 6 too: the daemon started by a probe must not hold it,
    or whoever reads configure's output waits for the daemon's idle exit."""
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([*CLIENT, "-c", src.name, "-o", "out.o"], cwd=src.parent, env=_env(dstate),
                                pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        assert proc.wait(timeout=60) == 0
        assert _wait(lambda: status(str(dstate)) is not None, 20)
        os.set_blocking(r, False)
        assert _wait(lambda: _eof(r), 10), "someone (the daemon) still holds the caller's pipe"
    finally:
        os.close(r)


def _eof(fd: int) -> bool:
    try:
        return os.read(fd, 1) == b""
    except BlockingIOError:
        return False


def test_passthrough_is_handed_back_to_the_client(src: Path, dstate: Path, tmp_path: Path) -> None:
    """A link (no -c) through the daemon: counted there, then run by the client process itself
    (the compiler's pid is the client's), with clang's output and status."""
    assert _compile(src, dstate, "warm.o").returncode == 0
    assert _wait(lambda: status(str(dstate)) is not None, 20)
    fake = tmp_path / "fake-clang"
    fake.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\necho linked; echo warned >&2\nexit 3\n")
    fake.chmod(0o755)
    proc = subprocess.Popen([*CLIENT, src.name, "-o", "prog"], cwd=src.parent,
                            env=_env(dstate, CLANG_LLM_CLANG=str(fake)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out, err) == (3, b"linked\n", b"warned\n")
    assert int((tmp_path / "pid").read_text()) == proc.pid
    events = {(k, r): n for k, r, n in Database(dstate).event_counts()}
    assert events.get(("passthrough", "link")) == 1
    assert _daemon_reasons(dstate) == {"not-running": 1}  # the first call only


def test_front_status_tells_the_native_front_from_the_python_client(native_front: Path, tmp_path: Path) -> None:
    from clang_llm.driver.native import status

    st = status(native_front)
    assert st.native and st.current
    script = tmp_path / "clang-llm"
    script.write_text("#!/usr/bin/python3\nfrom clang_llm.driver.client import main_c\nmain_c()\n")
    assert not status(script).native
    other = tmp_path / "other"
    other.write_bytes(native_front.read_bytes().replace(b"clang-llm-front:/", b"clang-llm-front:#"))
    assert status(other).native and not status(other).current


def test_bytes_that_are_not_utf8_go_through_the_daemon(src: Path, dstate: Path) -> None:
    """A Latin-1 file name and environment value: the native front leaves the call to the Python
    client (which carries any bytes), and nobody takes it for another protocol (that would stop
    the daemon on every call)."""
    assert _compile(src, dstate, "warm.o").returncode == 0
    assert _wait(lambda: status(str(dstate)) is not None, 20)
    pid = status(str(dstate))["pid"]  # type: ignore[index]
    odd = os.fsencode(str(src.parent)) + b"/l\xe9gacy.c"
    Path(os.fsdecode(odd)).write_bytes(src.read_bytes())
    env = {os.fsencode(k): os.fsencode(v) for k, v in _env(dstate).items()}
    env[b"ODD_VALUE"] = b"x\xff"
    for out in (b"a.o", b"b.o"):
        res = subprocess.run([os.fsencode(CLIENT[0]), *[os.fsencode(a) for a in CLIENT[1:]], b"-c", odd, b"-o", out],
                             cwd=src.parent, env=env, capture_output=True, timeout=120)  # type: ignore[arg-type]
        assert res.returncode == 0, res.stderr
    ref = subprocess.run([b"clang-22", b"-Oz", b"-c", odd, b"-o", b"ref.o"], cwd=src.parent, capture_output=True)
    assert ref.returncode == 0
    # The same object both times (in-process and through the daemon), never larger than -Oz's.
    assert (src.parent / "a.o").read_bytes() == (src.parent / "b.o").read_bytes()
    shipped, ref_sizes = text_and_alloc(src.parent / "a.o"), text_and_alloc(src.parent / "ref.o")
    assert shipped[0] <= ref_sizes[0] and shipped[1] <= ref_sizes[1]
    assert _daemon_reasons(dstate) == {"not-running": 1}
    assert status(str(dstate))["pid"] == pid  # type: ignore[index]


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def test_the_model_runtime_loads_in_the_daemon_only_once_a_call_needed_it(src: Path, dstate: Path) -> None:
    """The daemon answers before its imports are done, and imports the model runtime only after a
    call used it: a build with --llm-off never pays for CTranslate2 in the daemon."""
    assert _compile(src, dstate, CLANG_LLM_OFF="1").returncode == 0  # starts it
    assert _wait(lambda: status(str(dstate)) is not None, 20)
    pid = int(status(str(dstate))["pid"])  # type: ignore[index]
    assert _compile(src, dstate, "b.o", CLANG_LLM_OFF="1").returncode == 0
    time.sleep(2.0)  # time enough for every compile-path import
    assert "llvmlite" in _maps(pid) and "ctranslate2" not in _maps(pid)
    done = _compile(src, dstate, "c.o", CLANG_LLM_MODEL="")  # the packaged model
    assert done.returncode == 0, done.stderr
    db = Database(dstate)
    assert [r.model_id for r in db.all_records() if r.object.endswith("c.o")] != ["none"]
    assert _wait(lambda: "ctranslate2" in _maps(pid), 20)


def test_a_keeper_holds_the_database_open_for_the_daemons_life(src: Path, dstate: Path) -> None:
    """While one connection stays open, each call's connect and close skip sqlite's WAL recovery
    and checkpoint; the keeper that holds it goes when the daemon goes."""
    assert _compile(src, dstate).returncode == 0
    assert _wait(lambda: status(str(dstate)) is not None, 20)
    keeper = int(status(str(dstate))["keeper"])  # type: ignore[index]
    db_file = str((dstate / "clang-llm.sqlite").resolve())

    def holds() -> bool:
        try:
            return any(os.readlink(f"/proc/{keeper}/fd/{fd}") == db_file for fd in os.listdir(f"/proc/{keeper}/fd"))
        except OSError:
            return False

    assert _wait(holds, 10)
    assert _compile(src, dstate, "b.o").returncode == 0
    assert Database(dstate).event_counts()  # the calls' own writes landed beside it
    stop_daemon(str(dstate))
    assert _wait(lambda: not Path(f"/proc/{keeper}").exists() or "zombie" in Path(f"/proc/{keeper}/status")
                 .read_text().lower(), 10)
