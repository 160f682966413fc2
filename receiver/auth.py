"""Admin authentication: everything under ``/v1`` except callbacks needs ``Authorization: Bearer <token>``.

Pure ASGI middleware, stateless; the token is compared in constant time.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from dispatch.errors import Unauthorized
from receiver.errors import error_response

PUBLIC_PREFIXES = ("/v1/callbacks/",)


class AdminAuthMiddleware:
    """Answers 401 ``{"error": {"code": "unauthorized", ...}}`` to ``/v1`` requests without the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1") or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
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
