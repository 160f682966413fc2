"""Admin authentication: everything under ``/v1`` except callbacks needs ``Authorization: Bearer <token>``,
and so does ``GET /metrics`` unless ``RELAY_METRICS_PUBLIC=true``.

Pure ASGI middleware, stateless; the token is compared in constant time.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from dispatch.errors import Unauthorized
from receiver.errors import error_response

PUBLIC_PREFIXES = ("/v1/callbacks/",)
SIGNED_PREFIXES = ("/v1/outputs/",)
"""Paths whose handler checks a signed query (``?expires=…&sig=…``) instead of the token, when one is given."""
METRICS_PATH = "/metrics"


def needs_token(path: str, *, metrics_public: bool = False) -> bool:
    """Whether a request to ``path`` needs the admin token: ``/v1`` except the public prefixes, and
    :data:`METRICS_PATH` unless ``metrics_public``."""
    if path == METRICS_PATH:
        return not metrics_public
    return path.startswith("/v1") and not path.startswith(PUBLIC_PREFIXES)


class AdminAuthMiddleware:
    """Answers 401 ``{"error": {"code": "unauthorized", ...}}`` to requests :func:`needs_token` names
    that come without the token."""

    def __init__(self, app: ASGIApp, token: str, *, metrics_public: bool = False) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.metrics_public = metrics_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not needs_token(path, metrics_public=self.metrics_public):
            await self.app(scope, receive, send)
            return
        if path.startswith(SIGNED_PREFIXES) and b"sig=" in scope.get("query_string", b""):
            await self.app(scope, receive, send)  # the handler verifies the signature
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        if not hmac.compare_digest(given, self.expected):
            message = "missing bearer token" if not given else "wrong bearer token"
            response = error_response(Unauthorized(message))
            response.headers["www-authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
