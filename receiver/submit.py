"""Job submission: validate the client's params, create the job, send the vendor request over httpx.

Vendor errors become job outcomes (the job fails with the vendor's code and message and emits
``job.failed``); 429 and 5xx are retried a bounded number of times honouring ``Retry-After``; a
timeout with an unknown outcome is only re-sent to vendors whose submit is idempotent (Apiframe's
``Idempotency-Key``), otherwise the job fails with ``vendor_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from dispatch.errors import NotConfigured, PayloadError, UpstreamError, ValidationFailed
from dispatch.model import JobError, JobState, JobUpdate
from dispatch.store.records import Job, RawMessage
from dispatch.store.runner import StoreRunner
from receiver.settings import Settings
from receiver.tokens import new_token
from receiver.vendors import get_adapter
from receiver.vendors.base import SubmitResult, VendorAdapter, VendorRequest

SUBMIT_TRIES = 4
MAX_BACKOFF = 30.0  # seconds


def validation_details(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic errors as ``[{"field": "params.input.resolution", "message": "..."}]``."""
    return [
        {"field": prefix + ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors()
    ]


def validate_params(adapter: VendorAdapter, params: dict[str, Any]) -> BaseModel:
    """The vendor's strict request model for ``params``.

    Raises :class:`ValidationFailed` naming the first bad field, e.g.
    ``params.replyUrl: set by the relay, do not send it`` or ``params.imageIndex: ...``.
    """
    for name in sorted(adapter.reserved_fields & set(params)):
        raise ValidationFailed(
            f"params.{name}: set by the relay, do not send it",
            details=[{"field": f"params.{name}", "message": "callback fields belong to the relay"}],
        )
    try:
        return adapter.params_model.model_validate(params)
    except ValidationError as exc:
        details = validation_details(exc, "params.")
        raise ValidationFailed(f"{details[0]['field']}: {details[0]['message']}", details=details) from None


class Submitter:
    """Sends jobs to vendors. One per app, sharing the app's httpx client and store runner.

    ``sleep`` is injectable so tests can turn backoff waits off.
    """

    def __init__(
        self,
        settings: Settings,
        runner: StoreRunner,
        client: httpx.AsyncClient,
        *,
        on_event: Callable[[], None] = lambda: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.client = client
        self.on_event = on_event
        self.sleep = sleep

    async def create_job(self, vendor: str, params: dict[str, Any], reference: str | None) -> Job:
        """Validate, store and submit one job; returns the job as stored afterwards.

        Raises :class:`NotFound` (unknown vendor), :class:`ValidationFailed` (bad params, before any
        vendor call), :class:`NotConfigured` (no credential for the vendor). Vendor failures do not
        raise: the returned job is ``failed`` with the vendor's error.
        """
        adapter = get_adapter(vendor)
        model = validate_params(adapter, params)
        credential = self.settings.vendor_credential(adapter.credential_setting)
        if credential is None:
            raise NotConfigured(
                f"vendor {vendor} is not configured: set RELAY_{adapter.credential_setting.upper()}"
            )
        token, token_hash = (None, None) if adapter.synchronous else new_token()
        stored_params = model.model_dump(mode="json", exclude_unset=True)
        job = await self.runner.call(
            lambda s: s.create_job(vendor, stored_params, reference=reference, token_hash=token_hash)
        )
        callback_url = None if token is None else f"{self.settings.public_url}/v1/callbacks/{vendor}/{token}"
        request = adapter.submit_request(model, callback_url=callback_url, job_id=job.id)
        try:
            response = await self._send(adapter, request, credential)
            result = adapter.parse_submit_response(response.status_code, response.content, response.headers)
        except UpstreamError as exc:
            return await self._fail(job, exc.code, exc.message, exc.details)
        except PayloadError as exc:
            return await self._fail(job, "vendor_invalid_response", exc.message, None)
        return await self._accepted(job, result, response)

    async def _accepted(self, job: Job, result: SubmitResult, response: httpx.Response) -> Job:
        job = await self.runner.call(lambda s: s.mark_submitted(job.id, result.vendor_job_id))
        if result.update is not None:
            raw = RawMessage({k.lower(): v for k, v in response.headers.items()}, response.content, "vendor")
            update = result.update
            await self.runner.call(lambda s: s.record_message(job.id, "response", raw, update))
        self.on_event()
        return await self.runner.call(lambda s: s.get_job(job.id))

    async def _fail(self, job: Job, code: str, message: str, details: Any) -> Job:
        update = JobUpdate(state=JobState.FAILED, raw_state="submit_error", error=JobError(code, message))
        raw = RawMessage({}, message.encode(), "vendor")
        await self.runner.call(lambda s: s.record_message(job.id, "response", raw, update, error=message))
        self.on_event()
        return await self.runner.call(lambda s: s.get_job(job.id))

    async def _send(self, adapter: VendorAdapter, request: VendorRequest, credential: str) -> httpx.Response:
        base = self.settings.vendor_base_url(adapter.base_url_setting)
        headers = {**adapter.auth_headers(credential), **request.headers}
        for attempt in range(1, SUBMIT_TRIES + 1):
            try:
                response = await self.client.request(
                    request.method,
                    base + request.path,
                    json=request.json,
                    params=request.query,
                    headers=headers,
                    timeout=self.settings.vendor_timeout,
                )
            except httpx.TimeoutException:
                if adapter.idempotent_submit and attempt < SUBMIT_TRIES:
                    await self.sleep(_backoff(attempt, None))
                    continue
                raise UpstreamError(
                    f"{adapter.name} did not answer within {self.settings.vendor_timeout:g} s; the vendor may"
                    " have started (and charged) the job, so it was not submitted again",
                    code="vendor_timeout",
                ) from None
            except httpx.ConnectError as exc:  # nothing reached the vendor: safe to try again
                if attempt < SUBMIT_TRIES:
                    await self.sleep(_backoff(attempt, None))
                    continue
                raise UpstreamError(
                    f"cannot reach {adapter.name}: {exc}", code="vendor_unreachable"
                ) from None
            except httpx.HTTPError as exc:
                raise UpstreamError(
                    f"{adapter.name} request failed: {exc}", code="vendor_unreachable"
                ) from None
            if (response.status_code == 429 or response.status_code >= 500) and attempt < SUBMIT_TRIES:
                await self.sleep(_backoff(attempt, response.headers.get("retry-after")))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds before submit try ``attempt + 1``: ``Retry-After`` if given (capped), else 0.5 * 2^(n-1)."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after.strip()), MAX_BACKOFF)
    return min(0.5 * 2.0 ** (attempt - 1), MAX_BACKOFF)
