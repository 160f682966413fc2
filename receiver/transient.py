"""Vendor failures worth a new submit: which failure codes resubmit a job instead of failing it."""

from __future__ import annotations

from dispatch.model import JobState, JobUpdate
from dispatch.store.records import Job
from receiver.settings import Settings
from receiver.vendors.base import VendorAdapter


def transient_failure(settings: Settings, adapter: VendorAdapter, job: Job, update: JobUpdate) -> str | None:
    """Why ``update`` should resubmit ``job`` rather than fail it, or ``None``.

    A failure whose code the vendor documents as worth retrying (``adapter.transient_fail_codes``,
    e.g. APIXO's ``Timeout``) resubmits a job that is not terminal yet, at most ``RELAY_RESUBMIT_MAX``
    times; the last one fails the job as usual. Example: ``"Timeout: Upstream service did not finish"``.
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
