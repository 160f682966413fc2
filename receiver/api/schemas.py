"""Pydantic models of what the HTTP API answers, and of its query strings, for the OpenAPI document
(:mod:`receiver.api.openapi`).

They describe the handlers' plain-dict answers (the ``to_json()`` methods in
:mod:`dispatch.store.records`); handlers do not validate through them. Times are ISO-8601 UTC with
milliseconds (``2026-11-22T10:00:32.123Z``) or ``null``; unknown values are ``null``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

from dispatch.event_schema import EventPayload, JobErrorModel, OutputModel
from dispatch.model import DeliveryStatus, EventType, InboundKind, JobState, Verdict
from receiver.api.common import MAX_LIMIT
from receiver.vendors import ADAPTERS

VendorName = Annotated[str, WithJsonSchema({"type": "string", "enum": list(ADAPTERS)})]
"""A vendor adapter's name; any other value is a 422 (a 404 in ``POST /v1/jobs``)."""

CALLBACK_VENDORS = [name for name, adapter in ADAPTERS.items() if not adapter.synchronous]
"""Vendors that call back (Artnex answers synchronously and has no callback URL)."""

Time = AwareDatetime


class Answer(BaseModel):
    """Base of the response models: they list every field the relay sends."""

    model_config = ConfigDict(extra="forbid")


class Page(Answer):
    """One page of a list: ``next_cursor`` is passed back as ``?cursor=`` for the next page and is
    ``null`` on the last one."""

    next_cursor: str | None


# errors --------------------------------------------------------------------------------------------


class ErrorDetail(Answer):
    """``code`` for programs (``not_found``, ``validation_failed``, ``unauthorized``...), ``message``
    for people, ``details`` for either (for a 422, ``[{"field", "message"}, ...]`` when a body field
    is at fault; otherwise usually ``null``)."""

    code: str
    message: str
    details: Any = Field(description="Anything JSON; null when there is nothing more to say.")


class ErrorBody(Answer):
    """Every error the relay answers: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


# jobs ------------------------------------------------------------------------------------------------


class Job(Answer):
    """One upscale job (``POST /v1/jobs``, ``GET /v1/jobs``)."""

    id: str
    vendor: str
    vendor_job_id: str | None
    status: JobState
    progress: int | None = Field(ge=0, le=100)
    outputs: list[OutputModel]
    error: JobErrorModel | None
    reference: str | None
    params: dict[str, Any] = Field(description="The vendor params as validated and stored.")
    sequence: int = Field(ge=0, description="How many events the job has emitted.")
    flags: list[str] = Field(
        description="e.g. `submit_outcome_unknown`, `conflict`, `payload_anomaly` (a vendor field was left"
        " out: see `anomalies`), `success_without_output` (the vendor said success without a usable"
        " output URL: the job stays running until one comes); `after_relay_timeout`: the vendor's success"
        " came after the relay had failed the job itself (`timeout`, `vendor_timeout`, `outcome_unknown`,"
        " `no_output`), the one move out of `failed` (a vendor's own failure stays final)."
    )
    created_at: Time
    updated_at: Time
    submitted_at: Time | None
    completed_at: Time | None
    source_id: str | None = Field(description="The source whose callback created the job, if any.")
    next_poll_at: Time | None = Field(
        description="The next status poll; on a job the relay failed at its deadline, the next late poll"
        " for a success the vendor may still report (until `RELAY_LATE_POLL_FOR` after the deadline)."
    )
    polls: int = Field(ge=0)
    deadline_at: Time | None
    submit_pending: bool = Field(description="The vendor submit is still to be (re)tried.")
    submit_attempts: int = Field(ge=0)
    submit_error: str | None
    resubmits: int = Field(ge=0)
    previous_vendor_job_ids: list[str]
    idempotency_key: str | None = Field(description="The `Idempotency-Key` the job was submitted with.")
    cost: JobCost | None = Field(
        description="What the vendor billed for the job, every submit included (APIXO: $0.01 per"
        " submitted image, `usd`; Artnex, Apiframe: the credits they report); null when nothing says."
    )
    cost_estimate: JobCost | None = Field(
        description="A forecast cost (Dreamina's `forecastCost`), never added to `cost`."
    )
    charges: list[Charge] = Field(description="What each vendor job of the job cost, oldest submit first.")
    compute_ms: int | None = Field(
        ge=0, description="How long the vendor computed, in milliseconds, when it says (APIXO `costTime`)."
    )
    outcome_via: OutcomeVia | None = Field(
        description="How the terminal state arrived: `callback`, `poll`, the submit's `response`, the"
        " relay's own `submit` failure or `timeout` (`reprocess`: an operator re-ran a callback)."
    )
    anomalies: list[PayloadAnomaly] = Field(
        description="Auxiliary vendor fields that deviated from the vendor's page and were left out"
        " instead of failing the job (flag `payload_anomaly`), first ones first, at most 20."
    )


class PayloadAnomaly(Answer):
    """One vendor field left out: its path in the vendor's body and what was there (JSON text, cut at
    120 characters), e.g. ``{"path": "credits_used", "seen": "\"lots\""}``."""

    path: str
    seen: str


class JobCost(Answer):
    """An amount in the vendor's unit (``usd``, ``credits``)."""

    amount: float
    unit: str


