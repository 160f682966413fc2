"""``POST /v1/jobs``, ``GET /v1/jobs``, ``GET /v1/jobs/{id}``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dispatch.model import JobState
from receiver.api.common import BODY_PREVIEW_BYTES, parse_json, query_choice, query_limit, resources
from receiver.vendors import ADAPTERS


class JobCreate(BaseModel):
    """``{"vendor": "apixo", "params": {...}, "reference": "order-42"}``."""

    model_config = ConfigDict(extra="forbid")
    vendor: str = Field(min_length=1, max_length=64)
    params: dict[str, Any]
    reference: str | None = Field(default=None, max_length=256)


async def create_job(request: Request) -> JSONResponse:
    """Submit a job: 202 with the job (already terminal for Artnex, or ``failed`` with the vendor's
    error); 422 for bad params before any vendor call; 404 for an unknown vendor."""
    res = resources(request)
    body = await parse_json(request, JobCreate)
    job = await res.submitter.create_job(body.vendor, body.params, body.reference)
    return JSONResponse(job.to_json(), status_code=202)


async def list_jobs(request: Request) -> JSONResponse:
    """Newest jobs first; filters ``vendor``, ``status``, ``limit``. An unknown vendor or status is a 422."""
    res = resources(request)
    limit = query_limit(request)
    vendor = query_choice(request, "vendor", ADAPTERS)
    status = query_choice(request, "status", (state.value for state in JobState))
    jobs = await res.store.list_jobs(vendor=vendor, status=status, limit=limit)
    return JSONResponse({"data": [j.to_json() for j in jobs]})


async def get_job(request: Request) -> JSONResponse:
    """One job with its inbound messages (each body cut at 8 KiB, whole at its ``body_url``) and
    events."""
    res = resources(request)
    detail = await res.store.job_detail(request.path_params["id"], body_prefix=BODY_PREVIEW_BYTES, limit=500)
    return JSONResponse(detail.to_json())


routes = [
    Route("/v1/jobs", create_job, methods=["POST"]),
    Route("/v1/jobs", list_jobs, methods=["GET"]),
    Route("/v1/jobs/{id}", get_job, methods=["GET"]),
]
