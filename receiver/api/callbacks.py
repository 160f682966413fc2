"""``POST /v1/callbacks/{vendor}/{token}``: where vendors call back (no admin token; the URL is the
capability). Answers exactly 200 once the message, job update, events and deliveries are committed
(APIXO accepts nothing but 200)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dispatch.errors import NotFound
from dispatch.store.records import Job, RawMessage
from receiver.api.common import read_body, resources
from receiver.tokens import hash_token
from receiver.vendors import ADAPTERS


async def receive_callback(request: Request) -> JSONResponse:
    """Authenticate by token, store, parse and apply; 404 (nothing stored) for an unknown vendor or
    token, 413 over the size limit, 401 for a bad signature, 422 for an unparseable body or one about
    another vendor job (verdict ``mismatch``), 429 (nothing stored) past the per-job or per-source
    caps, 503 when the store cannot write within ``RELAY_DB_BUSY_TIMEOUT``. Callback tokens echoed in
    the body or headers are replaced by ``[redacted]`` before storage."""
    res = resources(request)
    vendor = request.path_params["vendor"]
    adapter = ADAPTERS.get(vendor)
    if adapter is None or adapter.synchronous:
        raise NotFound("unknown callback URL")
    token = request.path_params["token"]
    token_hash = hash_token(token)
    target = await res.store.find_callback_target(vendor, token_hash)
    if target is None:
        raise NotFound("unknown callback URL")
    job, source = (target, None) if isinstance(target, Job) else (None, target)
    body = await read_body(request, res.settings.max_body_bytes)
    peer = f"{request.client.host}:{request.client.port}" if request.client else None
    raw = RawMessage({k.lower(): v for k, v in request.headers.items()}, body, peer)
    try:
        if job is not None:
            result = await res.ingest.job_callback(adapter, job, raw, token=token)
        else:
            assert source is not None
            result = await res.ingest.source_callback(adapter, source, raw, token=token)
    except Exception as exc:
        res.ingest.observe(vendor, job, exc)
        raise
    res.ingest.observe(vendor, job, result)
    return JSONResponse(
        {
            "ok": True,
            "inbound_id": result.inbound_id,
            "verdict": result.verdict,
            "event_ids": list(result.event_ids),
        },
        status_code=200,
    )


routes = [Route("/v1/callbacks/{vendor}/{token}", receive_callback, methods=["POST"])]
