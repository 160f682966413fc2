"""``GET /v1/deliveries``, ``GET /v1/deliveries/{id}`` (with attempts), ``POST /v1/deliveries/{id}/retry``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dispatch.store.records import DELIVERY_STATUSES
from receiver import operations
from receiver.api.common import page, query_choice, query_cursor, query_limit, resources


async def list_deliveries(request: Request) -> JSONResponse:
    """Newest first; filters ``status`` (pending, retrying, succeeded, dead, failed), ``subscriber_id``,
    ``event_id``, ``limit``, ``cursor`` (the ``next_cursor`` of the page before). An unknown
    ``status`` is a 422."""
    res = resources(request)
    q = request.query_params
    limit = query_limit(request)
    status = query_choice(request, "status", DELIVERY_STATUSES)
    rows = await res.store.list_deliveries(
        status=status,
        subscriber_id=q.get("subscriber_id"),
        event_id=q.get("event_id"),
        limit=limit + 1,
        after=query_cursor(request),
    )
    return JSONResponse(page(rows, limit, lambda d: (d.created_at, d.id)))


async def get_delivery(request: Request) -> JSONResponse:
    """One delivery with its ``attempt_log`` (status, duration ms, headers, first 4 KiB, error)."""
    res = resources(request)
    delivery_id = request.path_params["id"]
    delivery = await res.store.get_delivery(delivery_id)
    return JSONResponse(delivery.to_json())


async def retry_delivery(request: Request) -> JSONResponse:
    """Make a dead or retrying delivery due now: 202 with the delivery; 409 if it already succeeded."""
    res = resources(request)
    delivery_id = request.path_params["id"]
    delivery = await operations.retry_delivery(res.store, delivery_id, wake=res.wake)
    return JSONResponse(delivery.to_json(), status_code=202)


routes = [
    Route("/v1/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/deliveries/{id}", get_delivery, methods=["GET"]),
    Route("/v1/deliveries/{id}/retry", retry_delivery, methods=["POST"]),
]
