"""``POST /v1/jobs``, ``GET /v1/jobs``, ``GET /v1/jobs/{id}``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dispatch.errors import ValidationFailed
from dispatch.model import JobState
from receiver import operations
from receiver.api.common import (
    page,
    parse_json,
    query_choice,
    query_cursor,
    query_limit,
    resources,
)
from receiver.vendors import ADAPTERS


class JobCreate(BaseModel):
    """``{"vendor": "apixo", "params": {...}, "reference": "order-42"}``."""

    model_config = ConfigDict(extra="forbid")
    vendor: str = Field(min_length=1, max_length=64)
    params: dict[str, Any]
    reference: str | None = Field(default=None, max_length=256)


async def create_job(request: Request) -> JSONResponse:
    """Submit a job: 202 with the job (already terminal for Artnex, or ``failed`` with the vendor's
    error); 422 for bad params before any vendor call; 404 for an unknown vendor.

    With an ``Idempotency-Key`` header (1-255 printable ASCII characters) the same key within 24 h
    returns the original job with 200 and ``Idempotent-Replayed: true`` and never submits again (also
    when both requests arrive at once); the same key with a different body is a 422.
    """
    res = resources(request)
    body = await parse_json(request, JobCreate)
    key = idempotency_key(request)
    job, replayed = await res.submitter.create_job(
        body.vendor, body.params, body.reference, idempotency_key=key
    )
    if replayed:
        return JSONResponse(job.to_json(), status_code=200, headers={"Idempotent-Replayed": "true"})
    return JSONResponse(job.to_json(), status_code=202)


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header, or ``None``. Raises :class:`ValidationFailed` for an empty,
    over-long (255) or non-printable-ASCII key."""
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    if not 1 <= len(raw) <= 255 or not all(32 < ord(c) < 127 for c in raw):
        raise ValidationFailed(
            "Idempotency-Key: must be 1 to 255 printable ASCII characters without spaces",
            details=[{"field": "Idempotency-Key", "message": "1-255 printable ASCII characters"}],
        )
    return raw


async def list_jobs(request: Request) -> JSONResponse:
    """Newest jobs first; filters ``vendor``, ``status``, ``limit``. An unknown vendor or status is a 422."""
    res = resources(request)
    limit = query_limit(request)
    vendor = query_choice(request, "vendor", ADAPTERS)
    status = query_choice(request, "status", (state.value for state in JobState))
    jobs = await res.store.list_jobs(
        vendor=vendor, status=status, limit=limit + 1, after=query_cursor(request)
    )
    listed = page(jobs, limit, lambda j: (j.created_at, j.id))
    if res.mirror is not None:
        for job in listed["data"]:
            res.mirror.sign_outputs(job["id"], job["outputs"])
    return JSONResponse(listed)


async def get_job(request: Request) -> JSONResponse:
    """One job with its inbound messages (each body cut at 8 KiB, whole at its ``body_url``) and
    events."""
    res = resources(request)
    detail = await operations.job_detail(res.store, request.path_params["id"])
    shown = detail.to_json()
    if res.mirror is not None:  # mirror URLs signed now, not the stored ones (which expire)
        res.mirror.sign_outputs(shown["id"], shown["outputs"])
    return JSONResponse(shown)


routes = [
    Route("/v1/jobs", create_job, methods=["POST"]),
    Route("/v1/jobs", list_jobs, methods=["GET"]),
    Route("/v1/jobs/{id}", get_job, methods=["GET"]),
]
