"""Per-job callback tokens: the capability in ``/v1/callbacks/{vendor}/{token}`` (DESIGN.md, "Security stance")."""

from __future__ import annotations

import hashlib
import secrets

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
