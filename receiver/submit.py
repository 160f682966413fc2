"""Job submission: validate the client's params, create the job, send the vendor request over httpx.

Vendor errors become job outcomes (the job fails with the vendor's code and message and emits
``job.failed``); 429 and 5xx are retried a bounded number of times honouring ``Retry-After``; a
timeout with an unknown outcome is only re-sent to vendors whose submit is idempotent (Apiframe's
``Idempotency-Key``), otherwise the job fails with ``vendor_timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from dispatch.errors import PayloadError, UpstreamError, ValidationFailed
from dispatch.model import JobError, JobState, JobUpdate
from dispatch.store.records import Job, RawMessage
from dispatch.store.runner import StoreRunner
from receiver.poller import deadline_at, first_poll_at
from receiver.settings import Settings
from receiver.tokens import callback_url, new_token, scrub
from receiver.vendor_client import VendorClient
from receiver.vendors import get_adapter
from receiver.vendors.base import SubmitResult, VendorAdapter, check_job_id


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
    """Sends jobs to vendors. One per app, sharing the app's vendor client and store runner."""

    def __init__(
        self,
        settings: Settings,
        runner: StoreRunner,
        vendors: VendorClient,
        *,
        on_event: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.vendors = vendors
        self.on_event = on_event

    async def create_job(self, vendor: str, params: dict[str, Any], reference: str | None) -> Job:
        """Validate, store and submit one job; returns the job as stored afterwards.

        Raises :class:`NotFound` (unknown vendor), :class:`ValidationFailed` (bad params, before any
        vendor call), :class:`NotConfigured` (no credential for the vendor). Vendor failures do not
        raise: the returned job is ``failed`` with the vendor's error.
        """
        adapter = get_adapter(vendor)
        model = validate_params(adapter, params)
        self.vendors.credential(adapter)  # NotConfigured before anything is stored
        token, token_hash = (None, None) if adapter.synchronous else new_token()
        stored_params = model.model_dump(mode="json", exclude_unset=True)
        job = await self.runner.call(
            lambda s: s.create_job(vendor, stored_params, reference=reference, token_hash=token_hash)
        )
        url = None if token is None else callback_url(self.settings.public_url, vendor, token)
        request = adapter.submit_request(model, callback_url=url, job_id=job.id)
        try:
            response = await self.vendors.send(
                adapter, request, safe_to_repeat=adapter.idempotent_submit, retryable=_retryable(adapter)
            )
            result = adapter.parse_submit_response(response.status_code, response.content, response.headers)
            if result.vendor_job_id is not None:
                check_job_id(adapter, result.vendor_job_id)
        except UpstreamError as exc:
            return await self._fail(job, exc.code, exc.message, exc.details)
        except PayloadError as exc:
            return await self._fail(job, "vendor_invalid_response", exc.message, None)
        return await self._accepted(job, result, response)

    async def _accepted(self, job: Job, result: SubmitResult, response: httpx.Response) -> Job:
        now = time.time()
        poll_at = first_poll_at(self.settings, job.vendor, now) if result.vendor_job_id else None
        deadline = deadline_at(self.settings, now)
        job = await self.runner.call(
            lambda s: s.mark_submitted(job.id, result.vendor_job_id, poll_at=poll_at, deadline_at=deadline)
        )
        if result.update is not None:
            raw = scrub(
                RawMessage({k.lower(): v for k, v in response.headers.items()}, response.content, "vendor")
            )
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


def _retryable(adapter: VendorAdapter) -> Callable[[httpx.Response], bool]:
    """Whether a 429/5xx submit answer may be sent again: the adapter's reading of it decides."""

    def check(response: httpx.Response) -> bool:
        try:
            adapter.parse_submit_response(response.status_code, response.content, response.headers)
        except UpstreamError as exc:
            return exc.retryable
        except PayloadError:
            return False
        return False

    return check
