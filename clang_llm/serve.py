"""`clang-llm-tool serve`: one loaded CTranslate2 model behind an OpenAI-compatible API.

Endpoints: ``GET /v1/models``, ``POST /v1/completions``, ``POST /tokenize`` (vLLM's shape) and
``GET /clang-llm/v1/tokenizer.json`` (so clients build prompts exactly as in-process) and
``GET /clang-llm/v1/stats`` (requests, generate calls, model seconds). Builds on
many machines, or many compiles of one, share the model loaded once.

Who can reach it: a loopback address only (another host needs ``allow_remote``), or a Unix
socket created 0600 inside a directory that only its owner can enter (0700). With
``CLANG_LLM_API_KEY`` in the server's environment every request must carry that bearer token.
The access log names method, path, status and time — never headers, so never a key.

What it bounds: connections served at once (`MAX_CONNECTIONS`; more get 503 at once), idle time
on a connection (`IDLE_S`, per read), the body (`MAX_BODY`), JSON nesting (`MAX_JSON_DEPTH`,
checked before parsing), and a prompt's length in characters against the context before it is
tokenized (a prompt that cannot fit costs no tokenizer time).

Batching: a single thread runs the model. Requests that decode without sampling (temperature 0)
and share their options are batched into one `generate_batch` call (grouped so that each prompt
gets exactly the token limit it would get alone, which keeps answers identical to in-process
ones); sampled requests run one by one, because a seeded sample is reproducible only alone.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import queue
import re
import socket
import socketserver
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from clang_llm.errors import BadRequest, ModelError
from clang_llm.model import Model, load_model
from clang_llm.model.risk import LOSSES_FILE

log = logging.getLogger("clang_llm.serve")
MAX_BODY = 8 << 20
MAX_CONNECTIONS = 32  # served at once (one thread each); a slow client holds one, not the server
IDLE_S = 30.0  # a connection that sends nothing for this long is closed
MAX_JSON_DEPTH = 8  # the deepest legitimate request is {"prompt": [...]}
MAX_TOKENIZE = 4  # /tokenize counts prompts up to this many contexts (clients cut longer ones)
MAX_PROMPTS = 64
MAX_N = 64
KEY_ENV = "CLANG_LLM_API_KEY"
TOKENIZER_PATH = "/clang-llm/v1/tokenizer.json"
STATS_PATH = "/clang-llm/v1/stats"
RANK_PATH = "/clang-llm/v1/rank"  # a cllm-v2 model's ranking of its pool for one prompt
LOSSES_PATH = "/clang-llm/v1/pool-losses.npy"  # its pool's loss table, for the minimum-risk order


@dataclass
class Job:
    prompts: list[str]
    n: int
    temperature: float
    seed: int
    max_tokens: int
    top_k: int
    done: threading.Event = field(default_factory=threading.Event)
    result: list[list[tuple[str, bool]]] | None = None  # per prompt: n (text, cut)
    error: str | None = None


class Batcher:
    """Runs the model on one thread; batches compatible greedy jobs (see the module docstring)."""

    def __init__(self, model: Model, max_batch: int = 8, window_s: float = 0.002) -> None:
        self.model = model
        self.max_batch = max(1, max_batch)
        self.window_s = window_s
        self.q: queue.Queue[Job] = queue.Queue()
        self.calls = 0  # generate calls made
        self.prompts = 0  # prompts answered
        self.seconds = 0.0
        threading.Thread(target=self._loop, daemon=True, name="batcher").start()

    def submit(self, job: Job, timeout: float = 600.0) -> list[list[tuple[str, bool]]]:
        self.q.put(job)
        if not job.done.wait(timeout):
            raise TimeoutError("the model did not answer in time")
        if job.error is not None:
            raise BadRequest(job.error)
        assert job.result is not None
        return job.result

    def _loop(self) -> None:
        while True:
            jobs = [self.q.get()]
            deadline = time.monotonic() + self.window_s
            while sum(len(j.prompts) for j in jobs) < self.max_batch:
                try:
                    jobs.append(self.q.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            groups: dict[tuple[Any, ...], list[Job]] = {}
            for j in jobs:
                key = ("greedy", j.n, self._limit(j), j.top_k) if j.temperature <= 0 else ("sample", id(j))
                groups.setdefault(key, []).append(j)
            for group in groups.values():
                self._run(group)

    def _limit(self, job: Job) -> int:
        """The token limit `Model.generate` gives this job's longest prompt when alone."""
        longest = max(self.model.count_tokens(p) + 1 for p in job.prompts)
        return min(job.max_tokens, self.model.context_length - longest)

    def _run(self, group: list[Job]) -> None:
        j0 = group[0]
        prompts = [p for j in group for p in j.prompts]
        t0 = time.monotonic()
        try:
            limit = min(self._limit(j) for j in group)
            if limit < 1:
                raise ModelError("prompt does not fit the context")
            flat = self.model.generate_detailed(prompts, k=j0.n, seed=j0.seed, temperature=j0.temperature,
                                                max_new_tokens=limit, top_k=j0.top_k)
        except (ModelError, ValueError) as e:
            for j in group:
                j.error = str(e)[:300]
                j.done.set()
            return
        finally:
            self.seconds += time.monotonic() - t0
            self.calls += 1
        self.prompts += len(prompts)
        i = 0
        for j in group:
            j.result = []
            for _ in j.prompts:
                j.result.append(flat[i:i + j.n])
                i += j.n
            j.done.set()


