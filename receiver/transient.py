"""Vendor failures worth a new submit: which failure codes resubmit a job instead of failing it, and
how long the relay waits before that new submit."""

from __future__ import annotations

import random

from dispatch.model import JobState, JobUpdate
from dispatch.store.records import Job
from receiver.settings import Settings
from receiver.vendors.base import VendorAdapter


def transient_failure(settings: Settings, adapter: VendorAdapter, job: Job, update: JobUpdate) -> str | None:
    """Why ``update`` should resubmit ``job`` rather than fail it, or ``None``.

    A failure whose code the vendor documents as worth retrying (``adapter.transient_fail_codes``,
    e.g. APIXO's ``Timeout``) resubmits a job that is not terminal yet, after :func:`resubmit_delay`,
    at most ``RELAY_RESUBMIT_MAX`` times; the last one fails the job as usual. Example:
    ``"Timeout: Upstream service did not finish"``.
    """
    error = update.error
    if (
        update.state is not JobState.FAILED
        or error is None
        or error.code not in adapter.transient_fail_codes
        or job.status.terminal
        or job.resubmits >= settings.resubmit_max
        or adapter.synchronous
        or job.source_id is not None  # submitted elsewhere: the relay has no request to send again
    ):
        return None
    return f"{error.code}: {error.message or ''}".strip()


MAX_RESUBMIT_BACKOFF = 3600.0  # seconds


def resubmit_delay(settings: Settings, resubmits_done: int) -> float:
    """Seconds before a job's next resubmit, when ``resubmits_done`` came before it:
    ``RELAY_RESUBMIT_BACKOFF * 2^resubmits_done`` times a jitter factor in [1, 1.5), at most an hour,
    so never sooner than the backoff (seed 003's failCode table: ``RateLimited`` "Retry with backoff",
    ``Timeout`` "Retry or use callback mode", ``Unknown error`` "Retry with backoff": a new submit is a
    new billed image, not to be sent at once). Example, with the default 30 s: 30-45 s, then 60-90 s."""
    factor = 2.0 ** min(max(resubmits_done, 0), 30)
    return min(MAX_RESUBMIT_BACKOFF, settings.resubmit_backoff * factor * random.uniform(1.0, 1.5))
