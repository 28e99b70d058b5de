"""The HTTP model backend against a real server the test controls: every way a server can fail
ends with plain clang -Oz's object, a counted reason, no traceback, and no secret anywhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import run_clang, run_wrapper, wrapper_cmd
from fake_openai import FakeModelServer
from measure import text_and_alloc

from clang_llm.db import Database

SECRET = "sk-test-5ecret-0f-the-build"
PASSWORD = "pw-in-the-url-77"


def _reference(src: Path) -> bytes:
    assert run_clang(["-Oz", "-c", src.name, "-o", "ref.o"], src.parent).returncode == 0
    return (src.parent / "ref.o").read_bytes()


def _env(state: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLANG_LLM_")}
    env.update({"CLANG_LLM_DIR": str(state), "CLANG_LLM_BACKEND": url, "CLANG_LLM_API_KEY": SECRET,
                "CLANG_LLM_BACKEND_TIMEOUT": "1.5", **extra})
    return env


def _reasons(state: Path) -> dict[str, int]:
    return {f"{k}:{r}": n for k, r, n in Database(state).event_counts()}


def _no_secret_anywhere(state: Path, *texts: bytes) -> None:
    """Neither the key nor the URL's password is in the log, the database or any output."""
    blobs = [p.read_bytes() for p in state.rglob("*") if p.is_file()] + list(texts)
    for blob in blobs:
        assert SECRET.encode() not in blob
        assert PASSWORD.encode() not in blob


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("mode", "reason"), [
    ("down", "oz:backend-refused"),
    ("slow", "oz:backend-timeout"),
    ("http500", "oz:backend-http-500"),
    ("garbage", "oz:backend-bad-json"),
    ("cut", "oz:backend-truncated"),
    ("model-changed", "oz:backend-model-changed"),
    ("no-models", "oz:backend-bad-json"),
    ("wrong-count", "oz:backend-bad-json"),
])
def test_server_faults_ship_plain_oz_with_a_counted_reason(state: Path, src: Path, mode: str, reason: str) -> None:
    ref = _reference(src)
    server = FakeModelServer("good" if mode in ("down", "slow") else mode, delay=4.0 if mode == "slow" else 0.0)
    with server:
        url = f"http://127.0.0.1:{_free_port()}" if mode == "down" else server.url
        res = run_wrapper(["-c", src.name, "-o", "out.o"], src.parent, env=_env(state, url))
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"" and res.stderr == b""  # nothing on the terminal, no traceback
    assert (src.parent / "out.o").read_bytes() == ref
    assert _reasons(state) == {reason: 1}
    log = (state / "clang-llm.log").read_text()
    assert "Traceback" not in log and reason.split(":")[1].replace("backend-", "backend ") in log
    if mode not in ("down",):
        assert server.auth_headers and all(h == f"Bearer {SECRET}" for h in server.auth_headers)
    _no_secret_anywhere(state, res.stdout, res.stderr)
    rec = Database(state).get_record(str((src.parent / "out.o").resolve()))
    assert rec is not None and rec.reason == reason.split(":")[1] and rec.chosen.pass_list == "Oz"


@pytest.mark.parametrize("url_as", ["env", "flag"])
def test_a_good_server_answer_is_validated_like_the_local_model(state: Path, src: Path, url_as: str) -> None:
    """The server's list (mem2reg, which beats -Oz on this source) is run and measured here, and
    the object that ships is the one measured; the URL's password, from the environment or a
    flag, goes out as basic auth and never into a record, the log or the output."""
    ref = _reference(src)
    with FakeModelServer("good") as server:
        netloc = server.url.removeprefix("http://")
        url = f"http://builder:{PASSWORD}@{netloc}"  # credentials in the URL go out, never in records
        env = _env(state, url)
        flags = []
        if url_as == "flag":
            env.pop("CLANG_LLM_BACKEND")
            flags = [f"--llm-backend={url}"]
        res = run_wrapper(["-c", src.name, "-o", "out.o", *flags], src.parent, env=env)
    assert res.returncode == 0, res.stderr
    rec = Database(state).get_record(str((src.parent / "out.o").resolve()))
    assert rec is not None
    assert rec.remote_calls >= 1 and rec.backend == server.url
    listed = [c.pass_list for r in rec.rounds for c in r.candidates]
    assert listed and set(listed) == {"mem2reg"}  # the server's answer, opt-checked here
    assert rec.chosen.pass_list == "mem2reg" and rec.reason == "beats-oz"
    out = src.parent / "out.o"
    assert out.read_bytes() != ref
    assert text_and_alloc(out) == (rec.chosen.sizes.text, rec.chosen.sizes.alloc)  # what shipped was measured
    (src.parent / "ref.o").write_bytes(ref)
    assert text_and_alloc(out)[0] < text_and_alloc(src.parent / "ref.o")[0]
    assert any(h.startswith("Basic ") for h in server.auth_headers)  # user-info became basic auth
    _no_secret_anywhere(state, res.stdout, res.stderr)
    stats = subprocess.run([*wrapper_cmd()[:2], "from clang_llm.cli import app; app()", "stats", "--json"],
                           env=env, capture_output=True, check=True)
    data = json.loads(stats.stdout)
    assert data["sizes"]["remote_calls"] == rec.remote_calls
    _no_secret_anywhere(state, stats.stdout)


def test_requests_per_machine_are_bounded(state: Path, src: Path) -> None:
    """Four compiles at once, one slot: the server never sees two requests in flight."""
    with FakeModelServer("good", delay=0.4) as server:
        env = _env(state, server.url, CLANG_LLM_BACKEND_CONCURRENCY="1", CLANG_LLM_BACKEND_TIMEOUT="30")
        procs = [subprocess.Popen([*wrapper_cmd(), "-c", src.name, "-o", f"out{i}.o"], cwd=src.parent, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
        codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0, 0, 0, 0]
    assert server.completions >= 4
    assert server.max_inflight == 1
