"""Mirrored outputs (:mod:`receiver.mirroring`): ``GET /v1/outputs/{job_id}/{index}`` serves the
relay's copy, ``POST /v1/jobs/{id}/mirror`` copies a job's outputs again.

The copy's bytes came from a vendor (or whoever forged its callback) and are served from the relay's
own origin, where the console lives (issue 19: an SVG "result" ran its script with the operator's
session). So only raster image types are served inline (:func:`receiver.mirror_types.served_as`),
everything else as ``application/octet-stream`` with ``Content-Disposition: attachment``, and every
answer under ``/v1/outputs/`` — errors included — carries :data:`OUTPUT_HEADERS`
(:class:`OutputHeaders`): no type sniffing, and a sandbox in which nothing runs or loads.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.errors import NotConfigured, NotFound, Unauthorized
from receiver.api.common import resources
from receiver.errors import unexpected_error
from receiver.mirror_types import served_as
from receiver.mirroring import output_entry, remirror

OUTPUTS_PREFIX = "/v1/outputs/"
OUTPUT_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; sandbox"),
)
"""Sent on every response under :data:`OUTPUTS_PREFIX`."""


async def get_output(request: Request) -> StreamingResponse:
    """The mirrored bytes of output ``index`` of a job, streamed with its length and its recorded
    type when that is a raster image type, else as an ``application/octet-stream`` attachment.

    Needs the bearer token, or a signed query (``?expires=<unix s>&sig=<hex>``, as the events'
    ``mirror.url`` carries it for a ``file://`` mirror): then the signature alone decides, and a
    forged, malformed or expired one is a 401. 404 for an unknown job, an output that was not
    mirrored, or mirroring off.
    """
    res = resources(request)
    target = res.mirror
    if target is None:
        raise NotFound("mirroring is off (RELAY_MIRROR_URL is not set)")
    job_id = request.path_params["job_id"]
    raw_index = request.path_params["index"]
    if not (raw_index.isascii() and raw_index.isdigit()) or len(raw_index) > 6:
        raise NotFound(f"job {job_id[:60]} has no output {raw_index[:20]!r}")
    index = int(raw_index)
    sig = request.query_params.get("sig")
    if sig is not None:  # the auth middleware let any "sig=" query through for this check
        target.verify(job_id, index, request.query_params.get("expires", ""), sig)
    elif not hmac.compare_digest(
        request.headers.get("authorization", "").encode(), f"Bearer {res.api_token}".encode()
    ):
        raise Unauthorized("needs the bearer token or a signed URL (?expires=…&sig=…)")
    output = output_entry(await res.store.get_job(job_id), index)
    size, chunks = await target.read(target.key(job_id, index))
    media_type, attachment = served_as(output.mime_type)
    headers = {"content-length": str(size), "cache-control": "private, max-age=300"}
    if attachment:
        headers["content-disposition"] = "attachment"
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


class OutputHeaders:
    """Pure ASGI middleware: :data:`OUTPUT_HEADERS` on every response to a path under
    :data:`OUTPUTS_PREFIX` (the auth middleware's 401s and an unexpected error's 500 included: the
    500 is answered here, logged by :func:`receiver.errors.unexpected_error`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(OUTPUTS_PREFIX):
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *OUTPUT_HEADERS]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if started:
                raise
            response = await unexpected_error(Request(scope), exc)
            await response(scope, receive, send_with_headers)


async def mirror_job(request: Request) -> JSONResponse:
    """Copy a succeeded job's outputs to the mirror again now (:func:`receiver.mirroring.remirror`):
    200 with the job; 404 unknown job, 409 not succeeded, 503 mirroring off."""
    res = resources(request)
    if res.settings.mirror_url is None:
        raise NotConfigured("mirroring is off: set RELAY_MIRROR_URL (file:///PATH or s3://BUCKET/PREFIX)")
    job = await remirror(
        res.store, res.settings, request.path_params["id"], metrics=res.metrics, on_event=res.wake
    )
    return JSONResponse(job.to_json())


routes = [
    Route("/v1/outputs/{job_id}/{index}", get_output, methods=["GET"]),
    Route("/v1/jobs/{id}/mirror", mirror_job, methods=["POST"]),
]
