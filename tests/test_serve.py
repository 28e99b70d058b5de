"""`clang-llm-tool serve` for real: the packaged model over HTTP (TCP and a Unix socket) gives
the same objects as in-process; it listens only where its owner can reach it and checks what
it is sent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import SAMPLE_CXX, run_wrapper

from clang_llm.db import Database
from clang_llm.optimizer.factory import default_model_dir

TOOL = [sys.executable, "-c", "from clang_llm.cli import app; app()"]


class Served:
    def __init__(self, proc: subprocess.Popen[str], address: str) -> None:
        self.proc, self.address = proc, address

    def client(self, **kw: object) -> httpx.Client:
        if self.address.startswith("unix:"):
            return httpx.Client(base_url="http://localhost", transport=httpx.HTTPTransport(
                uds=self.address.removeprefix("unix:")), **kw)  # type: ignore[arg-type]
        return httpx.Client(base_url=self.address, **kw)  # type: ignore[arg-type]


def _start(args: list[str], env: dict[str, str] | None = None) -> Iterator[Served]:
    proc = subprocess.Popen([*TOOL, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        pytest.fail(f"serve did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    try:
        yield Served(proc, m.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    yield from _start(["--port", "0"])


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLANG_LLM_")}
    env.update({"CLANG_LLM_DIR": str(state), "XDG_CONFIG_HOME": str(state / "xdg"), **extra})
    return env


@pytest.mark.parametrize("lang", ["c", "c++"])
def test_remote_objects_identical_to_in_process(served: Served, src: Path, tmp_path: Path, lang: str) -> None:
    source = src
    if lang == "c++":
        source = tmp_path / "shapes.cc"
        source.write_text(SAMPLE_CXX)
    flags = ["--llm-samples=3", "-c", source.name]
    local = run_wrapper([*flags, "-o", "local.o", f"--llm-model={default_model_dir()}"], source.parent,
                        cxx=lang == "c++", env=_env(tmp_path / "s-local"))
    remote = run_wrapper([*flags, "-o", "remote.o", f"--llm-backend={served.address}"], source.parent,
                         cxx=lang == "c++", env=_env(tmp_path / "s-remote"))
    assert local.returncode == remote.returncode == 0, (local.stderr, remote.stderr)
    assert (source.parent / "local.o").read_bytes() == (source.parent / "remote.o").read_bytes()
    lrec = Database(tmp_path / "s-local").all_records()[0]
    rrec = Database(tmp_path / "s-remote").all_records()[0]
    answers = [[c.answer for c in r.candidates] for r in lrec.rounds]
    assert answers == [[c.answer for c in r.candidates] for r in rrec.rounds]
    assert rrec.remote_calls >= 2 and lrec.remote_calls == 0  # greedy, then samples
    # the default model ranks its pool on the server too (POST /clang-llm/v1/rank)
    assert any(c.answer.startswith("<|L") for r in rrec.rounds for c in r.candidates)
    assert rrec.model_id.startswith("http-") and rrec.model_id != lrec.model_id


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/"])
def test_a_base_url_with_v1_is_the_same_server(served: Served, winner: Path, tmp_path: Path, suffix: str) -> None:
    """`--llm-backend=http://host:port/v1` (how vLLM and OpenAI clients write a base URL) reaches
    the same server as the bare URL: same requests, the same object -- one the model wins."""
    plain = run_wrapper(["-c", winner.name, "-o", "plain.o", f"--llm-backend={served.address}"], winner.parent,
                        env=_env(tmp_path / "s-plain"))
    v1 = run_wrapper(["-c", winner.name, "-o", "v1.o", f"--llm-backend={served.address}{suffix}"], winner.parent,
                     env=_env(tmp_path / "s-v1"))
    assert plain.returncode == v1.returncode == 0
    assert (winner.parent / "plain.o").read_bytes() == (winner.parent / "v1.o").read_bytes()
    rec = Database(tmp_path / "s-v1").all_records()[0]
    assert rec.remote_calls >= 1 and rec.optimized and rec.reason == "beats-oz"


def test_models_tokenize_and_bad_requests(served: Served) -> None:
    with served.client() as c:
        models = c.get("/v1/models").json()["data"]
        name = models[0]["id"]
        assert models[0]["max_model_len"] > 0 and models[0]["clang_llm"]["fingerprint"]
        # the pool's loss table is shared byte for byte, so remote tries are ordered as local ones
        losses = c.get(models[0]["clang_llm"]["losses"])
        assert losses.status_code == 200 and losses.content == (default_model_dir() / "pool-losses.npy").read_bytes()
        assert c.post("/tokenize", json={"prompt": "define i32 @f()"}).json()["count"] > 0
        good = c.post("/v1/completions", json={"model": name, "prompt": "x", "max_tokens": 4, "temperature": 0})
        assert good.status_code == 200 and len(good.json()["choices"]) == 1
        bad = [
            {"prompt": 5}, {"prompt": []}, {"prompt": "x", "n": 0}, {"prompt": "x", "n": 1000},
            {"prompt": "x", "max_tokens": 10**9}, {"prompt": "x", "temperature": "hot"},
            {"prompt": "x", "model": "another"}, {"prompt": "x", "stream": True}, {"prompt": "x " * 5000},
        ]
        for body in bad:
            r = c.post("/v1/completions", json=body)
            assert r.status_code == 400, body
            assert r.json()["error"]["message"]
        assert c.post("/v1/completions", content=b"{not json").status_code == 400
        assert c.get("/v1/nothing").status_code == 404


def test_concurrent_greedy_requests_are_batched_and_unchanged(served: Served) -> None:
    prompts = [f"<|prompt|> cllm-v1 size\ndefine i32 @f{i}(i32 %x) {{\n  ret i32 %x\n}}\n<|answer|>\n"
               for i in range(6)]
    with served.client(timeout=60) as c:
        alone = [c.post("/v1/completions", json={"prompt": p, "max_tokens": 24, "temperature": 0}).json()
                 ["choices"][0]["text"] for p in prompts]
        before = c.get("/clang-llm/v1/stats").json()
        together: list[str | None] = [None] * len(prompts)

        def ask(i: int) -> None:
            with served.client(timeout=60) as ci:
                r = ci.post("/v1/completions", json={"prompt": prompts[i], "max_tokens": 24, "temperature": 0})
                together[i] = r.json()["choices"][0]["text"]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = c.get("/clang-llm/v1/stats").json()
    assert together == alone
    assert after["requests"] - before["requests"] == len(prompts)
    assert after["prompts"] - before["prompts"] == len(prompts)
    assert after["generate_calls"] - before["generate_calls"] < len(prompts)  # some shared a batch


def test_unix_socket_is_private(tmp_path: Path, src: Path) -> None:
    d = tmp_path / "sock"
    d.mkdir(mode=0o700)
    sock = d / "model.sock"
    for served in _start(["--socket", str(sock)]):
        assert (sock.stat().st_mode & 0o777) == 0o600
        res = run_wrapper(["-c", src.name, "-o", "out.o", f"--llm-backend=unix:{sock}"], src.parent,
                          env=_env(tmp_path / "state"))
        assert res.returncode == 0, res.stderr
        rec = Database(tmp_path / "state").all_records()[0]
        assert rec.remote_calls >= 1, rec.reason
        assert served.proc.poll() is None


def test_refuses_open_directories_and_remote_addresses(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o755)
    for args in (["--socket", str(d / "m.sock")], ["--host", "0.0.0.0", "--port", "0"]):
        done = subprocess.run([*TOOL, "serve", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert "0700" in done.stdout or "loopback" in done.stdout, done.stdout


def test_api_key_is_required_and_never_logged(tmp_path: Path, src: Path) -> None:
    key = "sk-serve-only-9a8b7c"
    env = {**os.environ, "CLANG_LLM_API_KEY": key}
    for served in _start(["--port", "0"], env=env):
        with served.client() as c:
            assert c.get("/v1/models").status_code == 401
            assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        # One written list besides the ranking: both authenticated endpoints are called.
        res = run_wrapper(["-c", src.name, "-o", "out.o", f"--llm-backend={served.address}", "--llm-samples=1"],
                          src.parent, env=_env(tmp_path / "state", CLANG_LLM_API_KEY=key))
        assert res.returncode == 0
        assert Database(tmp_path / "state").all_records()[0].remote_calls >= 1
        served.proc.terminate()
        _, err = served.proc.communicate(timeout=20)
        assert "401" in err and "/v1/completions" in err and "/clang-llm/v1/rank" in err and key not in err
