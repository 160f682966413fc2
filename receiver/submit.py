"""Job submission: validate the client's params, commit the job with its submit pending in an outbox,
then send the vendor request over httpx — at once, and again from the worker when it must be retried.

What an answer means (issue 9; VENDORS.md and the seeds for each vendor's guidance):

- accepted: the vendor job id is stored (``job.queued``), as is any state the answer carries;
- refused (a 4xx other than 408/429, or a 429 the vendor says cannot pass, Artnex's daily quota):
  the job fails with the vendor's code, once and for good;
- not taken (429, 408, no connection), or a status the vendor's page says to retry (APIXO's 500, 502
  and 504, seed 003: "Retry with backoff"; ``adapter.submit_retry_statuses``): sent again after
  ``Retry-After`` or an exponential, jittered backoff (``RELAY_SUBMIT_BACKOFF``, 10 s, doubling up to
  300 s) until ``RELAY_SUBMIT_RETRY_FOR`` seconds after the job was created, then the job fails with the
  last code. Every attempt is counted (``submit_attempts``);
- ambiguous (timeout, connection lost after sending, any other 5xx, an unreadable 2xx): the vendor may
  have the job. Idempotent vendors (Apiframe's ``Idempotency-Key``) get the same request again; others
  are never re-sent (that could charge twice): the job keeps waiting, flagged
  ``submit_outcome_unknown``, for a callback on its URL (the token proves it is this job's) until
  ``RELAY_JOB_TIMEOUT`` fails it with ``vendor_timeout``. Artnex answers synchronously, so there is
  nothing to wait for: the job fails at once with ``outcome_unknown`` (credits may have been spent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from dispatch.errors import PayloadError, StoreUnavailable, UpstreamError, ValidationFailed
from dispatch.model import EventType, JobError, JobState, JobUpdate, new_id
from dispatch.store.face import Store
from dispatch.store.records import IngestResult, Job, RawMessage
from receiver import vendor_text
from receiver.caps import check_output_count
from receiver.metrics import RelayMetrics, observe_result
from receiver.poller import deadline_at, first_poll_at
from receiver.settings import Settings
from receiver.tokens import callback_url, new_token, scrub
from receiver.vendor_client import VendorClient
from receiver.vendors import ADAPTERS, get_adapter
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


log = logging.getLogger("upscale_relay.submit")

MAX_BACKOFF = 300.0  # seconds
IDEMPOTENCY_WINDOW_MS = 24 * 3_600_000  # an Idempotency-Key returns its job for 24 h
AMBIGUOUS = ("vendor_timeout", "vendor_connection_lost", "vendor_response_too_large")


class Submitter:
    """Sends jobs to vendors: the first attempt inline with ``POST /v1/jobs``, retries from
    :meth:`run` (the worker). One per process, sharing its vendor client and store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        vendors: VendorClient,
        *,
        on_event: Callable[[], None] = lambda: None,
        concurrency: int = 8,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.vendors = vendors
        self.on_event = on_event
        self.metrics = metrics if metrics is not None else RelayMetrics()
        self.concurrency = concurrency
        self.worker_id = new_id("submitter")
        # a submit in flight renews its lease every third of it (see _keep_lease), so a process that
        # dies mid-send frees the submit within RELAY_LEASE_SECONDS
        self.lease_ms = int(settings.lease_seconds * 1000)
        self._tasks: set[asyncio.Task[Job]] = set()
        self._wake = asyncio.Event()

    async def create_job(
        self,
        vendor: str,
        params: dict[str, Any],
        reference: str | None,
        *,
        idempotency_key: str | None = None,
    ) -> tuple[Job, bool]:
        """Validate and commit one job with its submit pending, then try the submit at once; returns
        ``(job, replayed)``. With ``idempotency_key``, a job already created for that key and the
        same request in the last 24 h is returned as is (``replayed``), never submitted twice.

        Returns the job as stored once the first attempt ended (accepted, refused, or waiting to be
        retried), or — when that takes more than ``RELAY_SUBMIT_INLINE_WAIT`` seconds — the job still
        ``queued`` with ``submit_pending: true`` while the attempt goes on in the background. Raises
        :class:`NotFound` (unknown vendor), :class:`ValidationFailed` (bad params or a callback URL
        the vendor refuses, before anything is stored), :class:`NotConfigured` (no credential).
        Vendor failures do not raise: the returned job is ``failed`` with the vendor's error.
        """
        adapter = get_adapter(vendor)
        model = validate_params(adapter, params)
        self.vendors.credential(adapter)  # NotConfigured before anything is stored
        check_callback_url(self.settings, adapter)
        token, token_hash = (None, None) if adapter.synchronous else new_token()
        stored_params = model.model_dump(mode="json", exclude_unset=True)
        if idempotency_key is None:
            job = await self.store.create_job(
                vendor,
                stored_params,
                reference=reference,
                token_hash=token_hash,
                token=token,
                submit=True,
                submit_lease_ms=self.lease_ms,
            )
        else:
            request_hash = hashlib.sha256(
                json.dumps([vendor, stored_params, reference], sort_keys=True).encode()
            ).hexdigest()
            job, created = await self.store.create_idempotent_job(
                vendor,
                stored_params,
                reference=reference,
                token_hash=token_hash,
                token=token,
                submit_lease_ms=self.lease_ms,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                window_ms=IDEMPOTENCY_WINDOW_MS,
            )
            if not created:
                return job, True
        task = asyncio.create_task(self.attempt(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.settings.submit_inline_wait), False
        except TimeoutError:
            return await self.store.get_job(job.id), False

    async def attempt(self, job: Job, interrupted: bool = False) -> Job:
        """One submit attempt for a claimed ``job``; returns the job afterwards. Never raises for
        vendor trouble (see the module docstring for what each answer does); raises
        :class:`StoreUnavailable` when the outcome cannot be stored (the lease then expires and the
        submit is claimed again)."""
        adapter = ADAPTERS[job.vendor]
        if interrupted and not adapter.idempotent_submit:
            message = "an earlier submit was cut off mid-send (the process stopped); not sent again"
            self.metrics.submit(job.vendor, "unknown", None)
            return await self._unknown(job, adapter, "vendor_connection_lost", message)
        model = adapter.params_model.model_validate(job.params)
        token = await self.store.callback_token(job.id)
        url = None if token is None else callback_url(self.settings.public_url, job.vendor, token)
        request = adapter.submit_request(model, callback_url=url, job_id=job.id)
        started = time.perf_counter()
        keeper = asyncio.create_task(self._keep_lease(job.id))
        try:
            response = await self.vendors.send_once(adapter, request)
            result = vendor_text.parse_submit_response(
                adapter, response.status_code, response.content, response.headers
            )
            if result.vendor_job_id is not None:
                check_job_id(adapter, result.vendor_job_id)
        except UpstreamError as exc:
            self.metrics.submit(job.vendor, submit_outcome(adapter, exc), time.perf_counter() - started)
            return await self._after_error(job, adapter, exc)
        except PayloadError as exc:  # a 2xx the relay cannot read: the vendor probably has the job
            self.metrics.submit(job.vendor, "unknown", time.perf_counter() - started)
            message = (
                f"{adapter.name} accepted the submit with an answer the relay cannot read: {exc.message}"
            )
            return await self._unknown(job, adapter, "vendor_invalid_response", message)
        finally:
            keeper.cancel()
        self.metrics.submit(job.vendor, "accepted", time.perf_counter() - started)
        log.info(
            "submitted %s to %s as %s in %d ms",
            job.id,
            job.vendor,
            result.vendor_job_id,
            (time.perf_counter() - started) * 1000,
        )
        return await self._accepted(job, result, response)

    async def _after_error(self, job: Job, adapter: VendorAdapter, exc: UpstreamError) -> Job:
        outcome = submit_outcome(adapter, exc)
        if outcome == "retry":
            return await self._retry_later(job, exc)
        if outcome == "unknown":
            return await self._unknown(job, adapter, exc.code, exc.message)
        log.warning(
            "%s submit of %s refused: %s %s",
            job.vendor,
            job.id,
            exc.code,
            exc.message,
            extra=_fields(job, exc.code, "refused"),
        )
        return await self._fail(job, exc.code, exc.message)

    async def _retry_later(self, job: Job, exc: UpstreamError) -> Job:
        now = time.time()
        if now - job.created_at / 1000 >= self.settings.submit_retry_for:
            message = f"{exc.message} (still failing after {self.settings.submit_retry_for:g} s of retries)"
            log.warning(
                "%s submit of %s gave up: %s",
                job.vendor,
                job.id,
                message,
                extra=_fields(job, exc.code, "gave_up"),
            )
            return await self._fail(job, exc.code, message)
        delay = submit_backoff(self.settings.submit_backoff, job.submit_attempts, exc.retry_after)
        at, reason = int((now + delay) * 1000), f"{exc.code}: {exc.message}"[:500]
        log.warning(
            "%s submit of %s: %s; next try in %.1f s",
            job.vendor,
            job.id,
            reason,
            delay,
            extra={**_fields(job, exc.code, "retry"), "retry_in_seconds": round(delay, 3)},
        )
        return await self.store.retry_submit_at(job.id, at, reason)

    async def _unknown(self, job: Job, adapter: VendorAdapter, code: str, message: str) -> Job:
        if adapter.synchronous:  # the answer was the outcome; there is no callback to wait for
            log.warning(
                "%s submit of %s has an unknown outcome: %s; failing it",
                job.vendor,
                job.id,
                message,
                extra=_fields(job, code, "unknown"),
            )
            return await self._fail(
                job, "outcome_unknown", f"{message}; the credits for this call may have been spent"
            )
        log.warning(
            "%s submit of %s has an unknown outcome: %s",
            job.vendor,
            job.id,
            message,
            extra=_fields(job, code, "unknown"),
        )
        deadline = deadline_at(self.settings, job.created_at / 1000)
        note = f"{code}: {message}; waiting for the vendor's callback until the job's deadline"
        raw = RawMessage({}, note.encode(), "vendor")
        await self.store.record_message(job.id, "response", raw, None, verdict="outcome_unknown", error=note)
        return await self.store.end_submit(job.id, outcome_unknown=True, poll_at=deadline)

    async def _accepted(self, job: Job, result: SubmitResult, response: httpx.Response) -> Job:
        now = time.time()
        poll_at = first_poll_at(self.settings, job.vendor, now) if result.vendor_job_id else None
        deadline = deadline_at(self.settings, now)
        before = job
        price = ADAPTERS[job.vendor].price  # what the vendor bills per accepted submit, if fixed
        job = await self.store.mark_submitted(
            job.id, result.vendor_job_id, poll_at=poll_at, deadline_at=deadline, cost=price
        )
        if before.sequence == 0 and job.sequence > 0 and job.status is JobState.QUEUED:
            self.metrics.emitted([EventType.QUEUED])  # mark_submitted's job.queued
        if result.update is not None:
            raw = scrub(
                RawMessage({k.lower(): v for k, v in response.headers.items()}, response.content, "vendor")
            )
            try:
                check_output_count(result.update, self.settings)
            except PayloadError as exc:  # the submit stands; its answer is kept as invalid, not applied
                recorded = await self.store.record_message(
                    job.id, "response", raw, None, verdict="invalid", error=exc.message
                )
            else:
                recorded = await self.store.record_message(job.id, "response", raw, result.update)
            self._observe(recorded, job)
        self.on_event()
        return await self.store.get_job(job.id)

    async def _fail(self, job: Job, code: str, message: str) -> Job:
        update = JobUpdate(state=JobState.FAILED, raw_state="submit_error", error=JobError(code, message))
        raw = RawMessage({}, message.encode(), "vendor")
        self._observe(await self.store.record_message(job.id, "response", raw, update, error=message), job)
        await self.store.end_submit(job.id)
        self.on_event()
        return await self.store.get_job(job.id)

    def _observe(self, result: IngestResult, before: Job) -> None:
        observe_result(self.metrics, log, result, via="submit", before=before)

    async def _keep_lease(self, job_id: str) -> None:
        """Renew the submit lease every third of ``RELAY_LEASE_SECONDS`` while the exchange runs (an
        LTX ``pollForResult`` answer may take 75 s)."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            with contextlib.suppress(StoreUnavailable):
                await self.store.renew_submit_lease(job_id, until=int(time.time() * 1000) + self.lease_ms)

    def wake(self) -> None:
        """Tell :meth:`run` that a submit became due now (a resubmit)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim due submits (retries, resubmits, submits whose process died) and attempt them,
        until ``stop`` is set; looks every ``RELAY_POLL_INTERVAL`` seconds or when woken."""
        while not stop.is_set():
            try:
                due = await self.store.claim_due_submits(
                    now=int(time.time() * 1000), limit=self.concurrency, lease_ms=self.lease_ms
                )
            except StoreUnavailable as exc:
                log.warning("cannot claim submits: %s", exc.message)
                due = []
            if due:
                results = await asyncio.gather(*(self.attempt(j, i) for j, i in due), return_exceptions=True)
                for outcome in results:
                    if isinstance(outcome, BaseException):
                        log.warning("submit attempt failed: %s", outcome)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def drain(self, grace: float) -> None:
        """Give inline attempts still running up to ``grace`` seconds, then cancel them (their leases
        expire and the worker takes the submits over)."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()


def submit_outcome(adapter: VendorAdapter, exc: UpstreamError) -> str:
    """What a vendor error means for a submit (the module docstring): ``retry`` (not taken, a status
    the vendor says to retry, or ambiguous at a vendor with an idempotency key), ``unknown``
    (ambiguous: never re-sent) or ``refused``. Example: APIXO's 502 → ``retry`` (seed 003: "Retry with
    backoff"); Dreamina's 502 → ``unknown``; APIXO's 400 → ``refused``."""
    status = exc.http_status
    not_taken = exc.code == "vendor_unreachable" or status in (408, 429)
    if status == 429 and not exc.retryable:  # e.g. Artnex's daily quota: waiting cannot help
        not_taken = False
    documented = status is not None and status in adapter.submit_retry_statuses
    ambiguous = exc.code in AMBIGUOUS or (status is not None and status >= 500)
    if not_taken or documented or (ambiguous and adapter.idempotent_submit):
        return "retry"
    return "unknown" if ambiguous else "refused"


def _fields(job: Job, code: str, outcome: str) -> dict[str, Any]:
    """A submit warning's structured fields (``extra=``)."""
    return {"job_id": job.id, "vendor": job.vendor, "code": code, "outcome": outcome}


def submit_backoff(base: float, attempts: int, retry_after: float | None) -> float:
    """Seconds before the next submit attempt: the vendor's ``Retry-After`` when given (at most
    300 s), else ``min(300, base * 2^(attempts-1) * j)`` with a jitter factor ``j`` in [1, 1.5), so
    the first delay is never shorter than ``base`` (``RELAY_SUBMIT_BACKOFF``, 10 s).

    Example: ``submit_backoff(10.0, 1, None)`` → 10 to 15 s; ``submit_backoff(10.0, 3, None)`` → 40
    to 60 s; ``submit_backoff(10.0, 1, 30.0)`` → 30.0. Seed 003: "429 | Rate limit or concurrency limit
    reached | Retry with exponential backoff", "500 | ... | Retry with backoff".
    """
    if retry_after is not None and retry_after >= 0:
        return min(float(retry_after), MAX_BACKOFF)
    return min(MAX_BACKOFF, base * 2.0 ** min(max(attempts - 1, 0), 30) * random.uniform(1.0, 1.5))


def check_callback_url(settings: Settings, adapter: VendorAdapter) -> None:
    """Refuse a submit the vendor would refuse for its callback URL: APIXO takes only a public HTTPS
    ``callback_url`` (seed 003), so with APIXO's real base URL and a non-https ``RELAY_PUBLIC_URL``
    this raises :class:`ValidationFailed` with code ``callback_url_not_https``. Against any other
    base URL (a fake, a proxy) it is only :func:`callback_url_warnings`' start-up warning."""
    if (
        adapter.name == "apixo"
        and not settings.public_url.startswith("https://")
        and settings.vendor_base_url(adapter.base_url_setting) == APIXO_REAL_BASE_URL
    ):
        raise ValidationFailed(
            f"APIXO refuses callback URLs that are not HTTPS, and RELAY_PUBLIC_URL is {settings.public_url}:"
            " set RELAY_PUBLIC_URL to the relay's public https:// address",
            code="callback_url_not_https",
        )


APIXO_REAL_BASE_URL = "https://api.apixo.ai"


def callback_url_warnings(settings: Settings) -> list[str]:
    """Start-up warnings about callback URLs vendors will refuse, e.g. ``["APIXO requires an https
    callback_url; RELAY_PUBLIC_URL is http://127.0.0.1:8000, so APIXO submits ..."]``."""
    if settings.public_url.startswith("https://") or settings.apixo_api_key is None:
        return []
    real = settings.vendor_base_url("apixo_base_url") == APIXO_REAL_BASE_URL
    consequence = (
        "every APIXO submit will fail with callback_url_not_https"
        if real
        else ("the real APIXO would refuse it (this base URL is not APIXO's, so submits are sent anyway)")
    )
    return [
        f"APIXO requires a public https callback_url; RELAY_PUBLIC_URL is {settings.public_url}: {consequence}"
    ]
