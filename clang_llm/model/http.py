"""A model behind an OpenAI-compatible completions server (vLLM, llama.cpp's server, or
`clang-llm-tool serve`), with the interface of the local `Model`.

Every failure is a `BackendError` whose `reason` the stats count (``backend-refused``,
``backend-timeout``, ``backend-http-500``, ``backend-bad-json``, ``backend-truncated``,
``backend-model-changed``, ``backend-busy``); the TU then ships -Oz. The API key is read from
the environment variable the settings name, sent as a bearer token, and never logged or recorded;
URLs are shown without their user-info part.

The model identity (part of the decision cache key) is the server's model name, its
fingerprint (`system_fingerprint`, or the content id `serve` reports) and context length, and
the prompt format: two models' answers never share a cache entry. Every answer must come from
the model connected to: a response naming another model or fingerprint is rejected.

Token counts: a `serve` model ships its tokenizer (cached per fingerprint in the state dir), so
prompts are built exactly as in-process; other servers are asked (`/tokenize`, vLLM's), else a
conservative estimate is used and the server has the last word on length.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from clang_llm.atomic import atomic_write_bytes
from clang_llm.build.jobslots import machine_slot
from clang_llm.errors import BackendError, ModelError, SlotTimeout
from clang_llm.model.card import ModelCard
from clang_llm.prompt_format import PROMPT_FORMAT
from clang_llm.safe_text import server_root

if TYPE_CHECKING:
    import httpx
    import numpy as np
    from tokenizers import Tokenizer

MAX_RESPONSE_BYTES = 16 << 20
DEFAULT_CONTEXT = 2048


@dataclass(frozen=True)
class BackendConfig:
    url: str  # http(s)://host:port[/prefix] or unix:/path/to/socket
    timeout: float = 60.0  # seconds to read one answer
    connect_timeout: float = 3.0
    concurrency: int = 8  # requests in flight per machine (all builds of this user)
    key_env: str = "CLANG_LLM_API_KEY"  # environment variable holding the API key, if any
    model: str = ""  # model name to ask for; "" = the server's first
    prompt_format: str = ""  # "" = what the server's model entry says, else ours
    state_dir: Path = Path(".")


@dataclass(frozen=True)
class ServerModel:
    """The server's entry for the model: what its identity and prompt are built from."""

    name: str
    fingerprint: str
    context_length: int
    card: ModelCard
    tokenizer_path: str  # "" when the server does not share its tokenizer
    rank_path: str = ""  # `clang-llm-tool serve` of a cllm-v2 model: where it ranks its pool
    losses_path: str = ""  # ... and where it shares its pool's loss table (minimum-risk order)


