"""Talking to vendors over httpx: one place for base URLs, auth, timeouts and bounded retries.

Used by job submission, the polling fallback and callback confirmation. 429 and 5xx answers are
retried (honouring ``Retry-After``, capped); a connection that never opened is retried; a timeout is
retried only when the request is safe to repeat (status reads, Apiframe's idempotent submit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx

from dispatch.errors import NotConfigured, UpstreamError
from dispatch.model import JobUpdate
from dispatch.retry import parse_retry_after
from receiver import vendor_text
from receiver.settings import Settings
from receiver.vendors.base import VendorAdapter, VendorRequest

TRIES = 4
_ENCODED_FORM = frozenset({"content-encoding", "content-length", "transfer-encoding"})
MAX_BACKOFF = 30.0  # seconds


class VendorClient:
    """Sends :class:`VendorRequest` objects to vendors. ``sleep`` is injectable (tests turn waits off).

    Example: ``update = await VendorClient(settings, client).fetch_status(ADAPTER, "task_1")``.
    """

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.client = client
        self.sleep = sleep

    def credential(self, adapter: VendorAdapter) -> str:
        """The vendor's credential. Raises :class:`NotConfigured` naming the variable to set."""
        value = self.settings.vendor_credential(adapter.credential_setting)
        if value is None:
            raise NotConfigured(
                f"vendor {adapter.name} is not configured: set RELAY_{adapter.credential_setting.upper()}"
            )
        return value

    async def send(
        self,
        adapter: VendorAdapter,
        request: VendorRequest,
        *,
        safe_to_repeat: bool,
        retryable: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send ``request`` with the vendor's auth; returns the final response (any status).

        A 429 or 5xx answer is sent again (up to :data:`TRIES` tries) unless ``retryable`` says
        otherwise for that response (Artnex's 429 is a daily quota: trying again cannot help).

        Raises :class:`UpstreamError` with code ``vendor_timeout`` (no answer in
        ``RELAY_VENDOR_TIMEOUT`` seconds and not safe to repeat — the vendor may have started and
        charged the job), ``vendor_unreachable`` (no connection after :data:`TRIES` tries) or
        ``vendor_response_too_large`` (an answer over ``RELAY_MAX_BODY_BYTES``, not retried).
        """
        base = self.settings.vendor_base_url(adapter.base_url_setting)
        headers = {**adapter.auth_headers(self.credential(adapter)), **request.headers}
        for attempt in range(1, TRIES + 1):
            last = attempt == TRIES
            try:
                response = await self._request(adapter, request, base, headers)
            except httpx.TimeoutException:
                if safe_to_repeat and not last:
                    await self.sleep(backoff(attempt, None))
                    continue
                raise UpstreamError(
                    f"{adapter.name} did not answer within {self.settings.vendor_timeout:g} s; the vendor may"
                    " have started (and charged) the job, so it was not sent again",
                    code="vendor_timeout",
                ) from None
            except httpx.ConnectError as exc:  # nothing reached the vendor: safe to try again
                if not last:
                    await self.sleep(backoff(attempt, None))
                    continue
                raise UpstreamError(
                    f"cannot reach {adapter.name}: {exc}", code="vendor_unreachable"
                ) from None
            except httpx.HTTPError as exc:
                raise UpstreamError(
                    f"{adapter.name} request failed: {exc}", code="vendor_unreachable"
                ) from None
            again = response.status_code == 429 or response.status_code >= 500
            if again and not last and (retryable is None or retryable(response)):
                await self.sleep(backoff(attempt, response.headers.get("retry-after")))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(
        self, adapter: VendorAdapter, request: VendorRequest, base: str, headers: dict[str, str]
    ) -> httpx.Response:
        """One HTTP exchange, reading at most ``RELAY_MAX_BODY_BYTES`` of the answer (the same cap as
        callbacks: a vendor's answer is stored like one). Raises ``httpx`` errors, and
        :class:`UpstreamError` ``vendor_response_too_large`` for a longer answer."""
        limit = self.settings.max_body_bytes
        async with self.client.stream(
            request.method,
            base + request.path,
            json=request.json,
            params=request.query,
            headers=headers,
            timeout=max(self.settings.vendor_timeout, request.timeout or 0),
        ) as streamed:
            body = bytearray()
            async for chunk in streamed.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise UpstreamError(
                        f"{adapter.name} answered HTTP {streamed.status_code} with a body over the"
                        f" {limit}-byte limit (RELAY_MAX_BODY_BYTES); it was not read",
                        code="vendor_response_too_large",
                        http_status=streamed.status_code,
                    )
        # The body is decoded already: drop the headers that describe its encoded form.
        kept = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _ENCODED_FORM]
        return httpx.Response(
            streamed.status_code, headers=kept, content=bytes(body), request=streamed.request
        )

    async def send_once(self, adapter: VendorAdapter, request: VendorRequest) -> httpx.Response:
        """Send ``request`` exactly once (a submit: the caller decides about retries); returns the
        response whatever its status.

        Raises :class:`UpstreamError` with code ``vendor_unreachable`` when no connection opened
        (nothing reached the vendor: safe to send again), ``vendor_timeout`` (no answer within
        ``max(RELAY_VENDOR_TIMEOUT, request.timeout)`` seconds) or ``vendor_connection_lost`` (the
        exchange broke after sending) — in both the vendor may have the job — and
        ``vendor_response_too_large``. Raises :class:`NotConfigured` without a credential.
        """
        base = self.settings.vendor_base_url(adapter.base_url_setting)
        headers = {**adapter.auth_headers(self.credential(adapter)), **request.headers}
        try:
            return await self._request(adapter, request, base, headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise UpstreamError(f"cannot reach {adapter.name}: {exc}", code="vendor_unreachable") from None
        except httpx.TimeoutException:
            limit = max(self.settings.vendor_timeout, request.timeout or 0)
            raise UpstreamError(
                f"{adapter.name} did not answer within {limit:g} s; the vendor may have started the job",
                code="vendor_timeout",
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"{adapter.name} connection broke after the request was sent: {exc or type(exc).__name__}",
                code="vendor_connection_lost",
            ) from None

    async def fetch_status(
        self, adapter: VendorAdapter, vendor_job_id: str
    ) -> tuple[JobUpdate, httpx.Response]:
        """Ask the vendor for a job's state; returns the parsed update and the raw response.

        Raises :class:`UpstreamError` (vendor error status or unreachable), :class:`PayloadError`
        (unparseable answer), :class:`NotConfigured`, or ``ValueError`` if the vendor has no status
        endpoint (Artnex).
        """
        request = adapter.status_request(vendor_job_id)
        if request is None:
            raise ValueError(f"{adapter.name} has no status endpoint")
        response = await self.send(adapter, request, safe_to_repeat=True)
        return vendor_text.parse_status(adapter, response.status_code, response.content), response


def backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds before try ``attempt + 1``: the ``Retry-After`` header (seconds or an HTTP-date, see
    :func:`dispatch.retry.parse_retry_after`) if it is valid, else ``0.5 * 2^(attempt-1)``; at most
    :data:`MAX_BACKOFF` either way."""
    wait = parse_retry_after(retry_after, time.time(), cap=MAX_BACKOFF)
    return wait if wait is not None else min(0.5 * 2.0 ** (attempt - 1), MAX_BACKOFF)
