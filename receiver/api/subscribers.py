"""``/v1/subscribers``: create (the only time the secret is shown), list, read, change, delete."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatch.model import DEFAULT_EVENT_TYPES, EVENT_TYPES
from receiver import operations
from receiver.api.common import page, parse_json, query_cursor, query_limit, resources


def _event_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = [v for v in value if v not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {list(EVENT_TYPES)}")
    if not value:
        raise ValueError("must name at least one event type")
    return list(dict.fromkeys(value))


class SubscriberCreate(BaseModel):
    """``{"url": "https://app.example.com/hooks", "event_types": ["job.succeeded"], ...}``."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048)
    event_types: list[str] = Field(default_factory=lambda: list(DEFAULT_EVENT_TYPES))
    description: str | None = Field(default=None, max_length=1000)
    enabled: bool = True
    retry_schedule: list[Annotated[float, Field(ge=0, le=7 * 86400)]] | None = Field(
        default=None, max_length=50
    )

    _types = field_validator("event_types")(_event_types)


class SubscriberPatch(BaseModel):
    """Any subset of ``url``, ``event_types``, ``description``, ``enabled``."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[str] | None = None
    description: str | None = Field(default=None, max_length=1000)
    enabled: bool | None = None
    retry_schedule: list[Annotated[float, Field(ge=0, le=7 * 86400)]] | None = Field(
        default=None, max_length=50
    )

    _types = field_validator("event_types")(_event_types)

    @field_validator("url", "event_types", "enabled", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null (leave the field out to keep its value)")
        return value


class RecoverRequest(BaseModel):
    """``{"since": "2026-11-20T00:00:00Z", "until"?: ..., "dry_run"?: false}``."""

    model_config = ConfigDict(extra="forbid")
    since: AwareDatetime
    until: AwareDatetime | None = None
    dry_run: bool = False


async def create_subscriber(request: Request) -> JSONResponse:
    """201 with the subscriber and its ``secret`` (never shown again)."""
    res = resources(request)
    body = await parse_json(request, SubscriberCreate)
    sub, secret = await operations.add_subscriber(
        res.settings,
        res.store,
        body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
        retry_schedule=body.retry_schedule,
    )
    return JSONResponse({**sub.to_json(), "secret": secret}, status_code=201)


async def list_subscribers(request: Request) -> JSONResponse:
    """``{"data": [subscriber, ...]}``, oldest first; secrets are never included."""
    res = resources(request)
    limit = query_limit(request)
    subs = await res.store.list_subscribers(limit=limit + 1, after=query_cursor(request))
    return JSONResponse(page(subs, limit, lambda s: (s.created_at, s.id)))


async def get_subscriber(request: Request) -> JSONResponse:
    """One subscriber (no secret); 404 if unknown or deleted."""
    res = resources(request)
    sub_id = request.path_params["id"]
    sub = await res.store.get_subscriber(sub_id)
    return JSONResponse(sub.to_json())


async def patch_subscriber(request: Request) -> JSONResponse:
    """Change url, event_types, description, enabled or retry_schedule; 422 names a bad field."""
    res = resources(request)
    sub_id = request.path_params["id"]
    body = await parse_json(request, SubscriberPatch)
    sub = await operations.update_subscriber(
        res.settings, res.store, sub_id, body.model_dump(exclude_unset=True)
    )
    return JSONResponse(sub.to_json())


async def delete_subscriber(request: Request) -> Response:
    """204; its pending deliveries end as dead, its history stays."""
    res = resources(request)
    sub_id = request.path_params["id"]
    await res.store.delete_subscriber(sub_id)
    return Response(status_code=204)


async def rotate_secret(request: Request) -> JSONResponse:
    """200 with the new ``secret``; the old one keeps signing beside it until
    ``previous_secret_expires_at`` (``RELAY_SECRET_OVERLAP`` seconds)."""
    res = resources(request)
    sub_id = request.path_params["id"]
    sub, secret = await operations.rotate_secret(res.settings, res.store, sub_id)
    return JSONResponse({**sub.to_json(), "secret": secret})


async def recover(request: Request) -> JSONResponse:
    """Re-enqueue the subscriber's failed and dead deliveries created in [since, until), re-enabling
    it; with ``dry_run`` only count them. 202 ``{"count", "dry_run"}``."""
    res = resources(request)
    sub_id = request.path_params["id"]
    body = await parse_json(request, RecoverRequest)
    since = int(body.since.timestamp() * 1000)
    until = int(body.until.timestamp() * 1000) if body.until else None
    done = await operations.recover(
        res.store, sub_id, since=since, until=until, dry_run=body.dry_run, wake=res.wake
    )
    return JSONResponse({"count": done.count, "dry_run": done.dry_run}, status_code=202)


routes = [
    Route("/v1/subscribers/{id}/rotate-secret", rotate_secret, methods=["POST"]),
    Route("/v1/subscribers/{id}/recover", recover, methods=["POST"]),
    Route("/v1/subscribers", create_subscriber, methods=["POST"]),
    Route("/v1/subscribers", list_subscribers, methods=["GET"]),
    Route("/v1/subscribers/{id}", get_subscriber, methods=["GET"]),
    Route("/v1/subscribers/{id}", patch_subscriber, methods=["PATCH"]),
    Route("/v1/subscribers/{id}", delete_subscriber, methods=["DELETE"]),
]
