"""``GET /v1/inbound``, ``GET /v1/inbound/{id}``, ``POST /v1/inbound/{id}/reprocess``: raw vendor messages."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from receiver import operations
from receiver.api.common import BODY_PREVIEW_BYTES, page, query_choice, query_cursor, query_limit, resources
from receiver.vendors import ADAPTERS


async def list_inbound(request: Request) -> JSONResponse:
    """Newest first; filters ``job_id``, ``vendor``, ``verdict``, ``limit``. Bodies are cut at 8 KiB
    (``body_truncated``); ``body_url`` streams the whole one."""
    res = resources(request)
    q = request.query_params
    limit = query_limit(request)
    vendor = query_choice(request, "vendor", ADAPTERS)
    rows = await res.store.list_inbound(
        job_id=q.get("job_id"),
        vendor=vendor,
        verdict=q.get("verdict"),
        limit=limit + 1,
        body_prefix=BODY_PREVIEW_BYTES,
        after=query_cursor(request),
    )
    return JSONResponse(page(rows, limit, lambda i: (i.received_at, i.id)))


async def get_inbound(request: Request) -> JSONResponse:
    """One stored vendor message: headers, body (as text), verdict, error, event ids."""
    res = resources(request)
    inbound_id = request.path_params["id"]
    row = await res.store.get_inbound(inbound_id)
    return JSONResponse(row.to_json())


BODY_CHUNK_BYTES = 65536


async def get_inbound_body(request: Request) -> StreamingResponse:
    """The stored body exactly as kept (callback tokens redacted), streamed in 64 KiB chunks as
    ``application/octet-stream``; ``Content-Length`` is its size. 404 if unknown."""
    res = resources(request)
    inbound_id = request.path_params["id"]
    size = await res.store.inbound_body_size(inbound_id)

    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, size, BODY_CHUNK_BYTES):
            yield await res.store.read_inbound_body(inbound_id, offset, BODY_CHUNK_BYTES)

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={"content-length": str(size), "x-content-type-options": "nosniff"},
    )


async def reprocess_inbound(request: Request) -> JSONResponse:
    """Re-run a stored callback through the current adapter; the result is stored as a new inbound
    message (kind ``reprocess``) and applied like any callback. 200 with the new message."""
    res = resources(request)
    inbound_id = request.path_params["id"]
    row = await operations.reprocess(res.ingest, res.store, inbound_id)
    return JSONResponse(row.to_json())


routes = [
    Route("/v1/inbound", list_inbound, methods=["GET"]),
    Route("/v1/inbound/{id}", get_inbound, methods=["GET"]),
    Route("/v1/inbound/{id}/body", get_inbound_body, methods=["GET"]),
    Route("/v1/inbound/{id}/reprocess", reprocess_inbound, methods=["POST"]),
]
