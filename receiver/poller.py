"""The polling fallback: a job with no terminal state by its poll time is asked about at the vendor.

Polled outcomes go through the same adapter, state machine and dedupe as callbacks (inbound kind
``poll``), so the event id is the same whichever arrives first. Poll times are stored, so polling
survives restarts.

At a job's deadline (``RELAY_JOB_TIMEOUT`` after the submit) the vendor is asked one last time; a job
still not terminal then fails with code ``timeout`` (``no_output`` when the vendor said success without a
URL, ``vendor_timeout`` when the submit's outcome never became known). That is the relay giving up, not
the vendor: no seed sets a deadline (seed 003 warns that 8k jobs run long), and the vendor bills the
result it may still make. So the relay keeps asking at a slow cadence (``RELAY_LATE_POLL_EVERY``, slowing
to hourly) until ``RELAY_LATE_POLL_FOR`` after the deadline, and a success found then, like one on the
callback URL, moves the job to ``succeeded`` (:mod:`dispatch.state`).

Each adapter declares when its vendor is polled (``poll_timing``: seconds to the first poll, then between
polls while the job is within the vendor's typical time), from the vendor's documented latency and polling
advice, with the source beside it (for example APIXO's "first poll 10-15 s after task creation, then every
5-10 s": 12 s, then every 10 s for a minute); a vendor without a status endpoint (Artnex) declares none and
is not polled. Past the typical time, intervals grow x1.5 per poll up to 60 s.
``RELAY_POLL_AFTER`` and ``RELAY_POLL_EVERY`` (JSON objects keyed by vendor, seconds) override them;
``RELAY_JOB_TIMEOUT`` (seconds) bounds a job. A polled answer whose adapter says the vendor gave up calling
back (``callback_lost``: Apiframe's ``webhookStatus: "failed"``) keeps the base interval instead of growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from dispatch.errors import NotConfigured, PayloadError, StoreUnavailable, UpstreamError
from dispatch.model import JobError, JobState, JobUpdate
from dispatch.state import failed_by_relay
from dispatch.store.face import Store
from dispatch.store.jobs import SUCCESS_WITHOUT_OUTPUT_FLAG
from dispatch.store.records import Job, RawMessage
from dispatch.store.submits import OUTCOME_UNKNOWN
from receiver.caps import check_output_count
from receiver.metrics import RelayMetrics, observe_result
from receiver.settings import Settings
from receiver.tokens import scrub
from receiver.transient import resubmit_delay, transient_failure
from receiver.vendor_client import VendorClient
from receiver.vendors import ADAPTERS
from receiver.vendors.base import PollTiming

log = logging.getLogger("upscale_relay.poller")

MAX_INTERVAL = 60.0  # seconds
DEFAULT_EVERY = 10.0  # seconds between polls of a vendor that declares no timing
GONE = ("vendor_not_found", "vendor_expired")  # the vendor no longer knows the job: it will never finish
LATE_MAX_INTERVAL = 3600.0  # seconds: the slowest late poll of a job the relay failed
"""Job flag: the vendor said success but gave no output URL (the adapters' reading, issue 20); polling
goes on for the URL, and the deadline fails the job with ``no_output``."""


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
    """Seconds to the next poll after ``polls_done`` polls: ``every`` for the polls that fall within the
    vendor's typical time (``poll_timing.steady_for`` seconds after the submit; at least the first poll),
    then ``every * 1.5^n`` for the n-th poll past it, at most 60 s (or ``every`` when that is longer).

    Example, APIXO (``PollTiming(12, 10, 60)``): polls at 12, 22, 32, 42, 52 s after the submit are each
    followed by 10 s; then 15, 22.5, 33.75, 50.6, 60, 60 ... s."""
    timing = _timing(vendor)
    every = settings.poll_every.get(vendor, DEFAULT_EVERY if timing is None else timing.every)
    first = settings.poll_after.get(vendor, every if timing is None else timing.first)
    steady_for = 0.0 if timing is None else timing.steady_for
    # the polls at first, first + every, ... that come before steady_for (at least the first one)
    steady_polls = max(1, math.ceil(max(steady_for - first, 0.0) / every))
    grown = min(max(polls_done - steady_polls, 0), 30)
    return float(min(every * 1.5**grown, max(MAX_INTERVAL, every)))


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
        """Poll one job once and record what the vendor says. At the job's deadline the vendor is asked
        one last time, and a job still unfinished then fails (:meth:`_give_up`); a job the relay failed
        is asked again at a slow cadence (:meth:`_late_poll`), in case the vendor still finishes it."""
        now = time.time()
        if job.status is JobState.FAILED:
            await self._late_poll(job, now)
            return
        if job.vendor_job_id is None:  # a submit whose outcome is unknown: looked at only at its deadline
            await self._give_up(job, now)
            return
        at_deadline = job.deadline_at is not None and now * 1000 >= job.deadline_at
        outcome = await self._ask(job, now)
        if at_deadline:
            after = await self.store.get_job(job.id)
            if not after.status.terminal and after.submit_at is None:  # still working, or not answering
                await self._give_up(after, now)
            else:  # the last answer ended the job (or resubmits it): release the poll
                await self.store.finish_poll(job.id, next_poll_at=None)
            return
        if outcome in ("answered", "failed", "error"):
            await self._finish(job, now)
        elif outcome in ("callback_lost", "awaiting_output"):
            # no callback coming, or a success still without its URL: keep looking at the base pace
            await self._finish(job, now, soon=True)
        elif outcome == "not_configured":
            await self.store.finish_poll(job.id, next_poll_at=None)

    async def _ask(self, job: Job, now: float) -> str:
        """Ask the vendor about ``job`` once and record its answer (a transient failure resubmits the
        job instead). Returns what happened: ``answered``, ``callback_lost`` (answered, and the vendor
        says it gave up calling back), ``awaiting_output`` (the vendor says success but gives no output
        URL yet), ``failed`` (the vendor says the job failed), ``error`` (no usable
        answer: unreachable, unreadable, about another job), ``gone`` (the vendor no longer knows the
        job; recorded as its failure), ``resubmitted`` or ``not_configured``."""
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
                return "gone"
            log.warning("poll of %s failed: %s", job.id, exc.message)
            return "error"
        except PayloadError as exc:
            self.metrics.poll(job.vendor, "invalid", time.perf_counter() - started)
            await self._record(job, RawMessage({}, b"", None), None, exc.message)
            return "error"
        except (NotConfigured, ValueError) as exc:
            self.metrics.poll(job.vendor, "not_configured", None)
            log.warning("cannot poll %s: %s", job.id, exc)
            return "not_configured"
        raw = scrub(
            RawMessage({k.lower(): v for k, v in response.headers.items()}, response.content, "vendor")
        )
        try:
            check_output_count(update, self.settings)
        except PayloadError as exc:  # kept with its body as invalid; the job is not changed
            self.metrics.poll(job.vendor, "invalid", time.perf_counter() - started)
            log.warning("poll of %s: %s", job.id, exc.message)
            await self._record(job, raw, None, exc.message, verdict="invalid")
            return "error"
        self.metrics.poll(job.vendor, "answered", time.perf_counter() - started)
        said = update.vendor_job_id
        if said is not None and said != vendor_job_id:  # the vendor answered about another job
            message = f"status answer is about vendor job {said[:200]!r}, this job is {vendor_job_id!r}"
            log.warning("poll of %s: %s", job.id, message)
            await self._record(job, raw, None, message, verdict="mismatch")
            return "error"
        reason = transient_failure(self.settings, adapter, job, update)
        if reason is not None:
            delay = resubmit_delay(self.settings, job.resubmits)
            at = int((now + delay) * 1000)
            observe_result(
                self.metrics,
                log,
                await self.store.resubmit(job.id, "poll", raw, reason, at=at, reported=update),
                via="poll",
                before=job,
            )
            log.warning(
                "%s job %s failed transiently (%s): submitting it again in %.0f s",
                job.vendor,
                job.id,
                reason,
                delay,
            )
            self.on_resubmit()
            return "resubmitted"
        await self._record(job, raw, update, None)
        if update.state is JobState.FAILED:
            return "failed"
        if adapter.callback_lost(update):
            return "callback_lost"
        return "awaiting_output" if update.awaiting_output else "answered"

    async def _give_up(self, job: Job, now: float) -> None:
        """Fail ``job`` at its deadline: ``vendor_timeout`` when its submit's outcome stayed unknown,
        ``no_output`` when the vendor said success without an output URL (flag
        ``success_without_output``), else ``timeout``; then plan its late polls (:meth:`_late_poll`)."""
        seconds = self.settings.job_timeout
        if OUTCOME_UNKNOWN in job.flags:  # the submit's answer never came, nor a callback
            error = JobError("vendor_timeout", f"submit outcome unknown and no callback within {seconds:g} s")
        elif SUCCESS_WITHOUT_OUTPUT_FLAG in job.flags:
            error = JobError(
                "no_output", f"the vendor reported success but no output URL within {seconds:g} s"
            )
        else:
            error = JobError("timeout", f"no result within {seconds:g} s")
        update = JobUpdate(JobState.FAILED, "timeout", error=error)
        self.metrics.poll(job.vendor, "timeout", None)
        await self._record(job, RawMessage({}, b"", None), update, None)
        await self.store.finish_poll(job.id, next_poll_at=self._late_poll_at(job, now), late=True)

    def _late_poll_at(self, job: Job, now: float) -> int | None:
        """Unix ms of the next late poll of ``job``, which the relay failed at its deadline (or ``None``:
        no vendor job id, no status endpoint, or ``RELAY_LATE_POLL_FOR`` past the deadline). The pace
        slows with the time since the deadline: half of it, at least ``RELAY_LATE_POLL_EVERY``, at most
        an hour; the last poll falls at the end of the window. Example, with the defaults: 5, 10, 15,
        22.5, 33.75 ... minutes after the deadline, then hourly, until 24 h after it."""
        if job.vendor_job_id is None or job.deadline_at is None or _timing(job.vendor) is None:
            return None
        deadline = job.deadline_at / 1000
        end = deadline + self.settings.late_poll_for
        if now >= end:
            return None
        since = max(now - deadline, 0.0)
        interval = min(LATE_MAX_INTERVAL, max(self.settings.late_poll_every, since / 2))
        return int(min(now + interval, end) * 1000)

    async def _late_poll(self, job: Job, now: float) -> None:
        """Ask the vendor about a job the relay failed (:func:`dispatch.state.failed_by_relay`): its
        success moves the job to ``succeeded`` (``job.succeeded`` with ``after_relay_timeout``); its own
        failure, or forgetting the job, ends the late polls; anything else plans the next one."""
        error_code = job.error.code if job.error else None
        if not failed_by_relay(job.status, error_code, job.outcome_via) or job.vendor_job_id is None:
            await self.store.finish_poll(job.id, next_poll_at=None)
            return
        outcome = await self._ask(job, now)
        after = await self.store.get_job(job.id)
        keep_looking = (
            outcome in ("answered", "callback_lost", "awaiting_output", "error")
            and after.status is JobState.FAILED
        )
        next_at = self._late_poll_at(job, now) if keep_looking else None
        await self.store.finish_poll(job.id, next_poll_at=next_at, late=True)

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
