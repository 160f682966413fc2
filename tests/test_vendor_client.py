"""The vendor HTTP client against a real loopback server: answers are read up to the body limit,
compressed answers are decoded, and an oversized answer is a clear error rather than a memory spike;
between tries it waits the vendor's ``Retry-After`` (seconds or HTTP-date), capped."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

import fixtures
from dispatch.errors import UpstreamError
from dispatch.model import JobState, JobUpdate
from fixtures.harness import RunningServer, serve_in_thread
from receiver.settings import load_settings
from receiver.vendor_client import MAX_BACKOFF, VendorClient, backoff
from receiver.vendors import ADAPTERS

PAYLOADS = fixtures.PAYLOADS / "apixo"
LIMIT = 64 * 1024


async def _status(request: Request) -> Response:
    """APIXO's status endpoint; ``taskId`` picks the answer: ``huge`` streams 1 MiB, ``gzip``
    compresses the success fixture, anything else gets the plain success fixture."""
    task = request.query_params["taskId"]
    body = (PAYLOADS / "status_success.json").read_bytes()
    if task == "huge":

        async def stream() -> AsyncIterator[bytes]:
            yield b'{"code": 200, "data": {"taskId": "huge", "state": "success", "resultJson": "'
            for _ in range(16):
                yield b"x" * 65_536
            yield b'"}}'

        return StreamingResponse(stream(), media_type="application/json")
    if task == "gzip":
        return Response(
            gzip.compress(body), headers={"Content-Encoding": "gzip"}, media_type="application/json"
        )
    return Response(body, media_type="application/json")


@pytest.fixture(scope="module")
def vendor() -> Iterator[RunningServer]:
    app = Starlette(routes=[Route("/api/v1/statusTask/image-upscaler", _status)])
    with serve_in_thread(app) as server:
        yield server


def _fetch(vendor: RunningServer, task: str) -> tuple[JobUpdate, httpx.Response]:
    settings = load_settings(apixo_api_key="k", apixo_base_url=vendor.url, max_body_bytes=LIMIT)

    async def run() -> tuple[JobUpdate, httpx.Response]:
        async with httpx.AsyncClient() as client:
            return await VendorClient(settings, client).fetch_status(ADAPTERS["apixo"], task)

    return asyncio.run(run())


def test_an_answer_over_the_body_limit_is_refused_unread(vendor: RunningServer) -> None:
    """A 1 MiB status answer against a 64 KiB limit raises ``vendor_response_too_large``, naming the
    limit and its variable, and is not retried (the error is not ``retryable``)."""
    with pytest.raises(UpstreamError) as caught:
        _fetch(vendor, "huge")
    assert caught.value.code == "vendor_response_too_large" and caught.value.retryable is False
    assert "65536-byte limit" in caught.value.message and "RELAY_MAX_BODY_BYTES" in caught.value.message


@pytest.mark.parametrize("task", ["plain", "gzip"])
def test_answers_are_parsed_whether_compressed_or_not(vendor: RunningServer, task: str) -> None:
    """A gzip-compressed answer is decoded before parsing, and the returned response describes the
    decoded body (no ``content-encoding`` left to mislead whoever stores it)."""
    update, response = _fetch(vendor, task)
    assert update.state is JobState.SUCCEEDED
    assert "content-encoding" not in response.headers
    assert response.content == (PAYLOADS / "status_success.json").read_bytes()


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, "7", 7.0),  # the vendor's delay-seconds
        (1, "3600", MAX_BACKOFF),  # capped
        (3, None, 2.0),  # 0.5 * 2^(attempt-1) without a header
        (2, "soon", 1.0),  # garbage: as without a header
        (2, "1.5", 1.0),  # not delay-seconds either
        (9, None, MAX_BACKOFF),
    ],
)
def test_backoff_honours_retry_after_within_the_cap(
    attempt: int, retry_after: str | None, expected: float
) -> None:
    """Between tries the client waits the vendor's ``Retry-After`` (at most 30 s), else doubles from 0.5 s."""
    assert backoff(attempt, retry_after) == expected


def test_backoff_reads_an_http_date() -> None:
    """A ``Retry-After`` HTTP-date (RFC 9110) counts from now, like delay-seconds, and is capped too."""
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    assert 15 <= backoff(1, soon) <= 20
    assert backoff(1, later) == MAX_BACKOFF
