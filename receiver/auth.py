"""Admin authentication: everything under ``/v1`` except callbacks needs ``Authorization: Bearer <token>``,
and so does ``GET /metrics`` unless ``RELAY_METRICS_PUBLIC=true``.

Pure ASGI middleware; the token is compared in constant time, and wrong tokens are counted per client
address (:mod:`receiver.throttle`).
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from dispatch.errors import Unauthorized
from receiver.errors import error_response
from receiver.throttle import AuthThrottle, client_address

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
    that come without the token. A wrong token counts as a failed attempt of the client's address
    (``throttle``, shared with the console's sign-in); an address past its budget gets 429 with
    ``Retry-After`` before its token is even compared, right or wrong."""

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        *,
        metrics_public: bool = False,
        throttle: AuthThrottle | None = None,
    ) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.metrics_public = metrics_public
        self.throttle = throttle if throttle is not None else AuthThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not needs_token(path, metrics_public=self.metrics_public):
            await self.app(scope, receive, send)
            return
        if path.startswith(SIGNED_PREFIXES) and b"sig=" in scope.get("query_string", b""):
            await self.app(scope, receive, send)  # the handler verifies the signature
            return
        address = client_address(scope)
        wait = self.throttle.retry_after(address)
        if wait is not None:
            response = error_response(self.throttle.refusal(wait))
            response.headers["retry-after"] = str(wait)
            await response(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        if not hmac.compare_digest(given, self.expected):
            if given:  # a guess; a request without any token is not one
                self.throttle.failed(address)
            message = "missing bearer token" if not given else "wrong bearer token"
            response = error_response(Unauthorized(message))
            response.headers["www-authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
