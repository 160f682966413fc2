"""The polling fallback: a job with no terminal state by its poll time is asked about at the vendor.

Polled outcomes go through the same adapter, state machine and dedupe as callbacks (inbound kind
``poll``), so the event id is the same whichever arrives first. Poll times are stored, so polling
survives restarts. A job still not terminal at its deadline fails with code ``timeout``.

Each adapter declares when its vendor is polled (``poll_timing``: seconds to the first poll, then between
polls), from the vendor's documented latency and polling advice, with the source beside it (for example
APIXO's "first poll 10-15 s after submit, then every 5-10 s": 60 s, then 10 s); a vendor without a
status endpoint (Artnex) declares none and is not polled. Intervals grow x1.5 per poll up to 60 s.
``RELAY_POLL_AFTER`` and ``RELAY_POLL_EVERY`` (JSON objects keyed by vendor, seconds) override them;
``RELAY_JOB_TIMEOUT`` (seconds) bounds a job. A polled answer whose adapter says the vendor gave up calling
back (``callback_lost``: Apiframe's ``webhookStatus: "failed"``) keeps the base interval instead of growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from dispatch.errors import NotConfigured, PayloadError, StoreUnavailable, UpstreamError
from dispatch.model import JobError, JobState, JobUpdate
from dispatch.store.face import Store
from dispatch.store.records import Job, RawMessage
from receiver.metrics import RelayMetrics, observe_result
from receiver.settings import Settings
from receiver.tokens import scrub
from receiver.transient import transient_failure
from receiver.vendor_client import VendorClient
from receiver.vendors import ADAPTERS
from receiver.vendors.base import PollTiming

log = logging.getLogger("upscale_relay.poller")

MAX_INTERVAL = 60.0  # seconds
DEFAULT_EVERY = 10.0  # seconds between polls of a vendor that declares no timing
GONE = ("vendor_not_found", "vendor_expired")  # the vendor no longer knows the job: it will never finish


def _timing(vendor: str) -> PollTiming | None:
    adapter = ADAPTERS.get(vendor)
    return None if adapter is None else adapter.poll_timing


def first_poll_at(settings: Settings, vendor: str, now: float) -> int | None:
    """Unix ms of a new job's first poll, or ``None`` for vendors that are not polled (no ``poll_timing``:
    no status endpoint)."""
    timing = _timing(vendor)
    if timing is None:
        return None
    after = settings.poll_after.get(vendor, timing.first)
    return int((now + after) * 1000)


def deadline_at(settings: Settings, now: float) -> int:
    """Unix ms after which a job that is still not terminal fails with ``timeout``."""
    return int((now + settings.job_timeout) * 1000)


def next_interval(settings: Settings, vendor: str, polls_done: int) -> float:
    """Seconds to the next poll after ``polls_done`` polls: ``every * 1.5^(polls_done-1)``, at most 60 s."""
    timing = _timing(vendor)
    every = settings.poll_every.get(vendor, DEFAULT_EVERY if timing is None else timing.every)
    return float(min(every * 1.5 ** max(polls_done - 1, 0), max(MAX_INTERVAL, every)))


class Poller:
    """Claims jobs whose poll time has come and asks their vendor, until stopped."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        vendors: VendorClient,
        *,
        on_event: object = None,
        on_resubmit: object = None,
        concurrency: int = 8,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else RelayMetrics()
        self.settings = settings
        self.store = store
        self.vendors = vendors
        self.on_event = on_event if callable(on_event) else (lambda: None)
        self.on_resubmit = on_resubmit if callable(on_resubmit) else (lambda: None)
        self.concurrency = concurrency
        self.lease_ms = int(max(settings.vendor_timeout * 4, 60) * 1000)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, looking for due jobs every ``RELAY_POLL_INTERVAL`` seconds."""
        while not stop.is_set():
            try:
                jobs = await self.store.claim_due_polls(
                    "poller", now=int(time.time() * 1000), limit=self.concurrency, lease_ms=self.lease_ms
                )
            except StoreUnavailable as exc:
                log.warning("cannot claim polls: %s", exc.message)
                jobs = []
            if jobs:
                await asyncio.gather(*(self.poll(job) for job in jobs))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.poll_interval)

    async def poll(self, job: Job) -> None:
        """Poll one job once and record what the vendor says (or time it out)."""
        now = time.time()
        if (job.deadline_at is not None and now * 1000 >= job.deadline_at) or job.vendor_job_id is None:
            seconds = self.settings.job_timeout
            if "submit_outcome_unknown" in job.flags:  # the submit's answer never came, nor a callback
                error = JobError(
                    "vendor_timeout", f"submit outcome unknown and no callback within {seconds:g} s"
                )
            else:
                error = JobError("timeout", f"no result within {seconds:g} s")
            update = JobUpdate(JobState.FAILED, "timeout", error=error)
            self.metrics.poll(job.vendor, "timeout", None)
            await self._record(job, RawMessage({}, b"", None), update, None)
            return
        adapter = ADAPTERS[job.vendor]
        assert job.vendor_job_id is not None
        vendor_job_id = job.vendor_job_id
        started = time.perf_counter()
        try:
            update, response = await self.vendors.fetch_status(adapter, vendor_job_id)
        except UpstreamError as exc:
            self.metrics.poll(
                job.vendor, "gone" if exc.code in GONE else "error", time.perf_counter() - started
            )
            if exc.code in GONE:
                gone = JobUpdate(JobState.FAILED, exc.code, error=JobError(exc.code, exc.message))
                await self._record(job, RawMessage({}, exc.message.encode(), None), gone, None)
            else:
                log.warning("poll of %s failed: %s", job.id, exc.message)
                await self._finish(job, now)
            return
        except PayloadError as exc:
            self.metrics.poll(job.vendor, "invalid", time.perf_counter() - started)
            await self._record(job, RawMessage({}, b"", None), None, exc.message)
            await self._finish(job, now)
            return
        except (NotConfigured, ValueError) as exc:
            self.metrics.poll(job.vendor, "not_configured", None)
            log.warning("cannot poll %s: %s", job.id, exc)
            await self.store.finish_poll(job.id, next_poll_at=None)
            return
        self.metrics.poll(job.vendor, "answered", time.perf_counter() - started)
        raw = scrub(
            RawMessage({k.lower(): v for k, v in response.headers.items()}, response.content, "vendor")
        )
        said = update.vendor_job_id
        if said is not None and said != vendor_job_id:  # the vendor answered about another job
            message = f"status answer is about vendor job {said[:200]!r}, this job is {vendor_job_id!r}"
            log.warning("poll of %s: %s", job.id, message)
            await self._record(job, raw, None, message, verdict="mismatch")
            await self._finish(job, now)
            return
        reason = transient_failure(self.settings, adapter, job, update)
        if reason is not None:
            observe_result(
                self.metrics,
                log,
                await self.store.resubmit(job.id, "poll", raw, reason),
                via="poll",
                before=job,
            )
            log.warning("%s job %s failed transiently (%s): submitting it again", job.vendor, job.id, reason)
            self.on_resubmit()
            return
        await self._record(job, raw, update, None)
        # no callback coming, or a success still without its URL: keep looking at the base interval
        await self._finish(job, now, soon=adapter.callback_lost(update) or update.awaiting_output)

    async def _record(
        self,
        job: Job,
        raw: RawMessage,
        update: JobUpdate | None,
        error: str | None,
        *,
        verdict: str | None = None,
    ) -> None:
        result = await self.store.record_message(job.id, "poll", raw, update, error=error, verdict=verdict)
        observe_result(self.metrics, log, result, via="poll", before=job)
        if result.event_ids:
            self.on_event()

    async def _finish(self, job: Job, now: float, *, soon: bool = False) -> None:
        polls_done = 1 if soon else job.poll_attempts + 1  # soon: the base interval, no growth
        interval = next_interval(self.settings, job.vendor, polls_done)
        at = int((now + interval) * 1000)
        if job.deadline_at is not None:
            at = min(at, job.deadline_at)
        await self.store.finish_poll(job.id, next_poll_at=at)
