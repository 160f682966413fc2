"""Translating errors to HTTP at the edge: every error body is ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dispatch.errors import RelayError
from receiver.logs import redact_target, remember_secrets

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
    """Anything else: logged with its traceback, answered 500 without internals. The path is logged
    redacted (``/v1/callbacks/apixo/***``) even where logging is not set up by :mod:`receiver.logs`,
    whose handlers also redact the traceback, and the request's own credentials (:func:`_credentials`)
    wherever they appear in this request's logs (uvicorn reports the exception again, with the same
    traceback)."""
    remember_secrets(*_credentials(request))
    log.exception("unhandled error on %s %s", request.method, redact_target(request.url.path), exc_info=exc)
    return JSONResponse(
        {"error": {"code": "internal_error", "message": "internal error", "details": None}}, status_code=500
    )


def _credentials(request: Request) -> list[str]:
    """The secrets a request carries: its callback token (the ``token`` path parameter), its
    query-string values and its ``Authorization`` credential (``Bearer <this>``)."""
    token = request.path_params.get("token")
    values = [token] if isinstance(token, str) else []
    values.extend(request.query_params.values())
    _, _, credential = request.headers.get("authorization", "").strip().partition(" ")
    values.append(credential.strip())
    return values


HANDLERS = {RelayError: relay_error, HTTPException: http_error, Exception: unexpected_error}
