"""Mirrored outputs (:mod:`receiver.mirroring`): ``GET /v1/outputs/{job_id}/{index}`` serves the
relay's copy, ``POST /v1/jobs/{id}/mirror`` copies a job's outputs again."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from dispatch.errors import NotConfigured, NotFound, Unauthorized
from receiver.api.common import resources
from receiver.mirroring import output_entry, remirror


async def get_output(request: Request) -> StreamingResponse:
    """The mirrored bytes of output ``index`` of a job, streamed with its Content-Type and length.

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
    return StreamingResponse(
        chunks,
        media_type=output.mime_type or "application/octet-stream",
        headers={"content-length": str(size), "cache-control": "private, max-age=300"},
    )


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