def model_entry(model: Model, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "clang-llm",
            "max_model_len": model.context_length,
            "clang_llm": {"fingerprint": model.id, "context_length": model.context_length,
                          "card": model.card.to_json(), "tokenizer": TOKENIZER_PATH,
                          **({"rank": RANK_PATH} if model.pool else {}),
                          **({"losses": LOSSES_PATH} if model.pool_losses is not None else {})}}


def _int(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = body.get(key, default)
    if v is None:
        v = default
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise BadRequest(f"'{key}' must be an integer in {lo}..{hi}")
    return v


def parse_completion(body: object, model: Model, name: str) -> tuple[Job, bool]:
    """Check a completions request; (the job, whether the prompt was a single string)."""
    if not isinstance(body, dict):
        raise BadRequest("the request must be a JSON object")
    if body.get("model") not in (None, name):
        raise BadRequest(f"model {str(body.get('model'))[:80]!r} is not served here (serving {name!r})")
    prompt = body.get("prompt")
    single = isinstance(prompt, str)
    prompts = [prompt] if single else prompt
    if not isinstance(prompts, list) or not prompts or len(prompts) > MAX_PROMPTS or not all(
            isinstance(p, str) for p in prompts):
        raise BadRequest(f"'prompt' must be a string or a list of 1..{MAX_PROMPTS} strings")
    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if not isinstance(temperature, int | float) or isinstance(temperature, bool) or not 0 <= temperature <= 5:
        raise BadRequest("'temperature' must be a number in 0..5")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("'stop' must be a string or a list of strings")
    for unsupported in ("stream", "echo", "logprobs", "suffix", "best_of"):
        if body.get(unsupported):
            raise BadRequest(f"'{unsupported}' is not supported")
    job = Job(prompts=prompts, n=_int(body, "n", 1, 1, MAX_N), temperature=float(temperature),
              seed=_int(body, "seed", 0, -(2**63), 2**63 - 1), top_k=_int(body, "top_k", 50, 1, 1000),
              max_tokens=_int(body, "max_tokens", 16, 1, model.context_length))
    for p in prompts:
        _check_prompt_length(p, model)
    return job, single


def _check_prompt_length(prompt: str, model: Model) -> None:
    """A prompt must fit the context; one that cannot (by its length alone) is not tokenized."""
    n = model.context_length
    if not model.fits_untokenized(prompt, n) or model.count_tokens(prompt) + 1 >= n:
        raise BadRequest(f"prompt longer than the maximum context length of {model.context_length} tokens")


_JSON_STRING = re.compile(rb'"(?:[^"\\]+|\\.)*"')


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data` (strings skipped), found without
    parsing: a body of 200,000 `[` must not reach the parser's recursion."""
    depth = top = 0
    for c in _JSON_STRING.sub(b"", data).translate(None, delete=_NOT_BRACKETS):
        depth += 1 if c in b"[{" else -1
        top = max(top, depth)
    return top


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _cut_at_stop(text: str, stop: object) -> tuple[str, bool]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    hits = [text.index(s) for s in stops if s and s in text]
    return (text[:min(hits)], True) if hits else (text, False)


class Service:
    """The HTTP side: routing, checks, the key, the log; the model work is the Batcher's."""

    def __init__(self, model: Model, name: str, max_batch: int, key: str = "") -> None:
        self.model = model
        self.name = name
        self.key = key
        self.batcher = Batcher(model, max_batch=max_batch)
        self.requests = 0
        self.tokenizer_bytes = (model.path / "tokenizer.json").read_bytes()
        self.losses_bytes = (model.path / LOSSES_FILE).read_bytes() if model.pool_losses is not None else b""

    def authorized(self, header: str | None) -> bool:
        if not self.key:
            return True
        return hmac.compare_digest((header or "").encode(), f"Bearer {self.key}".encode())

    def handle(self, method: str, path: str, body: object) -> tuple[int, dict[str, Any] | bytes]:
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [model_entry(self.model, self.name)]}
        if method == "GET" and path == TOKENIZER_PATH:
            return 200, self.tokenizer_bytes
        if method == "GET" and path == LOSSES_PATH and self.losses_bytes:
            return 200, self.losses_bytes
        if method == "GET" and path == STATS_PATH:
            b = self.batcher
            return 200, {"requests": self.requests, "generate_calls": b.calls, "prompts": b.prompts,
                         "model_s": round(b.seconds, 4), "max_batch": b.max_batch}
        if method == "POST" and path == "/tokenize":
            if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
                raise BadRequest("'prompt' must be a string")
            if not self.model.fits_untokenized(body["prompt"], MAX_TOKENIZE * self.model.context_length):
                raise BadRequest(f"prompt longer than {MAX_TOKENIZE} contexts: not tokenized")
            ids = self.model.tokenize_ids(body["prompt"])
            return 200, {"count": len(ids), "max_model_len": self.model.context_length, "tokens": ids}
        if method == "POST" and path == "/v1/completions":
            return 200, self.complete(body)
        if method == "POST" and path == RANK_PATH and self.model.pool:
            if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
                raise BadRequest("'prompt' must be a string")
            _check_prompt_length(body["prompt"], self.model)
            self.requests += 1
            scores = self.model.rank_pool(body["prompt"])  # serialized with generation by the model's lock
            return 200, {"model": self.name, "system_fingerprint": self.model.id, "scores": scores}
        return 404, {"error": {"message": f"no route {method} {path[:100]}", "type": "not_found"}}

    def complete(self, body: object) -> dict[str, Any]:
        job, _ = parse_completion(body, self.model, self.name)
        self.requests += 1
        results = self.batcher.submit(job)
        stop = body.get("stop") if isinstance(body, dict) else None
        choices, completion_tokens = [], 0
        for answers in results:
            for text, cut in answers:
                text, stopped = _cut_at_stop(text, stop)
                completion_tokens += self.model.count_tokens(text)
                choices.append({"index": len(choices), "text": text, "logprobs": None,
                                "finish_reason": "length" if cut and not stopped else "stop"})
        prompt_tokens = sum(self.model.count_tokens(p) + 1 for p in job.prompts)
        return {"id": f"cmpl-{os.getpid()}-{self.requests}", "object": "text_completion", "created": int(time.time()),
                "model": self.name, "system_fingerprint": self.model.id, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}


class Handler(BaseHTTPRequestHandler):
    server_version = "clang-llm-serve"
    protocol_version = "HTTP/1.1"
    timeout = IDLE_S  # StreamRequestHandler sets it on the socket: an idle connection is closed
    service: Service

    def address_string(self) -> str:  # Unix sockets have no peer address
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: dict[str, Any] | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if isinstance(payload, bytes)
                         else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind}})

    def _dispatch(self, method: str) -> None:
        svc = self.service
        if not svc.authorized(self.headers.get("Authorization")):
            self._error(401, "missing or wrong API key", "authentication_error")
            return
        body: object = None
        if method == "POST":
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._error(411, "Content-Length required")
                return
            if not 0 <= length <= MAX_BODY:
                self._error(413, f"request body over {MAX_BODY} bytes")
                self.close_connection = True
                return
            raw = self.rfile.read(length)
            if json_depth(raw) > MAX_JSON_DEPTH:
                self._error(400, f"the request nests deeper than {MAX_JSON_DEPTH}")
                return
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                self._error(400, "the request body is not JSON")
                return
        try:
            status, payload = svc.handle(method, self.path.split("?", 1)[0], body)
        except BadRequest as e:
            self._error(400, str(e))
            return
        except TimeoutError as e:
            self._error(503, str(e), "timeout")
            return
        except Exception as e:  # a bug must answer 500, not drop the connection
            log.exception("request failed")
            self._error(500, f"internal error ({type(e).__name__})", "server_error")
            return
        self._send(status, payload)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")


class BoundedThreads(socketserver.ThreadingMixIn):
    """One thread per connection, at most `MAX_CONNECTIONS` at once: one more is answered 503
    and closed at once, so slow or idle clients cannot take every thread."""

    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if not hasattr(self, "_slots"):
            self._slots = threading.BoundedSemaphore(self.max_connections)
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\nRetry-After: 1\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self._slots.release()


class UnixHTTPServer(BoundedThreads, socketserver.UnixStreamServer):
    pass


class TCPHTTPServer(BoundedThreads, HTTPServer):
    pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def private_socket_path(path: Path) -> Path:
    """Check (or make) the socket's directory 0700 and owned by us; remove a stale socket."""
    parent = path.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = parent.stat()
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(f"{parent}: the socket's directory must be ours and 0700 (it is "
                              f"{stat.S_IMODE(st.st_mode):o})")
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody listens
        else:
            raise FileExistsError(f"{path}: a server is already listening there")
        finally:
            probe.close()
    return path


def make_server(model_dir: Path, host: str = "127.0.0.1", port: int = 8311, socket_path: Path | None = None,
                name: str = "", max_batch: int = 8, threads: int | None = None,
                allow_remote: bool = False) -> tuple[socketserver.BaseServer, Service, str]:
    """The server (not yet serving), its service and the address clients use."""
    model = load_model(model_dir, intra_threads=threads)
    svc = Service(model, name or model.card.name or model_dir.name, max_batch, os.environ.get(KEY_ENV, ""))
    handler = type("BoundHandler", (Handler,), {"service": svc})
    if socket_path is not None:
        path = private_socket_path(Path(socket_path))
        old = os.umask(0o177)
        try:
            server: socketserver.BaseServer = UnixHTTPServer(str(path), handler)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        return server, svc, f"unix:{path}"
    if not allow_remote and not is_loopback(host):
        raise PermissionError(f"{host} is not a loopback address (pass --allow-remote to listen on it)")
    server = TCPHTTPServer((host, port), handler)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    return server, svc, f"http://{shown}:{bound_port}"


def serve_forever(server: socketserver.BaseServer, address: str, svc: Service) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    print(f"clang-llm serve: model {svc.name} ({svc.model.id}) listening on {address}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if address.startswith("unix:"):
            Path(address.removeprefix("unix:")).unlink(missing_ok=True)
