"""``/v1/subscribers``: create (the only time the secret is shown), list, read, change, delete."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatch.model import DEFAULT_EVENT_TYPES, EVENT_TYPES
from dispatch.ssrf import check_url
from receiver.api.common import parse_json, resources
from receiver.settings import Settings


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

    _types = field_validator("event_types")(_event_types)


class SubscriberPatch(BaseModel):
    """Any subset of ``url``, ``event_types``, ``description``, ``enabled``."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[str] | None = None
    description: str | None = Field(default=None, max_length=1000)
    enabled: bool | None = None

    _types = field_validator("event_types")(_event_types)


def vet_url(url: str, settings: Settings) -> None:
    """Refuse subscriber URLs that are not http(s) or point at private networks (unless allowed).
    Raises :class:`ValidationFailed`."""
    check_url(url, allow_private=settings.allow_private_targets, https_only=settings.https_only_targets)


async def create_subscriber(request: Request) -> JSONResponse:
    """201 with the subscriber and its ``secret`` (never shown again)."""
    res = resources(request)
    body = await parse_json(request, SubscriberCreate)
    vet_url(body.url, res.settings)
    sub, secret = await res.runner.call(
        lambda s: s.create_subscriber(
            body.url, event_types=body.event_types, description=body.description, enabled=body.enabled
        )
    )
    return JSONResponse({**sub.to_json(), "secret": secret}, status_code=201)


async def list_subscribers(request: Request) -> JSONResponse:
    res = resources(request)
    subs = await res.runner.call(lambda s: s.list_subscribers())
    return JSONResponse({"data": [s.to_json() for s in subs]})


async def get_subscriber(request: Request) -> JSONResponse:
    res = resources(request)
    sub_id = request.path_params["id"]
    sub = await res.runner.call(lambda s: s.get_subscriber(sub_id))
    return JSONResponse(sub.to_json())


async def patch_subscriber(request: Request) -> JSONResponse:
    res = resources(request)
    sub_id = request.path_params["id"]
    body = await parse_json(request, SubscriberPatch)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        vet_url(changes["url"], res.settings)
    sub = await res.runner.call(lambda s: s.update_subscriber(sub_id, **changes))
    return JSONResponse(sub.to_json())


async def delete_subscriber(request: Request) -> Response:
    res = resources(request)
    sub_id = request.path_params["id"]
    await res.runner.call(lambda s: s.delete_subscriber(sub_id))
    return Response(status_code=204)


routes = [
    Route("/v1/subscribers", create_subscriber, methods=["POST"]),
    Route("/v1/subscribers", list_subscribers, methods=["GET"]),
    Route("/v1/subscribers/{id}", get_subscriber, methods=["GET"]),
    Route("/v1/subscribers/{id}", patch_subscriber, methods=["PATCH"]),
    Route("/v1/subscribers/{id}", delete_subscriber, methods=["DELETE"]),
]
