"""``GET /v1/stats``: vendors compared by numbers (:func:`receiver.operations.vendor_stats`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import operations
from receiver.api.common import query_time, resources


async def vendor_stats(request: Request) -> JSONResponse:
    """Per vendor, for jobs created (and vendor messages received) in [``since``, ``until``)
    (ISO-8601; either may be left out): jobs by state and success rate, the top 10 failure codes,
    seconds from submit to terminal state (p50, p95, p99), how outcomes arrived (callback, poll, the
    submit's response, or the relay's own submit failure or timeout) and the share of lost callbacks,
    duplicate and stale callbacks, signature rejections, submit errors by code, submit attempts and
    resubmits, and spend per unit as the vendor bills it (with what went to resubmits and to results
    nobody received) beside its estimates. ``vendor`` narrows it to one vendor. 422 for a malformed
    time, an unknown vendor, or ``since`` after ``until``."""
    since, until = query_time(request, "since"), query_time(request, "until")
    vendor = request.query_params.get("vendor")
    report = await operations.vendor_stats(resources(request).store, since=since, until=until, vendor=vendor)
    return JSONResponse(report.to_json())


routes = [Route("/v1/stats", vendor_stats, methods=["GET"])]
