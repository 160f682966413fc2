"""Translating errors to HTTP at the edge: every error body is ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dispatch.errors import RelayError

log = logging.getLogger("upscale_relay.http")


def error_response(exc: RelayError) -> JSONResponse:
    """The JSON response for a relay error, with its class's status code."""
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status)


async def relay_error(request: Request, exc: Exception) -> Response:
    """A :class:`RelayError` as its status and JSON body."""
    assert isinstance(exc, RelayError)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404/405 in the same JSON error shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail), "details": None}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """Anything else: logged with its traceback, answered 500 without internals."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": {"code": "internal_error", "message": "internal error", "details": None}}, status_code=500
    )


HANDLERS = {RelayError: relay_error, HTTPException: http_error, Exception: unexpected_error}
