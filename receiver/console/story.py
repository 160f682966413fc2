"""A job's whole story on one timeline: the submit and the vendor's answer, every stored vendor message
(callbacks, polls, reprocesses), each event (a state change, with the job's error when it failed) with
its deliveries and their attempts, oldest first.

Everything is read through the store verbs and :func:`receiver.operations.job_detail`, the same
ones ``GET /v1/jobs/{id}``, ``GET /v1/deliveries`` and the CLI use. Example::

    story = await read_story(store, "job_1")
    [e.title for e in story.entries]
    # ["Job created", "Vendor accepted the submit", "State change → queued", "Vendor callback", ...]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dispatch.store.face import Store
from dispatch.store.records import Delivery, Event, Inbound, Job, Subscriber
from receiver import operations

MAX_DELIVERIES_PER_EVENT = 100

_INBOUND_TITLES = {
    "callback": "Vendor callback",
    "response": "Vendor answered the submit",
    "poll": "Status poll answer",
    "reprocess": "Reprocessed callback",
}
_GOOD_VERDICTS = {"applied", "duplicate"}


@dataclass(frozen=True)
class Entry:
    """One moment of the story: ``at`` (unix ms), ``kind`` (``created``, ``submitted``, ``inbound``,
    ``event``), a title, a tone for the badge (``ok``, ``bad``, ``warn``, ``info``) and what it is
    about."""

    at: int
    kind: str
    title: str
    tone: str = "info"
    inbound: Inbound | None = None
    event: Event | None = None
    payload: dict[str, Any] | None = None
    deliveries: tuple[Delivery, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class Story:
    """A job, its timeline and the subscribers its deliveries went to (by id)."""

    job: Job
    entries: tuple[Entry, ...]
    subscribers: dict[str, Subscriber] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        """True while something can still change: the job is not terminal, or a delivery is due."""
        if not self.job.status.terminal:
            return True
        return any(d.status in ("pending", "retrying") for e in self.entries for d in e.deliveries)


async def read_story(store: Store, job_id: str) -> Story:
    """The story of ``job_id``. Raises :class:`NotFound`, :class:`StoreUnavailable`."""
    detail = await operations.job_detail(store, job_id)
    job = detail.job
    entries: list[Entry] = [
        Entry(
            job.created_at,
            "created",
            "Job created",
            payload={"vendor": job.vendor, "reference": job.reference, "params": job.params},
            note=_submit_note(job),
        )
    ]
    if job.submitted_at is not None:
        note = f"vendor job id {job.vendor_job_id or 'unknown'}"
        entries.append(Entry(job.submitted_at, "submitted", "Vendor accepted the submit", "ok", note=note))
    for message in detail.inbound:
        entries.append(_inbound_entry(message))
    for event in detail.events:
        rows = await store.list_deliveries(event_id=event.id, limit=MAX_DELIVERIES_PER_EVENT)
        full = [await store.get_delivery(d.id) for d in sorted(rows, key=lambda d: (d.created_at, d.id))]
        entries.append(_event_entry(event, tuple(full)))
    order = {"created": 0, "submitted": 1, "inbound": 2, "event": 3}
    entries.sort(key=lambda e: (e.at, order[e.kind]))
    subscribers = {s.id: s for s in await store.list_subscribers()}
    return Story(job, tuple(entries), subscribers)


def _submit_note(job: Job) -> str | None:
    parts = []
    if job.submit_at is not None:
        parts.append(f"submit pending ({job.submit_attempts} attempts so far)")
    if job.submit_error:
        parts.append(f"last submit error: {job.submit_error}")
    if job.resubmits:
        parts.append(
            f"resubmitted {job.resubmits} times (earlier vendor jobs {', '.join(job.previous_vendor_job_ids)})"
        )
    return "; ".join(parts) or None


def _inbound_entry(message: Inbound) -> Entry:
    title = _INBOUND_TITLES.get(message.kind, message.kind)
    if message.verdict in _GOOD_VERDICTS:
        tone = "ok"
    elif message.verdict in ("invalid", "rejected", "mismatch", "conflict"):
        tone = "bad"
    else:
        tone = "warn"
    return Entry(message.received_at, "inbound", title, tone, inbound=message, note=message.error)


def _event_entry(event: Event, deliveries: tuple[Delivery, ...]) -> Entry:
    try:
        payload: dict[str, Any] = json.loads(event.body)
    except ValueError:
        payload = {}
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    assert isinstance(data, dict)
    error = data.get("error")
    note = None
    if isinstance(error, dict):
        note = f"{error.get('code')}: {error.get('message') or ''}"
    tone = {"job.failed": "bad", "job.succeeded": "ok"}.get(event.type, "info")
    title = f"State change → {event.type.removeprefix('job.')}"
    if event.type == "job.progress":
        title = f"Progress {data.get('progress')}%"
    return Entry(
        event.created_at, "event", title, tone, event=event, payload=payload, deliveries=deliveries, note=note
    )
