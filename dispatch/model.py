"""The normalized job vocabulary every vendor adapter produces and every subscriber receives.

A vendor message (callback body, status response, synchronous submit response) becomes one
:class:`JobUpdate`; the state machine (:mod:`dispatch.state`) turns updates into events whose body is
the contract in DESIGN.md ("Event contract").
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """``queued → running → succeeded | failed``; the last two are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """True for ``succeeded`` and ``failed``: no later message can change the outcome."""
        return self in (JobState.SUCCEEDED, JobState.FAILED)

    @property
    def rank(self) -> int:
        """0 queued, 1 running, 2 terminal: a job's rank never decreases."""
        return {"queued": 0, "running": 1}.get(self.value, 2)


class EventType(StrEnum):
    """What a subscriber receives (DESIGN.md, "Event contract"): ``job.<state>`` or ``job.progress``."""

    QUEUED = "job.queued"
    RUNNING = "job.running"
    PROGRESS = "job.progress"
    SUCCEEDED = "job.succeeded"
    FAILED = "job.failed"


class Verdict(StrEnum):
    """What the relay made of one stored vendor message (``inbound.verdict``)."""

    APPLIED = "applied"  # it moved the job (and may have emitted events)
    DUPLICATE = "duplicate"  # the same state again: nothing new
    STALE = "stale"  # an earlier state arriving late: nothing changes
    CONFLICT = "conflict"  # a second, different terminal state: flagged, not emitted
    UNKNOWN_STATE = "unknown_state"  # a state the adapter does not know: kept, flagged
    UNCONFIRMED = "unconfirmed"  # RELAY_CONFIRM_UNSIGNED could not ask the vendor yet
    INVALID = "invalid"  # the body could not be parsed (reprocessable)
    REJECTED = "rejected"  # the signature did not verify
    MISMATCH = "mismatch"  # about another vendor job than this job's
    SUPERSEDED = "superseded"  # about a vendor job this job replaced by a resubmit
    RESUBMITTED = "resubmitted"  # a transient vendor failure: the job was submitted anew
    OUTCOME_UNKNOWN = "outcome_unknown"  # a submit whose answer never came (or was ambiguous)


class InboundKind(StrEnum):
    """How a stored vendor message arrived."""

    CALLBACK = "callback"  # the vendor called the relay
    RESPONSE = "response"  # the vendor's answer to a submit (Artnex's is the outcome)
    POLL = "poll"  # the vendor's answer to a status poll
    REPROCESS = "reprocess"  # an operator re-ran a stored callback


class DeliveryStatus(StrEnum):
    """A delivery's state: ``pending`` (not tried), ``retrying`` (failed, next try planned),
    ``succeeded``, ``dead`` (out of retries, or the endpoint is gone), ``failed`` (kept for a recover:
    its subscriber was disabled)."""

    PENDING = "pending"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    FAILED = "failed"


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
DEFAULT_EVENT_TYPES: tuple[str, ...] = (EventType.SUCCEEDED.value, EventType.FAILED.value)