class Charge(Answer):
    """What one vendor job of a job cost: ``submit`` 1 is the job's first accepted submit, 2 and on its
    resubmits; ``kind`` is ``billed`` or ``estimate`` (a forecast). The vendor's latest report counts,
    also from a late or superseded callback."""

    vendor_job_id: str | None
    submit: int = Field(ge=1)
    kind: Literal["billed", "estimate"]
    amount: float
    unit: str


OutcomeVia = Literal["callback", "poll", "response", "reprocess", "submit", "timeout"]


class Inbound(Answer):
    """A stored vendor message. In lists and job detail ``body`` is cut at 8 KiB (``body_truncated``);
    ``body_url`` streams the whole body."""

    id: str
    job_id: str | None
    vendor: str
    kind: InboundKind
    received_at: Time
    peer: str | None
    headers: dict[str, str]
    body: str = Field(description="UTF-8 text, invalid bytes replaced; callback tokens `[redacted]`.")
    size: int = Field(ge=0, description="Bytes of the whole stored body.")
    body_truncated: bool
    body_url: str
    verdict: Verdict
    error: str | None
    event_ids: list[str]


class Event(Answer):
    """A stored event and the exact payload delivered to subscribers."""

    id: str
    job_id: str
    type: EventType
    sequence: int = Field(ge=0)
    created_at: Time
    payload: EventPayload


class JobDetail(Job):
    """One job with its stored vendor messages (newest first) and its events (in sequence order)."""

    inbound: list[Inbound]
    events: list[Event]


class JobList(Page):
    data: list[Job]


class EventList(Page):
    data: list[Event]


class InboundList(Page):
    data: list[Inbound]


# callbacks ---------------------------------------------------------------------------------------------


class CallbackAccepted(Answer):
    """The vendor's message is stored and applied (events and deliveries committed)."""

    ok: Literal[True]
    inbound_id: str
    verdict: Verdict
    event_ids: list[str] = Field(description="Events this message made (none for a duplicate).")


# subscribers ---------------------------------------------------------------------------------------------


class Subscriber(Answer):
    """A subscriber endpoint; its secret is never shown again after creation or rotation."""

    id: str
    url: str
    event_types: list[EventType]
    description: str | None
    enabled: bool
    retry_schedule: list[float] | None = Field(description="Seconds; null uses the relay's schedule.")
    failing_since: Time | None
    disabled_reason: str | None
    previous_secret_expires_at: Time | None = Field(
        description="Until then the secret before the last rotation signs beside the current one."
    )
    created_at: Time
    updated_at: Time


class SubscriberWithSecret(Subscriber):
    """A subscriber with its signing secret, shown only by create and rotate-secret."""

    secret: str = Field(pattern=r"^whsec_", description="Standard Webhooks secret (`whsec_...`).")


class SubscriberList(Page):
    data: list[Subscriber]


class RecoverResult(Answer):
    """How many failed and dead deliveries were re-sent (or, with ``dry_run``, would be)."""

    count: int = Field(ge=0)
    dry_run: bool


# sources -----------------------------------------------------------------------------------------------


class Source(Answer):
    """A callback URL for jobs submitted outside the relay."""

    id: str
    vendor: str
    description: str | None
    created_at: Time


class SourceCreated(Source):
    """A new source with its ``callback_url`` (shown only here: the token is stored hashed)."""

    callback_url: str


class SourceList(Page):
    data: list[Source]


# deliveries --------------------------------------------------------------------------------------------


class Attempt(Answer):
    """One HTTP attempt of a delivery; ``status_code`` is null for network errors."""

    number: int = Field(ge=1)
    started_at: Time
    duration_ms: int = Field(ge=0)
    status_code: int | None
    response_headers: dict[str, str]
    response_body: str = Field(description="The first 4 KiB of the subscriber's answer.")
    error: str | None


class Delivery(Answer):
    """One event to one subscriber (per replay ``generation``)."""

    id: str
    event_id: str
    subscriber_id: str
    generation: int = Field(ge=0)
    status: DeliveryStatus
    attempts: int = Field(ge=0)
    next_attempt_at: Time | None
    last_status_code: int | None
    last_error: str | None
    created_at: Time
    updated_at: Time
    attempt_log: list[Attempt] = Field(description="Every attempt (only in `GET /v1/deliveries/{id}`).")


class DeliveryList(Page):
    data: list[Delivery]


class DeliveryBatch(Answer):
    """The deliveries one request made (not a page: there is no cursor)."""

    data: list[Delivery]


# stats -------------------------------------------------------------------------------------------------


class StatsJobs(Answer):
    """Jobs created in the window by state, and in all."""

    queued: int = Field(ge=0)
    running: int = Field(ge=0)
    succeeded: int = Field(ge=0)
    failed: int = Field(ge=0)
    total: int = Field(ge=0)


class CodeCount(Answer):
    code: str
    count: int = Field(ge=1)


