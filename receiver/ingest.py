"""The callback pipeline: authenticate, keep the raw message, parse, apply — one path for every vendor.

Callbacks, synchronous responses and polls all end in ``store.record_message``, so the same outcome
arriving twice by different roads gives the same event id and no second event.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dispatch.errors import PayloadError, SignatureInvalid, UpstreamError, ValidationFailed
from dispatch.model import JobUpdate
from dispatch.store.records import IngestResult, Job, RawMessage, Source
from dispatch.store.runner import StoreRunner
from receiver.poller import deadline_at, first_poll_at
from receiver.settings import Settings
from receiver.vendor_client import VendorClient
from receiver.vendors.base import VendorAdapter


class Ingest:
    """Turns raw vendor callbacks into stored messages, job updates and events."""

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

    def _parse(self, adapter: VendorAdapter, raw: RawMessage) -> JobUpdate:
        adapter.verify_callback(
            raw.body, raw.headers, self.settings.vendor_credential(adapter.credential_setting)
        )
        return adapter.parse_callback(raw.body, raw.headers)

    async def job_callback(self, adapter: VendorAdapter, job: Job, raw: RawMessage) -> IngestResult:
        """Verify, record and apply one vendor callback for ``job``.

        The raw message is stored whatever happens. Raises :class:`SignatureInvalid` (stored with
        verdict ``rejected``) or :class:`PayloadError` (stored with verdict ``invalid`` and the parse
        error, reprocessable later), both after the store committed. Returns the store's result,
        whose ``verdict`` is ``applied``, ``duplicate``, ``stale``, ``conflict``, ``unknown_state``
        or ``unconfirmed`` (see :meth:`_confirm`).
        """
        try:
            update = self._parse(adapter, raw)
        except (SignatureInvalid, PayloadError) as exc:
            verdict = "rejected" if isinstance(exc, SignatureInvalid) else "invalid"
            message = exc.message
            await self.runner.call(
                lambda s: s.record_message(job.id, "callback", raw, None, verdict=verdict, error=message)
            )
            raise
        return await self._apply(adapter, job, raw, update)

    async def source_callback(self, adapter: VendorAdapter, source: Source, raw: RawMessage) -> IngestResult:
        """A callback on a source URL: the job is found (or created on first sight) by the vendor
        job id in the body, then the callback is applied like any other. Raises like
        :meth:`job_callback`; a body without a vendor job id is a :class:`PayloadError`."""
        try:
            update = self._parse(adapter, raw)
            if not update.vendor_job_id:
                raise PayloadError(f"{adapter.name} callback carries no job id")
        except (SignatureInvalid, PayloadError) as exc:
            verdict = "rejected" if isinstance(exc, SignatureInvalid) else "invalid"
            message = exc.message
            await self.runner.call(
                lambda s: s.record_orphan(source.vendor, "callback", raw, verdict=verdict, error=message)
            )
            raise
        now = time.time()
        poll_at, deadline = first_poll_at(self.settings, source.vendor, now), deadline_at(self.settings, now)
        vendor_job_id = update.vendor_job_id
        job = await self.runner.call(
            lambda s: s.job_for_source(source, vendor_job_id, poll_at=poll_at, deadline_at=deadline)
        )
        return await self._apply(adapter, job, raw, update)

    async def _apply(
        self, adapter: VendorAdapter, job: Job, raw: RawMessage, update: JobUpdate
    ) -> IngestResult:
        note = None
        if (
            self.settings.confirm_unsigned
            and not adapter.signs_callbacks
            and update.state
            and update.state.terminal
        ):
            confirmed, note = await self._confirm(adapter, job, update)
            if confirmed is None:
                result = await self.runner.call(
                    lambda s: s.record_message(
                        job.id, "callback", raw, None, verdict="unconfirmed", error=note
                    )
                )
                await self.runner.call(lambda s: s.poll_soon(job.id, int(time.time() * 1000)))
                return result
            update = confirmed
        final = update
        result = await self.runner.call(
            lambda s: s.record_message(job.id, "callback", raw, final, error=note)
        )
        if result.event_ids:
            self.on_event()
        return result

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
