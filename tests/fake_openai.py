"""A real HTTP server the tests control, speaking just enough of the OpenAI completions API to
play a model server that misbehaves in one chosen way."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A list that beats -Oz on the tests' SAMPLE_C for sure (mem2reg alone keeps its loops small).
GOOD_ANSWER = "passes: mem2reg\ncount_before: 10\ncount_after: 9\nir:\n"


class FakeModelServer:
    """Modes: good, slow, http500, garbage, cut, model-changed, no-models, wrong-count."""

    def __init__(self, mode: str = "good", delay: float = 0.0, name: str = "fake-model") -> None:
        self.mode = mode
        self.delay = delay
        self.name = name
        self.auth_headers: list[str] = []
        self.completions = 0
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                outer.auth_headers.append(self.headers.get("Authorization", ""))
                if outer.mode == "no-models":
                    self._send(200, b'{"object": "list", "data": []}')
                    return
                entry = {"id": outer.name, "object": "model", "max_model_len": 2048}
                self._send(200, json.dumps({"object": "list", "data": [entry]}).encode())

            def do_POST(self) -> None:  # noqa: N802
                outer.auth_headers.append(self.headers.get("Authorization", ""))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/tokenize":
                    self._send(404, b'{"error": "no"}')
                    return
                with outer._lock:
                    outer.completions += 1
                    outer.inflight += 1
                    outer.max_inflight = max(outer.max_inflight, outer.inflight)
                # In flight until the reply starts: a client holds its slot from before it sends
                # until after it has read the reply, so two overlapping windows mean two slots held.
                # (Counting until the handler returns would also count the moment after the client
                # has the reply and the next client's request has arrived.)
                try:
                    time.sleep(outer.delay)
                finally:
                    with outer._lock:
                        outer.inflight -= 1
                self._answer(body)

            def _answer(self, body: dict[str, Any]) -> None:
                mode, n = outer.mode, int(body.get("n", 1))
                if mode == "http500":
                    self._send(500, b'{"error": {"message": "boom"}}')
                    return
                if mode == "garbage":
                    self._send(200, b'{"choices": [{"text": "passes: Oz"')
                    return
                text, finish = GOOD_ANSWER, "stop"
                if mode == "cut":
                    text, finish = "passes: Oz gvn-si", "length"
                name = outer.name + ("-v2" if mode == "model-changed" else "")
                count = n + 1 if mode == "wrong-count" else n
                choices = [{"index": i, "text": text, "finish_reason": finish} for i in range(count)]
                self._send(200, json.dumps({"object": "text_completion", "model": name, "choices": choices}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
