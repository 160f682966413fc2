"""Inbound request limits, before and while any handler runs: too many or too large request headers
get 431, and a request body that does not arrive in time gets 408 and a closed connection.

uvicorn's default parser (httptools) reads headers of any size and waits for a body without end, so
the relay bounds both itself (RFC 6585 §5, "431 Request Header Fields Too Large"; RFC 9110 §15.5.9,
"408 Request Timeout"). Pure ASGI, no state across requests.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class BodyTimeout(RelayError):
    """The request body did not arrive within ``RELAY_BODY_TIMEOUT`` seconds of the request's start."""

    code = "body_timeout"
    status = 408


class BodyTimeoutMiddleware:
    """A request's body must have arrived ``timeout`` seconds after the request reached the app (its
    headers were complete); a handler still waiting for it then gets :class:`BodyTimeout` from
    ``receive`` (answered 408, see :mod:`receiver.errors`) and the answer closes the connection
    (``Connection: close``), which frees the connection and its concurrency slot however slowly the
    client trickles bytes (slow-body defence; ``RELAY_HEADER_TIMEOUT`` bounds the headers before).

    The deadline counts from the request's start, not from each read, so a body sent a byte at a
    time cannot stretch it; a body that did arrive in time is read even when a handler gets to it
    later. Once the body is complete, ``receive`` is passed through untouched (an event stream waits
    on it for the client's disconnect). A handler that never reads the body is not timed here; its
    connection is bounded by the header timeout of the next request. Example: with
    ``RELAY_BODY_TIMEOUT=10``, ``POST /console/login`` sending ``Content-Length: 1000`` and then one byte
    a second is answered ``408 {"error": {"code": "body_timeout", ...}}`` at 10 s and closed.
    """

    def __init__(self, app: ASGIApp, *, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        complete = expired = started = False

        async def timed_receive() -> Message:
            nonlocal complete, expired
            if complete:
                return await receive()
            if expired:
                return {"type": "http.disconnect"}
            try:  # past the deadline, a message already there is still read: receive does not wait
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                expired = True
                raise BodyTimeout(
                    f"the request body did not arrive within {self.timeout:g} s (RELAY_BODY_TIMEOUT)"
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if expired:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, timed_receive, closing_send)
        if expired and not started:  # the handler swallowed the error and answered nothing
            problem = BodyTimeout(f"the request body did not arrive within {self.timeout:g} s")
            await error_response(problem)(scope, timed_receive, closing_send)