class HttpModel:
    """`Model`'s interface (id, card, context_length, count_tokens, generate) over HTTP."""

    def __init__(self, cfg: BackendConfig, client: httpx.Client, server: ServerModel,
                 answer_complete: Callable[[str], bool] | None = None) -> None:
        self.cfg = cfg
        self.card = server.card
        self.server = server
        self.warnings: list[str] = []
        self.requests = 0  # completions requests sent (the stats' remote calls)
        self.seconds = 0.0
        self.answer_complete = answer_complete
        self._client = client
        self._tokenizer = self._load_tokenizer() if server.tokenizer_path else None
        # The served model's loss table, so a remote TU's tries are ordered as an in-process one's.
        self.pool_losses: np.ndarray | None = (
            self._load_losses() if server.losses_path and server.rank_path and self.card.risk_temperature > 0 else None)
        self._counts: dict[str, int] = {}
        self._tokenize_endpoint = True
        self.stop: tuple[str, ...] = ()

    @property
    def context_length(self) -> int:
        return self.server.context_length

    @property
    def id(self) -> str:
        s = self.server
        blob = json.dumps([s.name, s.fingerprint, s.context_length, self.card.prompt_format])
        return "http-" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- tokens ----------------------------------------------------------------
    def _cache_path(self, name: str) -> Path:
        safe = "".join(c for c in self.server.fingerprint if c.isalnum())[:64] or "unknown"
        return self.cfg.state_dir / "backend" / safe / name

    def _cached(self, name: str, server_path: str) -> Path:
        """A file the server shares, downloaded once per server model into the private state dir."""
        path = self._cache_path(name)
        if not path.is_file():
            data = self._get(server_path).content
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write_bytes(path, data, 0o600)
        return path

    def _load_tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        path = self._cached("tokenizer.json", self.server.tokenizer_path)
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception on malformed JSON
            path.unlink(missing_ok=True)
            raise BackendError("bad-json", f"tokenizer unreadable ({str(exc)[:100]})") from None

    def _load_losses(self) -> np.ndarray | None:
        """The server's `pool-losses.npy`, cached beside its tokenizer; a table that does not fit
        the pool is set aside with a warning (the pool is then ranked by likelihood)."""
        from clang_llm.model.risk import LOSSES_FILE, load_losses

        try:
            return load_losses(self._cached(LOSSES_FILE, self.server.losses_path), len(self.card.pool))
        except (BackendError, OSError, ValueError, EOFError) as exc:
            self._cache_path(LOSSES_FILE).unlink(missing_ok=True)
            self.warnings.append(f"the server's loss table is unusable ({str(exc)[:100]}): ranked by likelihood")
            return None

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text).ids)
        if text not in self._counts:
            self._counts[text] = self._remote_count(text)
        return self._counts[text]

    def _remote_count(self, text: str) -> int:
        estimate = len(text.encode()) // 3 + 1  # ~3-4 bytes a token for IR; errs long
        if not self._tokenize_endpoint:
            return estimate
        import httpx

        try:
            r = self._client.post("/tokenize", json={"model": self.server.name, "prompt": text})
        except httpx.HTTPError:
            r = None
        if r is None or r.status_code != 200:
            self._tokenize_endpoint = False
            return estimate
        try:
            return int(r.json()["count"])
        except (ValueError, KeyError, TypeError):
            self._tokenize_endpoint = False
            return estimate

    # -- ranking (a clang-llm server's cllm-v2 model) --------------------------------
    @property
    def pool(self) -> list[str]:
        """The stored lists the server's model ranks; none when the server cannot rank (the loop
        then only samples)."""
        return list(self.card.pool) if self.server.rank_path else []

    def rank_pool(self, prompt: str) -> list[float]:
        """The server's `Model.rank_pool` for this prompt; raises `BackendError`."""
        data = self._post(self.server.rank_path, {"model": self.server.name, "prompt": prompt})
        self._check_model(data)
        scores = data.get("scores")
        finite = isinstance(scores, list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in scores)
        if not finite or len(scores) != len(self.card.pool):  # type: ignore[arg-type]
            raise BackendError("bad-json", f"expected {len(self.card.pool)} finite scores")
        return [float(x) for x in scores]  # type: ignore[union-attr]

    # -- completions -------------------------------------------------------------
    def generate(self, prompts: list[str] | str, k: int = 1, seed: int = 0, temperature: float = 0.8,
                 max_new_tokens: int = 256, *, top_k: int = 50) -> list[str]:
        """k answers per prompt, in order, as `Model.generate`; raises `BackendError`."""
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        out: list[str] = []
        for prompt in batch:
            out += self._complete(prompt, k, seed, temperature, max_new_tokens, top_k)
        return out

    def _complete(self, prompt: str, k: int, seed: int, temperature: float, max_tokens: int,
                  top_k: int) -> list[str]:
        body: dict[str, Any] = {"model": self.server.name, "prompt": prompt, "n": k, "temperature": temperature,
                                "seed": seed, "max_tokens": max_tokens, "top_k": top_k}
        if self.stop:
            body["stop"] = list(self.stop)
        data = self._post("/v1/completions", body)
        choices = data.get("choices")
        if not isinstance(choices, list) or len(choices) != k or not all(isinstance(c, dict) for c in choices):
            raise BackendError("bad-json", f"expected {k} choices")
        self._check_model(data)
        texts: list[str] = []
        for c in sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0):
            text = c.get("text")
            if not isinstance(text, str):
                raise BackendError("bad-json", "a choice without text")
            if c.get("finish_reason") == "length" and self.answer_complete and not self.answer_complete(text):
                raise BackendError("truncated", f"answer cut at max_tokens={max_tokens} inside its pass list")
            texts.append(text)
        return texts

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request within the machine's slots, timed and counted; its JSON, or `BackendError`."""
        import httpx

        t0 = time.monotonic()
        try:
            with machine_slot(self.cfg.state_dir / "backend-slots", self.cfg.concurrency, self.cfg.timeout):
                self.requests += 1
                r = self._client.post(path, json=body)
        except SlotTimeout as e:
            raise BackendError("busy", str(e)) from None
        except httpx.HTTPError as e:
            raise _transport_error(e) from None
        finally:
            self.seconds += time.monotonic() - t0
        return _json(r)

    def _check_model(self, data: dict[str, Any]) -> None:
        """The answer must come from the model connected to (not one swapped in since)."""
        name, fp = data.get("model"), data.get("system_fingerprint")
        if name != self.server.name or (self.server.fingerprint and fp and fp != self.server.fingerprint):
            raise BackendError("model-changed", f"answer from {str(name)[:80]!r}, connected to {self.server.name!r}")

    def _get(self, path: str) -> httpx.Response:
        import httpx

        try:
            r = self._client.get(path)
        except httpx.HTTPError as e:
            raise _transport_error(e) from None
        _status(r)
        return r