@dataclass(frozen=True)
class Mirror:
    """The relay's own copy of one output (``RELAY_MIRROR_URL``): ``url`` serves it until
    ``expires_at`` (a presigned object-store URL, or the relay's signed ``/v1/outputs/{job}/{index}``
    URL; refreshed at each delivery attempt), ``size_bytes`` and ``sha256`` (hex) are the stored
    bytes'. Example: ``Mirror("https://bucket.s3…/job_1/0?X-Amz-…", 48213, "9f2c…", <+7 days>)``."""

    url: str
    size_bytes: int
    sha256: str
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"url", "size_bytes", "sha256", "expires_at"}`` (``expires_at`` as :func:`iso`)."""
        return {
            "url": self.url,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "expires_at": iso(self.expires_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mirror:
        """The inverse of :meth:`to_json`. Raises ``KeyError`` for a missing field."""
        return cls(data["url"], int(data["size_bytes"]), data["sha256"], parse_iso(data.get("expires_at")))


@dataclass(frozen=True)
class Output:
    """One result file. ``expires_at`` is when the vendor's URL stops working (UTC), if known.

    With mirroring on, a succeeded job's outputs carry ``mirror`` (the relay's copy) or, when copying
    failed for good, ``mirror_error`` (``code``: ``too_large``, ``refused``, ``expired``,
    ``deadline_passed``); both stay ``None`` when mirroring is off."""

    url: str
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    expires_at: datetime | None = None
    mirror: Mirror | None = None
    mirror_error: JobError | None = None

    def to_json(self) -> dict[str, Any]:
        """The event contract's output object: ``{"url", "mime_type", "width", "height", "expires_at"}``
        (pixels; ``expires_at`` ISO-8601 UTC with milliseconds, or ``null``), plus ``"mirror"`` and
        ``"mirror_error"`` once the output went through mirroring."""
        out: dict[str, Any] = {
            "url": self.url,
            "mime_type": self.mime_type,
            "width": self.width,
            "height": self.height,
            "expires_at": iso(self.expires_at),
        }
        if self.mirror is not None or self.mirror_error is not None:
            out["mirror"] = self.mirror.to_json() if self.mirror else None
            out["mirror_error"] = self.mirror_error.to_json() if self.mirror_error else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Output:
        """The inverse of :meth:`to_json` (as stored in the jobs table). Raises ``KeyError`` without ``url``."""
        mirror = data.get("mirror")
        error = data.get("mirror_error")
        return cls(
            url=data["url"],
            mime_type=data.get("mime_type"),
            width=data.get("width"),
            height=data.get("height"),
            expires_at=parse_iso(data.get("expires_at")),
            mirror=Mirror.from_json(mirror) if mirror else None,
            mirror_error=JobError(error["code"], error.get("message")) if error else None,
        )


@dataclass(frozen=True)
class JobError:
    """``code`` keeps the vendor's own code where it has one (APIXO ``failCode``, Artnex ``error``),
    else a relay code (``vendor_failed``, ``timeout``, ``vendor_rejected``...)."""

    code: str
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The event contract's error object: ``{"code": "ImageFormatIncorrect", "message": "…"}``."""
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Cost:
    """What the vendor bills for the vendor job a message is about, in the vendor's own unit: ``credits``
    (Apiframe ``creditCost``, Artnex ``credits_used``) or ``usd`` (APIXO's price, $0.01 per submitted
    image, seed 003). ``estimate`` marks a forecast, not a bill (Dreamina ``response.forecastCost``).
    Example: ``Cost(10.0, "credits")``, ``Cost(0.0, "credits", estimate=True)``."""

    amount: float
    unit: str
    estimate: bool = False


MAX_SEEN_CHARS = 120
"""How much of a deviating value an :class:`Anomaly` keeps (characters of its JSON text)."""


@dataclass(frozen=True)
class Anomaly:
    """One auxiliary field of a vendor message that deviated from the vendor's page and could not be
    used, so it was left out instead of failing the message (issue 20: "what carries the outcome is
    required; everything else is read best-effort").

    ``path`` is the field's dotted path in the body (``"credits_used"``, ``"result.images[1]"``,
    ``"status.artifact.expirationDateString"``); ``seen`` what was there, as compact JSON text cut at
    :data:`MAX_SEEN_CHARS` characters (``'"lots"'``, ``'{"a":1}'``, ``'"javascript:alert(1)"'``).
    Example: ``Anomaly.of("credits_used", "lots") == Anomaly("credits_used", '"lots"')``."""

    path: str
    seen: str

    @classmethod
    def of(cls, path: str, value: Any) -> Anomaly:
        """The anomaly for ``value`` (any decoded JSON value) at ``path``; never raises."""
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
        if len(text) > MAX_SEEN_CHARS:
            text = text[: MAX_SEEN_CHARS - 1] + "…"
        return cls(path[:200], text)

    def to_json(self) -> dict[str, str]:
        """``{"path": "credits_used", "seen": "\"lots\""}``."""
        return {"path": self.path, "seen": self.seen}


