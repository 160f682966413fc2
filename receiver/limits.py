"""Inbound header limits: too many or too large request headers get 431 before any handler runs.

uvicorn's default parser (httptools) reads headers of any size, so the relay bounds them itself
(RFC 6585 §5, "431 Request Header Fields Too Large"). Pure ASGI, stateless.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from dispatch.errors import RelayError
from receiver.errors import error_response


class HeadersTooLarge(RelayError):
    """The request's headers are over the configured count or total size (bytes)."""

    code = "headers_too_large"
    status = 431


class HeaderLimitMiddleware:
    """Refuse requests with more than ``max_count`` headers or more than ``max_bytes`` of header
    names and values together."""

    def __init__(self, app: ASGIApp, *, max_count: int, max_bytes: int) -> None:
        self.app = app
        self.max_count = max_count
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers", [])
            size = sum(len(name) + len(value) for name, value in headers)
            if len(headers) > self.max_count or size > self.max_bytes:
                problem = HeadersTooLarge(
                    f"{len(headers)} headers of {size} bytes; the limits are {self.max_count} headers"
                    f" and {self.max_bytes} bytes"
                )
                await error_response(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
