"""Text we write about the user's world: paths of any bytes, URLs without their credentials.

Everything we write (records, the log, stats, cache keys) goes through these, so a path that is
not UTF-8 never stops a write, and a password in a URL never reaches a file.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

_URL_WITH_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def path_text(path: str | os.PathLike[str]) -> str:
    """`path` as valid UTF-8 text: bytes that are not UTF-8 (kept by Python as surrogates) become
    `\\xNN` escapes, so the same path always gives the same text."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def public_url(url: str) -> str:
    """`url` without user-info, query or fragment (``http://user:secret@host/v1?k=x`` gives
    ``http://host/v1``); not a URL: unchanged but for embedded user-info."""
    if url.startswith("unix:") or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return redact(url)
    if ":" in host:
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact(text: str) -> str:
    """`text` with the user-info of every URL in it removed (``scheme://user:pw@`` → ``scheme://``)."""
    return _URL_WITH_USERINFO.sub(r"\1", text)


def public_flags(flags: dict[str, str]) -> dict[str, str]:
    """--llm-* flags as records keep them: every URL without its credentials."""
    return {k: public_url(v) if "://" in v else redact(v) for k, v in flags.items()}


def server_root(url: str) -> str:
    """A model server's root for our request paths (`/v1/completions`, `/tokenize`, ...): a base
    URL written the OpenAI way (`http://host:8000/v1`, with or without a trailing slash) and one
    without `/v1` name the same server. Credentials, query and fragment are left out."""
    if url.startswith("unix:"):
        return url
    return public_url(url).rstrip("/").removesuffix("/v1").rstrip("/")
