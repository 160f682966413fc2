"""The callback pipeline: authenticate, keep the raw message, parse, apply — one path for every vendor.

Callbacks, synchronous responses and polls all end in ``store.record_message``, so the same outcome
arriving twice by different roads gives the same event id and no second event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dispatch.errors import (
    PayloadError,
    RelayError,
    SignatureInvalid,
    UpstreamError,
    ValidationFailed,
    VendorJobMismatch,
)
from dispatch.model import JobUpdate
from dispatch.store.face import Store
from dispatch.store.records import IngestResult, Job, RawMessage, Source
from receiver import vendor_text
from receiver.caps import check_output_count
from receiver.metrics import RelayMetrics, observe_result
from receiver.poller import deadline_at, first_poll_at, next_interval
from receiver.settings import Settings
from receiver.tokens import scrub
from receiver.transient import resubmit_delay, transient_failure
from receiver.vendor_client import VendorClient
from receiver.vendors.base import VendorAdapter, check_job_id

log = logging.getLogger("upscale_relay.ingest")


class Ingest:
    """Turns raw vendor callbacks into stored messages, job updates and events."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        vendors: VendorClient,
        *,
        on_event: Callable[[], None] = lambda: None,
        on_resubmit: Callable[[], None] = lambda: None,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.vendors = vendors
        self.on_event = on_event
        self.on_resubmit = on_resubmit
        self.metrics = metrics if metrics is not None else RelayMetrics()

    def observe(self, vendor: str, before: Job | None, outcome: IngestResult | Exception) -> None:
        """Count one callback by vendor and verdict (``relay_callbacks_total``) and its new events, and
        log the job's state change (INFO); ``outcome`` is what :meth:`job_callback` or
        :meth:`source_callback` returned or raised (``rejected``, ``invalid``, ``mismatch``: stored;
        ``too_many_requests`` and others: nothing stored). ``before`` is the job as it was (``None``
        for a source callback)."""
        if isinstance(outcome, IngestResult):
            self.metrics.callback(vendor, outcome.verdict)
            observe_result(self.metrics, log, outcome, via="callback", before=before)
            return
        if isinstance(outcome, SignatureInvalid):
            verdict = "rejected"
        elif isinstance(outcome, VendorJobMismatch):
            verdict = "mismatch"
        elif isinstance(outcome, PayloadError):
            verdict = "invalid"
        elif isinstance(outcome, RelayError):
            verdict = outcome.code
        else:
            verdict = "error"
        self.metrics.callback(vendor, verdict)

    def _parse(self, adapter: VendorAdapter, raw: RawMessage) -> JobUpdate:
        """Verify and parse; raises :class:`SignatureInvalid` or :class:`PayloadError` only (an
        adapter bug on hostile input is a :class:`PayloadError` too, so the message is still kept;
        so is a message over ``RELAY_MAX_OUTPUTS_PER_JOB``, :func:`receiver.caps.check_output_count`)."""
        adapter.verify_callback(
            raw.body, raw.headers, self.settings.vendor_credential(adapter.credential_setting)
        )
        try:
            update = vendor_text.parse_callback(adapter, raw.body, raw.headers)
        except (SignatureInvalid, PayloadError):
            raise
        except Exception as exc:  # never a 500 for a vendor body: keep it, reprocess it later
            log.exception("%s adapter failed on a callback body", adapter.name)
            raise PayloadError(f"{adapter.name} callback could not be parsed ({type(exc).__name__})") from exc
        if update.vendor_job_id is not None:
            check_job_id(adapter, update.vendor_job_id)
        check_output_count(update, self.settings)
        return update

    async def job_callback(
        self,
        adapter: VendorAdapter,
        job: Job,
        raw: RawMessage,
        *,
        token: str | None = None,
        kind: str = "callback",
    ) -> IngestResult:
        """Verify, record and apply one vendor callback for ``job``.

        The raw message is stored whatever happens (at most ``RELAY_MAX_INBOUND_PER_JOB`` per job).
        Raises, after the store committed: :class:`SignatureInvalid` (stored with verdict
        ``rejected``), :class:`PayloadError` (verdict ``invalid`` with the parse error, reprocessable
        later) or :class:`VendorJobMismatch` (verdict ``mismatch``: the body is about another vendor
        job than this job's, e.g. job A's body posted to job B's URL). Raises
        :class:`TooManyRequests` (nothing stored) past the per-job cap. Returns the store's result,
        whose ``verdict`` is ``applied``, ``duplicate``, ``stale``, ``conflict``, ``unknown_state``
        or ``unconfirmed`` (see :meth:`_confirm`).

        ``token`` is the callback token of the URL the message came on: the signature is checked on
        the bytes as received, and the message is stored with every callback token replaced by
        ``[redacted]`` (:func:`receiver.tokens.scrub`). ``kind`` is ``reprocess`` when an operator
        re-runs a stored callback: the same pipeline, stored as a new message of that kind.
        """
        stored = scrub(raw, token)
        try:
            update = self._parse(adapter, raw)
            if update.vendor_job_id is not None and update.vendor_job_id in job.previous_vendor_job_ids:
                note = f"about vendor job {update.vendor_job_id!r}, replaced by a resubmit; nothing applied"
                cap = self.settings.max_inbound_per_job
                return await self.store.record_message(  # what the replaced vendor job cost still counts
                    job.id,
                    kind,
                    stored,
                    None,
                    verdict="superseded",
                    error=note,
                    max_callbacks=cap,
                    reported=update,
                )
            mismatch(job, update)
        except (SignatureInvalid, PayloadError) as exc:
            await self._reject(job, stored, exc, kind)
            raise
        return await self._apply(adapter, job, stored, update, kind)

    async def _reject(
        self, job: Job, raw: RawMessage, exc: SignatureInvalid | PayloadError, kind: str = "callback"
    ) -> None:
        if isinstance(exc, SignatureInvalid):
            verdict = "rejected"
        else:
            verdict = "mismatch" if isinstance(exc, VendorJobMismatch) else "invalid"
        await self.store.record_message(
            job.id,
            kind,
            raw,
            None,
            verdict=verdict,
            error=exc.message,
            max_callbacks=self.settings.max_inbound_per_job,
        )

    async def source_callback(
        self, adapter: VendorAdapter, source: Source, raw: RawMessage, *, token: str | None = None
    ) -> IngestResult:
        """A callback on a source URL: the job is found (or created on first sight) by the vendor
        job id in the body, then the callback is applied like any other. Raises like
        :meth:`job_callback`; a body without a vendor job id is a :class:`PayloadError`."""
        stored = scrub(raw, token)
        try:
            update = self._parse(adapter, raw)
            if not update.vendor_job_id:
                raise PayloadError(f"{adapter.name} callback carries no job id")
        except (SignatureInvalid, PayloadError) as exc:
            verdict = "rejected" if isinstance(exc, SignatureInvalid) else "invalid"
            await self.store.record_orphan(
                source.vendor, "callback", stored, verdict=verdict, error=exc.message
            )
            raise
        now = time.time()
        poll_at, deadline = first_poll_at(self.settings, source.vendor, now), deadline_at(self.settings, now)
        if self._needs_confirmation(adapter, update):  # asks the vendor first: not one transaction
            job = await self.store.job_for_source(
                source,
                update.vendor_job_id,
                poll_at=poll_at,
                deadline_at=deadline,
                max_per_hour=self.settings.source_max_jobs_per_hour,
            )
            return await self._apply(adapter, job, stored, update)
        # the job's creation and its first callback are one transaction: no poll can slip between
        result = await self.store.record_source_message(
            source,
            update.vendor_job_id,
            stored,
            update,
            poll_at=poll_at,
            deadline_at=deadline,
            max_per_hour=self.settings.source_max_jobs_per_hour,
            max_callbacks=self.settings.max_inbound_per_job,
        )
        if result.event_ids:
            self.on_event()
        await self._poll_for_output(adapter, result, update)
        return result

    def _needs_confirmation(self, adapter: VendorAdapter, update: JobUpdate) -> bool:
        """``RELAY_CONFIRM_UNSIGNED`` applies: an unsigned callback claims a terminal state."""
        return bool(
            self.settings.confirm_unsigned
            and not adapter.signs_callbacks
            and update.state
            and update.state.terminal
        )

    async def _apply(
        self, adapter: VendorAdapter, job: Job, raw: RawMessage, update: JobUpdate, kind: str = "callback"
    ) -> IngestResult:
        note = None
        cap = self.settings.max_inbound_per_job
        reason = transient_failure(self.settings, adapter, job, update)
        if reason is not None:
            delay = resubmit_delay(self.settings, job.resubmits)
            at = int((time.time() + delay) * 1000)
            result = await self.store.resubmit(job.id, kind, raw, reason, at=at, reported=update)
            log.warning(
                "%s job %s failed transiently (%s): submitting it again in %.0f s",
                adapter.name,
                job.id,
                reason,
                delay,
            )
            self.on_resubmit()
            return result
        if self._needs_confirmation(adapter, update):
            confirmed, note = await self._confirm(adapter, job, update)
            if confirmed is None:
                result = await self.store.record_message(
                    job.id, kind, raw, None, verdict="unconfirmed", error=note, max_callbacks=cap
                )
                await self.store.poll_soon(job.id, int(time.time() * 1000))
                return result
            update = confirmed
        result = await self.store.record_message(job.id, kind, raw, update, error=note, max_callbacks=cap)
        if result.event_ids:
            self.on_event()
        await self._poll_for_output(adapter, result, update)
        return result

    async def _poll_for_output(self, adapter: VendorAdapter, result: IngestResult, update: JobUpdate) -> None:
        """After a vendor success without an output URL (flag ``success_without_output``: the job stays
        running), bring the job's next poll forward to one base interval from now, so the URL is asked
        for soon instead of after a grown interval (nothing for a vendor without a status endpoint)."""
        job = result.job
        if not update.awaiting_output or job is None or job.status.terminal or adapter.poll_timing is None:
            return
        at = time.time() + next_interval(self.settings, adapter.name, 1)
        await self.store.poll_soon(job.id, int(at * 1000))

    async def _confirm(
        self, adapter: VendorAdapter, job: Job, update: JobUpdate
    ) -> tuple[JobUpdate | None, str]:
        """``RELAY_CONFIRM_UNSIGNED``: ask the vendor's status endpoint before trusting an unsigned
        terminal callback, and use the vendor's answer. Returns ``(None, reason)`` when the vendor
        cannot be asked now (the callback is kept as ``unconfirmed`` and a poll is planned at once)."""
        vendor_job_id = job.vendor_job_id or update.vendor_job_id
        if not vendor_job_id:
            return None, "cannot confirm: no vendor job id"
        try:
            confirmed, _response = await self.vendors.fetch_status(adapter, vendor_job_id)
        except (UpstreamError, PayloadError, ValidationFailed, ValueError) as exc:
            return None, f"cannot confirm at {adapter.name}: {exc}"
        said = update.state.value if update.state else update.raw_state
        got = confirmed.state.value if confirmed.state else confirmed.raw_state
        return confirmed, f"confirmed at {adapter.name}: callback said {said}, vendor says {got}"


def mismatch(job: Job, update: JobUpdate) -> None:
    """Raise :class:`VendorJobMismatch` when ``update`` names another vendor job than ``job``'s.

    Example: a job submitted as APIXO ``task_A`` receiving ``{"data": {"taskId": "task_B", ...}}``
    raises ``VendorJobMismatch("message is about vendor job 'task_B', this job is 'task_A'")``. A
    job whose vendor job id is not known yet (submit answer lost) takes the id the message gives:
    the per-job callback token already proves the message is this job's.
    """
    said = update.vendor_job_id
    if said is not None and job.vendor_job_id is not None and said != job.vendor_job_id:
        raise VendorJobMismatch(
            f"message is about vendor job {said[:200]!r}, this job is {job.vendor_job_id!r}; nothing applied"
        )
