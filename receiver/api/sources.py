"""``/v1/sources``: callback URLs for jobs submitted outside the relay.

A user who already submits to a vendor (e.g. with useapi's account-wide ``replyUrl``) creates a
source and points the vendor at its URL; each callback creates its job on first sight, keyed by the
vendor job id, and from then on the job behaves like any other (events, polling, replay).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import operations
from receiver.api.common import page, parse_json, query_cursor, query_limit, resources


class SourceCreate(BaseModel):
    """``{"vendor": "dreamina", "description": "account-wide replyUrl"}``."""

    model_config = ConfigDict(extra="forbid")
    vendor: str = Field(min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=1000)


async def create_source(request: Request) -> JSONResponse:
    """201 with the source and its ``callback_url`` (shown only here: the token is stored hashed)."""
    res = resources(request)
    body = await parse_json(request, SourceCreate)
    source, url = await operations.add_source(res.settings, res.store, body.vendor, body.description)
    return JSONResponse({**source.to_json(), "callback_url": url}, status_code=201)


async def list_sources(request: Request) -> JSONResponse:
    """``{"data": [source, ...]}``; callback tokens are never shown again."""
    res = resources(request)
    limit = query_limit(request)
    rows = await res.store.list_sources(limit=limit + 1, after=query_cursor(request))
    return JSONResponse(page(rows, limit, lambda r: (r.created_at, r.id)))


async def get_source(request: Request) -> JSONResponse:
    """One source; 404 if unknown."""
    res = resources(request)
    source_id = request.path_params["id"]
    source = await res.store.get_source(source_id)
    return JSONResponse(source.to_json())


routes = [
    Route("/v1/sources", create_source, methods=["POST"]),
    Route("/v1/sources", list_sources, methods=["GET"]),
    Route("/v1/sources/{id}", get_source, methods=["GET"]),
]
