"""Per-job callback tokens: the capability in ``/v1/callbacks/{vendor}/{token}`` (DESIGN.md, "Security stance")."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import replace

from dispatch.store.records import RawMessage

TOKEN_BYTES = 24  # 192 random bits (the design asks for at least 128)


def new_token() -> tuple[str, str]:
    """A fresh URL-safe token and the SHA-256 hex digest that is stored instead of it.

    Example: ``("q3V…", "9f2c…")``; 32 URL-safe characters from 192 random bits.
    """
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """SHA-256 hex of ``token``: lookups compare digests, so timing reveals nothing of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def callback_url(public_url: str, vendor: str, token: str) -> str:
    """The URL a vendor calls back on: ``callback_url("https://relay.example.com", "apixo", "q3V…")``
    → ``"https://relay.example.com/v1/callbacks/apixo/q3V…"`` (the route in ``receiver.api.callbacks``;
    ``public_url`` is ``RELAY_PUBLIC_URL``, without a trailing slash)."""
    return f"{public_url}/v1/callbacks/{vendor}/{token}"


REDACTED_TOKEN = "[redacted]"
# A callback URL's token wherever a vendor echoes it (LTX and Dreamina send ``replyUrl`` back), also
# JSON-escaped (``\/v1\/callbacks\/...``) or percent-encoded; the vendor segment is kept.
_ECHOED_TOKEN = re.compile(
    rb"((?:/|\\/|%2[fF])v1(?:/|\\/|%2[fF])callbacks(?:/|\\/|%2[fF])[A-Za-z0-9_-]{0,32}(?:/|\\/|%2[fF]))"
    rb"[A-Za-z0-9_\-.~%]+"
)


def scrub(raw: RawMessage, token: str | None = None) -> RawMessage:
    """``raw`` with every callback token removed from its body and header values before storage.

    Example: a body ``{"replyUrl": "https://relay.example.com/v1/callbacks/ltxstudio/q3V…"}`` is
    stored as ``{"replyUrl": "https://relay.example.com/v1/callbacks/ltxstudio/[redacted]"}``. Tokens
    are found by the callback-URL shape, and ``token`` (the one in the request's path, when known)
    is also removed wherever it appears. Everything else is kept byte for byte.
    """
    marker = REDACTED_TOKEN.encode()
    body = _ECHOED_TOKEN.sub(rb"\1" + marker, raw.body)
    if token:
        body = body.replace(token.encode("utf-8", "surrogatepass"), marker)
    headers = {}
    for name, value in raw.headers.items():
        clean = _ECHOED_TOKEN.sub(rb"\1" + marker, value.encode("latin-1", "replace")).decode("latin-1")
        headers[name] = clean.replace(token, REDACTED_TOKEN) if token else clean
    if body == raw.body and headers == raw.headers:
        return raw
    return replace(raw, body=body, headers=headers)
