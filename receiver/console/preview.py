"""Dry runs shown before an operator confirms an action: what reprocessing a stored callback would
change (the current adapter's reading of it against the job as it is now), nothing written.

Example::

    diff = await reprocess_preview(ingest, store, "in_1")
    diff.changes   # [Change("status", "running", "failed"), Change("error", "—", "CONTENT_POLICY: ...")]
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatch.errors import PayloadError, SignatureInvalid, ValidationFailed, VendorJobMismatch
from dispatch.model import JobUpdate
from dispatch.store.face import Store
from dispatch.store.records import Inbound, Job, RawMessage
from receiver.ingest import Ingest, mismatch
from receiver.vendors import get_adapter


@dataclass(frozen=True)
class Change:
    """One field the reprocess would change: ``Change("status", "running", "failed")``."""

    name: str
    before: str
    after: str


@dataclass(frozen=True)
class ReprocessPreview:
    """What reprocessing ``inbound`` would do: the verdict it would get now (``applied``,
    ``duplicate``, ``stale``, ``conflict``, ``invalid``, ``rejected``, ``mismatch``), its error, and
    the job fields it would change."""

    inbound: Inbound
    job: Job
    verdict: str
    error: str | None
    changes: tuple[Change, ...]


async def reprocess_preview(ingest: Ingest, store: Store, inbound_id: str) -> ReprocessPreview:
    """The dry run of :func:`receiver.operations.reprocess`: the stored message goes through the same
    verification and parse (the ingest pipeline's), and is compared with the job; nothing is stored.
    Raises :class:`NotFound`, and :class:`ValidationFailed` for a message that is not a callback of a
    known job (as the reprocess itself would)."""
    original = await store.get_inbound(inbound_id)
    if original.job_id is None or original.kind not in ("callback", "reprocess"):
        raise ValidationFailed(f"inbound message {inbound_id} is not a callback of a known job")
    job = await store.get_job(original.job_id)
    adapter = get_adapter(original.vendor)
    raw = RawMessage(original.headers, original.body, original.peer)
    try:
        update = ingest._parse(adapter, raw)
        mismatch(job, update)
    except SignatureInvalid as exc:
        return ReprocessPreview(original, job, "rejected", exc.message, ())
    except PayloadError as exc:
        verdict = "mismatch" if isinstance(exc, VendorJobMismatch) else "invalid"
        return ReprocessPreview(original, job, verdict, exc.message, ())
    verdict, changes = _diff(job, update)
    return ReprocessPreview(original, job, verdict, None, changes)


def _diff(job: Job, update: JobUpdate) -> tuple[str, tuple[Change, ...]]:
    state = update.state
    if state is None:
        return "unknown_state", ()
    if job.status.terminal:
        return ("duplicate" if state == job.status else "conflict" if state.terminal else "stale"), ()
    if state.rank < job.status.rank:
        return "stale", ()
    changes: list[Change] = []
    if state != job.status:
        changes.append(Change("status", job.status.value, state.value))
    if update.progress is not None and update.progress != job.progress:
        changes.append(Change("progress", _text(job.progress), _text(update.progress)))
    if update.vendor_job_id and update.vendor_job_id != job.vendor_job_id:
        changes.append(Change("vendor job id", _text(job.vendor_job_id), update.vendor_job_id))
    if update.outputs and tuple(update.outputs) != tuple(job.outputs):
        before = ", ".join(o.url for o in job.outputs) or "—"
        changes.append(Change("outputs", before, ", ".join(o.url for o in update.outputs)))
    if update.error is not None and update.error != job.error:
        before = f"{job.error.code}: {job.error.message or ''}" if job.error else "—"
        changes.append(Change("error", before, f"{update.error.code}: {update.error.message or ''}"))
    return ("applied" if changes else "duplicate"), tuple(changes)


def _text(value: object) -> str:
    return "—" if value is None else str(value)