def _transport_error(e: Exception) -> BackendError:
    import httpx

    if isinstance(e, httpx.ConnectTimeout):
        return BackendError("unreachable", "connect timed out")
    if isinstance(e, httpx.TimeoutException):
        return BackendError("timeout", type(e).__name__)
    if isinstance(e, httpx.ConnectError):
        return BackendError("refused", "cannot connect")
    return BackendError("transport", type(e).__name__)


def _status(r: httpx.Response) -> None:
    if r.status_code != 200:
        raise BackendError(f"http-{r.status_code}", r.reason_phrase or "")


def _json(r: httpx.Response) -> dict[str, Any]:
    _status(r)
    if len(r.content) > MAX_RESPONSE_BYTES:
        raise BackendError("bad-json", "response too large")
    try:
        data = r.json()
    except (ValueError, UnicodeDecodeError):
        raise BackendError("bad-json", "response is not JSON") from None
    if not isinstance(data, dict):
        raise BackendError("bad-json", "response is not a JSON object")
    return data


def _client(cfg: BackendConfig) -> httpx.Client:
    import httpx

    headers = {"User-Agent": "clang-llm"}
    key = os.environ.get(cfg.key_env, "") if cfg.key_env else ""
    if key:
        headers["Authorization"] = f"Bearer {key}"
    timeout = httpx.Timeout(cfg.timeout, connect=cfg.connect_timeout)
    if cfg.url.startswith("unix:"):
        transport = httpx.HTTPTransport(uds=cfg.url.removeprefix("unix:"))
        return httpx.Client(base_url="http://localhost", transport=transport, headers=headers, timeout=timeout,
                            trust_env=False)
    parts = urlsplit(cfg.url)
    auth = (parts.username or "", parts.password or "") if parts.username else None
    return httpx.Client(base_url=server_root(cfg.url), headers=headers, timeout=timeout, auth=auth,
                        trust_env=False)


def _server_model(cfg: BackendConfig, data: dict[str, Any]) -> ServerModel:
    entries = data.get("data")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise BackendError("bad-json", "/v1/models lists no model")
    if cfg.model:
        entries = [e for e in entries if e.get("id") == cfg.model]
        if not entries:
            raise BackendError("no-model", f"the server does not serve {cfg.model!r}")
    e = entries[0]
    name = e.get("id")
    if not isinstance(name, str) or not name:
        raise BackendError("bad-json", "model entry without an id")
    ours = e.get("clang_llm") if isinstance(e.get("clang_llm"), dict) else {}
    ctx = e.get("max_model_len") or ours.get("context_length") or DEFAULT_CONTEXT
    if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx <= 0:
        raise BackendError("bad-json", "bad max_model_len")
    card_json = ours.get("card")
    if isinstance(card_json, dict):
        try:
            card = ModelCard.from_json(card_json, "server model card")
        except ModelError as exc:
            raise BackendError("bad-json", str(exc)) from None
    else:
        from clang_llm import LLVM_MAJOR

        card = ModelCard(llvm_major=LLVM_MAJOR, pass_vocabulary_version="", prompt_format=PROMPT_FORMAT,
                         context_length=ctx, name=name)
    if cfg.prompt_format:
        card = ModelCard(**{**card.to_json(), "prompt_format": cfg.prompt_format})
    fingerprint = str(ours.get("fingerprint") or e.get("root") or "")[:128]
    tokenizer = ours.get("tokenizer") if isinstance(ours.get("tokenizer"), str) else ""
    if tokenizer and not tokenizer.startswith("/"):
        tokenizer = ""
    rank, losses = (str(ours[k]) if isinstance(ours.get(k), str) and str(ours[k]).startswith("/") else ""
                    for k in ("rank", "losses"))
    return ServerModel(name=name, fingerprint=fingerprint, context_length=ctx, card=card,
                       tokenizer_path=tokenizer, rank_path=rank, losses_path=losses)


def connect(cfg: BackendConfig) -> HttpModel:
    """Ask the server which model it serves; `BackendError` if it cannot say. The caller sets
    `answer_complete` and `stop` once the model's prompt format is known."""
    client = _client(cfg)
    try:
        r = client.get("/v1/models")
    except Exception as e:
        client.close()
        raise _transport_error(e) from None
    try:
        server = _server_model(cfg, _json(r))
        model = HttpModel(cfg, client, server)
    except BaseException:
        client.close()
        raise
    return model
