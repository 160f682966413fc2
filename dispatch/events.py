"""The event body subscribers receive, built from a job snapshot (DESIGN.md, "Event contract")."""

from __future__ import annotations

import json

import orjson

from dispatch.model import iso_ms
from dispatch.state import AFTER_RELAY_TIMEOUT
from dispatch.store.records import Job


def event_body(
    job: Job,
    event_type: str,
    eid: str,
    created_at: int,
    *,
    sequence: int | None = None,
    progress: int | None = None,
) -> str:
    """The JSON text subscribers receive for ``job`` as event ``eid`` of ``event_type``, created at
    ``created_at`` (unix ms), compact and UTF-8 (DESIGN.md, "Event contract"; its JSON Schema is
    :mod:`dispatch.event_schema`), e.g. ``'{"id":"evt_…","type":"job.succeeded","timestamp":
    "2026-11-22T10:00:32.123Z","data":{"job_id":"job_…","vendor":"apixo",...,"sequence":2}}'``.

    The body shows ``job``'s own ``sequence`` and ``progress``; given ``sequence``, it shows that
    sequence and ``progress`` instead (the values after this event: no copy of the job needed).
    ``data.after_relay_timeout: true`` is there only for a job whose success came after the relay had
    failed it (flag ``after_relay_timeout``, :mod:`dispatch.state`)."""
    if sequence is None:
        sequence, progress = job.sequence, job.progress
    data: dict[str, object] = {
        "job_id": job.id,
        "vendor": job.vendor,
        "vendor_job_id": job.vendor_job_id,
        "status": job.status.value,
        "progress": progress,
        "sequence": sequence,
        "outputs": [o.to_json() for o in job.outputs],
        "error": job.error.to_json() if job.error else None,
        "reference": job.reference,
        "submitted_at": iso_ms(job.submitted_at),
        "completed_at": iso_ms(job.completed_at),
    }
    if AFTER_RELAY_TIMEOUT in job.flags:  # the vendor's success came after the relay failed the job
        data["after_relay_timeout"] = True
    body = {"id": eid, "type": event_type, "timestamp": iso_ms(created_at), "data": data}
    try:  # compact, UTF-8 unescaped: json.dumps(separators=(",", ":"), ensure_ascii=False) byte for
        return orjson.dumps(body).decode()  # byte, several times faster
    except orjson.JSONEncodeError:  # a lone surrogate in a text, which only json writes
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