class StatsPercentiles(Answer):
    """Seconds from the submit being accepted to the terminal state being recorded (relay clock),
    interpolated like Postgres' ``percentile_cont``; null without terminal jobs."""

    p50: float | None = Field(ge=0)
    p95: float | None = Field(ge=0)
    p99: float | None = Field(ge=0)


class StatsOutcomeVia(Answer):
    """Terminal jobs by how the outcome arrived: the vendor called back, a status poll found it, the
    submit's answer carried it (Artnex), the submit failed for good, the job's deadline passed."""

    callback: int = Field(ge=0)
    poll: int = Field(ge=0)
    response: int = Field(ge=0)
    submit: int = Field(ge=0)
    timeout: int = Field(ge=0)


class StatsCost(Answer):
    """What a vendor billed for its jobs in one unit (``usd``, ``credits``): the sum, how many jobs were
    billed, and of the sum what submits after a job's first cost (``resubmits``) and what bought results
    nobody received (``unreceived``: vendor jobs a resubmit replaced, and jobs the relay failed itself,
    `timeout`, `vendor_timeout`, `outcome_unknown`, `no_output`, whose success never came)."""

    unit: str
    total: float
    jobs: int = Field(ge=1)
    resubmits: float = Field(ge=0)
    unreceived: float = Field(ge=0)


class StatsEstimate(Answer):
    """What a vendor forecast its jobs would cost in one unit (Dreamina's ``forecastCost``)."""

    unit: str
    total: float
    jobs: int = Field(ge=1)


class StatsSubmits(Answer):
    """Submit attempts sent (every retry counted) and jobs submitted anew after a transient failure."""

    attempts: int = Field(ge=0)
    resubmits: int = Field(ge=0)


class VendorStats(Answer):
    """One vendor's figures over the window."""

    vendor: str
    jobs: StatsJobs
    success_rate: float | None = Field(ge=0, le=1, description="succeeded / (succeeded + failed).")
    failure_codes: list[CodeCount] = Field(description="The 10 most frequent error codes of failed jobs.")
    time_to_terminal_seconds: StatsPercentiles
    outcome_via: StatsOutcomeVia
    lost_callback_share: float | None = Field(
        ge=0, le=1, description="poll / (callback + poll): outcomes a poll found because no callback came."
    )
    duplicate_callbacks: int = Field(ge=0)
    stale_callbacks: int = Field(ge=0)
    signature_rejections: int = Field(ge=0)
    submit_errors: list[CodeCount] = Field(
        description="Jobs whose submit failed for good (their error code), whose submit outcome is"
        " unknown (`outcome_unknown`), or that wait to retry one (the last attempt's code)."
    )
    cost: list[StatsCost]
    cost_estimate: list[StatsEstimate]
    submits: StatsSubmits
    payload_anomalies: list[FieldCount] = Field(
        description="Vendor fields its messages had to leave out (flag `payload_anomaly`): how many jobs"
        " per field path, most first."
    )


class FieldCount(Answer):
    field: str
    count: int = Field(ge=1)


class StatsReport(Answer):
    """Vendors compared by numbers: jobs created and vendor messages received in [since, until)."""

    since: Time | None
    until: Time | None
    vendors: list[VendorStats]


# health ------------------------------------------------------------------------------------------------


class Health(Answer):
    status: Literal["ok"]


class Readiness(Answer):
    status: Literal["ok", "unavailable"]


# query strings -----------------------------------------------------------------------------------------

Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="At most this many per page.")]
Cursor = Annotated[
    str | None,
    Field(description="The `next_cursor` of the page before (opaque: anything else is a 422)."),
]


class PageQuery(BaseModel):
    limit: Limit = 50
    cursor: Cursor = None


class JobQuery(PageQuery):
    vendor: VendorName | None = None
    status: JobState | None = None


class EventQuery(PageQuery):
    job_id: str | None = None
    vendor: VendorName | None = None
    type: EventType | None = None
    since: AwareDatetime | None = Field(default=None, description="ISO-8601: events made at or after.")
    until: AwareDatetime | None = Field(default=None, description="ISO-8601: events made before.")


class InboundQuery(PageQuery):
    job_id: str | None = None
    vendor: VendorName | None = None
    verdict: str | None = Field(default=None, description="A verdict (`applied`, `invalid`, ...).")


class StatsQuery(BaseModel):
    since: AwareDatetime | None = Field(default=None, description="ISO-8601: jobs created at or after.")
    until: AwareDatetime | None = Field(default=None, description="ISO-8601: jobs created before.")
    vendor: VendorName | None = None


class DeliveryQuery(PageQuery):
    status: DeliveryStatus | None = None
    subscriber_id: str | None = None
    event_id: str | None = None


class JobCreateHeaders(BaseModel):
    idempotency_key: str | None = Field(
        default=None,
        alias="Idempotency-Key",
        pattern=r"^[!-~]{1,255}$",
        description="1-255 printable ASCII characters: the same key within 24 h answers the original job"
        " (200, `Idempotent-Replayed: true`) without submitting again; with another body it is a 422.",
    )
