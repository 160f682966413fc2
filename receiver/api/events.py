"""``GET /v1/events``, ``GET /v1/events/{id}``, ``POST /v1/events/{id}/replay``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dispatch.model import EVENT_TYPES
from receiver import operations
from receiver.api.common import (
    page,
    parse_json,
    query_choice,
    query_cursor,
    query_limit,
    query_time,
    resources,
)
from receiver.vendors import ADAPTERS


class ReplayRequest(BaseModel):
    """``{"subscriber_id": "sub_…"}`` to replay to one subscriber; ``{}`` for every matching one."""

    model_config = ConfigDict(extra="forbid")
    subscriber_id: str | None = None


async def list_events(request: Request) -> JSONResponse:
    """Events newest first; filters ``job_id``, ``vendor``, ``type``, ``since``, ``until`` (ISO-8601),
    ``limit``, ``cursor`` (the ``next_cursor`` of the page before)."""
    res = resources(request)
    q = request.query_params
    since, until, limit = query_time(request, "since"), query_time(request, "until"), query_limit(request)
    vendor, type_ = query_choice(request, "vendor", ADAPTERS), query_choice(request, "type", EVENT_TYPES)
    events = await res.store.list_events(
        job_id=q.get("job_id"),
        vendor=vendor,
        type=type_,
        since=since,
        until=until,
        limit=limit + 1,
        after=query_cursor(request),
    )
    return JSONResponse(page(events, limit, lambda e: (e.created_at, e.id)))


async def get_event(request: Request) -> JSONResponse:
    """One event with its delivered payload."""
    res = resources(request)
    eid = request.path_params["id"]
    event = await res.store.get_event(eid)
    return JSONResponse(event.to_json())


async def replay_event(request: Request) -> JSONResponse:
    """Re-deliver an event (same id and body): 202 with the new deliveries."""
    res = resources(request)
    eid = request.path_params["id"]
    body = await parse_json(request, ReplayRequest)
    deliveries = await operations.replay(res.store, eid, body.subscriber_id, wake=res.wake)
    return JSONResponse({"data": [d.to_json() for d in deliveries]}, status_code=202)


routes = [
    Route("/v1/events", list_events, methods=["GET"]),
    Route("/v1/events/{id}", get_event, methods=["GET"]),
    Route("/v1/events/{id}/replay", replay_event, methods=["POST"]),
]