@dataclass(frozen=True)
class JobUpdate:
    """What one vendor message says about a job, in relay terms.

    ``state`` is ``None`` when the vendor sent a state the adapter does not know; ``raw_state`` always
    keeps the vendor's own word (``"PROCESSING"``, ``"created"``). ``progress`` is 0-100 or ``None``.
    Times are timezone-aware UTC datetimes or ``None``; unknown values are ``None``, never guessed.
    ``anomalies`` lists the auxiliary fields that deviated from the vendor's page and were left out
    (:class:`Anomaly`). A ``succeeded`` update without ``outputs`` is a vendor success that carried no
    usable output URL: the store keeps such a job running (:attr:`awaiting_output`).

    Example: ``JobUpdate(state=JobState.SUCCEEDED, raw_state="success", vendor_job_id="task_1",
    progress=100, outputs=(Output("https://file.apixo.ai/a.jpg", "image/jpeg"),))``
    """

    state: JobState | None
    raw_state: str | None = None
    vendor_job_id: str | None = None
    progress: int | None = None
    outputs: tuple[Output, ...] = ()
    error: JobError | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cost: Cost | None = None
    compute_ms: int | None = None  # how long the vendor computed, when it says (APIXO ``costTime``)
    anomalies: tuple[Anomaly, ...] = ()

    @property
    def awaiting_output(self) -> bool:
        """True for a vendor success without any output URL: not a success yet (the job stays running,
        flagged ``success_without_output``, and is polled again soon for the URL)."""
        return self.state is JobState.SUCCEEDED and not self.outputs


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def now_ms() -> int:
    """Current time as unix milliseconds (the store's time unit), e.g. ``1795341632123``."""
    return time.time_ns() // 1_000_000


def iso(value: datetime | None) -> str | None:
    """``2026-11-22T10:00:32.123Z`` (UTC, milliseconds) or ``None``."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_ms(ms: int | None) -> str | None:
    """Unix milliseconds to :func:`iso` text, e.g. ``iso_ms(1795341632123) ==
    "2026-11-22T10:00:32.123Z"``."""
    if ms is None:
        return None
    seconds, millis = divmod(int(ms), 1000)
    return f"{_utc_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _utc_second(seconds: int) -> str:
    """``2026-11-22T10:00:32`` for unix ``seconds`` (cached: the write path formats the same few
    seconds over and over)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_iso(value: str | None) -> datetime | None:
    """Inverse of :func:`iso`; accepts any ISO-8601 form Python reads, ``Z`` included."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_B32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower case


def event_id(job_id: str, event_type: str, progress: int | None = None) -> str:
    """The deterministic event id: the same (job, type, progress %) always gives the same id.

    A vendor's duplicate callback, a poll that finds the same outcome and a replay all carry it, so
    a subscriber that dedupes on ``webhook-id`` sees each outcome once. ``progress`` only counts for
    ``job.progress``. Example: ``event_id("job_abc", "job.succeeded") == "evt_…"`` (26 base32 chars).
    """
    key = f"{job_id}|{event_type}|{progress if event_type == 'job.progress' else ''}"
    digest = hashlib.sha256(key.encode()).digest()
    # the first 26 characters of base32(digest), lower case: 130 bits, 5 at a time (base64.b32encode
    # of the whole digest gives the same text, several times slower)
    bits = int.from_bytes(digest[:17], "big") >> 6
    return "evt_" + "".join(_B32[(bits >> shift) & 31] for shift in range(125, -1, -5))


def new_id(prefix: str) -> str:
    """A new time-ordered id: ``prefix`` + ``_`` + 11 hex digits of unix ms + 12 random hex digits.

    Example: ``new_id("job") == "job_19a9f2c3b1e4f0a1b2c3d4e5f6"``; ids sort by creation time.
    """
    return f"{prefix}_{now_ms():011x}{secrets.token_hex(6)}"
