"""The one interface the relay reaches its store through: :class:`Store`, async domain verbs.

Handlers, the ingest pipeline, the poller, the submitter and the delivery worker all take a
:class:`Store` and call its verbs by name, so a reader can follow a call from a handler straight to
the verb (DESIGN.md, "Storage": "one small interface of domain verbs"). Each verb has the name and
parameters of the engine's synchronous verb (:class:`dispatch.store.sqlite.SQLiteStore`) and commits
on its own: everything one vendor message changes is one verb, so one transaction on any engine.

:class:`RunnerStore` implements :class:`Store` over a :class:`Runner` (the SQLite group-commit
:class:`dispatch.store.runner.StoreRunner`, or any engine's runner with the same four methods):
writes go through ``runner.call`` (the single writer's transaction), pure reads through
``runner.read`` (a read connection that never waits behind the write lock).

Example::

    runner = open_runner(settings); runner.start()
    store: Store = RunnerStore(runner)
    job = await store.get_job("job_01J…")
    await store.mark_submitted(job.id, "task_1", poll_at=None, deadline_at=None)
    runner.stop()

Every verb raises :class:`StoreUnavailable` when the database cannot be reached or written (disk
full, locked past ``RELAY_DB_BUSY_TIMEOUT``); nothing of that verb was written then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from dispatch.model import DEFAULT_EVENT_TYPES, Cost, JobUpdate, Output
from dispatch.store.mirrors import MirrorTask
from dispatch.store.records import (
    Attempt,
    Delivery,
    DeliveryWork,
    Event,
    Inbound,
    IngestResult,
    Job,
    RawMessage,
    Source,
    Subscriber,
)
from dispatch.store.stats import StatsReport

if TYPE_CHECKING:  # the synchronous verbs RunnerStore delegates to (types only; any engine's work)
    from dispatch.store.sqlite import SQLiteStore

T = TypeVar("T")


class Runner(Protocol):
    """What :class:`RunnerStore` needs of an engine's runner (:class:`dispatch.store.runner.StoreRunner`).

    ``call(fn)`` runs ``fn(sync_store)`` in the single writer's transaction and returns its result
    (or raises its exception); ``call_hot(fn)`` the same for a short verb of the callback or
    delivery path, which the runner may commit on the event loop's own thread; ``read(fn)`` runs
    the read-only ``fn(sync_store)`` on a read connection. All raise :class:`StoreUnavailable` when
    the database cannot be used.
    """

    def start(self) -> None:
        """Start the runner's workers; once, before the first call."""
        ...

    def stop(self) -> None:
        """Finish queued calls and close the engine's connections."""
        ...

    async def call(self, fn: Callable[[Any], T]) -> T:
        """``fn(store)`` inside the writer's transaction."""
        ...

    async def call_hot(self, fn: Callable[[Any], T]) -> T:
        """``fn(store)`` inside a writing transaction, on the loop's thread where the engine can."""
        ...

    async def read(self, fn: Callable[[Any], T]) -> T:
        """The read-only ``fn(store)`` on a read connection."""
        ...


@dataclass(frozen=True)
class JobDetail:
    """One job with its stored vendor messages (newest first, bodies possibly cut) and its events
    (in sequence order), read at one moment: what ``GET /v1/jobs/{id}`` shows."""

    job: Job
    inbound: tuple[Inbound, ...]
    events: tuple[Event, ...]

    def to_json(self) -> dict[str, Any]:
        """The job's API shape plus ``"inbound": [...]`` and ``"events": [...]``, e.g.
        ``{"id": "job_1", "status": "succeeded", ..., "inbound": [{"id": "in_2", ...}], "events": [...]}``."""
        out = self.job.to_json()
        out["inbound"] = [i.to_json() for i in self.inbound]
        out["events"] = [e.to_json() for e in self.events]
        return out


class Store(Protocol):
    """The relay's store: async domain verbs, each one transaction. Times are unix milliseconds.

    Every verb raises :class:`StoreUnavailable` when the database cannot be reached or written.
    """

    # jobs -----------------------------------------------------------------------------------------
    async def create_job(
        self,
        vendor: str,
        params: dict[str, Any],
        *,
        reference: str | None,
        token_hash: str | None,
        token: str | None = None,
        submit: bool = False,
        submit_lease_ms: int | None = None,
    ) -> Job:
        """Insert a new ``queued`` job. ``token_hash`` is the SHA-256 hex of its callback token
        (``None`` for synchronous vendors); ``token``, when given, is kept encrypted for background
        submits. With ``submit`` the vendor submit is pending in the outbox, already leased for
        ``submit_lease_ms`` by the caller when given.

        Example: ``await create_job("apixo", {"input": {...}}, reference="order-42",
        token_hash="9f2c…", token="q3V…", submit=True)`` → ``Job(id="job_…", status=queued, ...)``.
        Raises :class:`StoreUnavailable`.
        """
        ...

    async def get_job(self, job_id: str) -> Job:
        """The job with ``job_id``, e.g. ``Job(id="job_1", vendor="apixo", status=succeeded, ...)``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def find_job_by_token(self, vendor: str, token_hash: str) -> Job | None:
        """The ``vendor`` job whose callback token hashes to ``token_hash``, e.g. ``Job(id="job_1",
        ...)``, or ``None``. Raises :class:`StoreUnavailable`."""
        ...

    async def list_jobs(
        self,
        *,
        vendor: str | None = None,
        status: str | None = None,
        limit: int = 50,
        after: tuple[int, str] | None = None,
    ) -> list[Job]:
        """Newest jobs first, optionally filtered; at most ``limit``, e.g. ``[Job(id="job_2", ...),
        Job(id="job_1", ...)]``. Raises :class:`StoreUnavailable`."""
        ...

    async def job_detail(self, job_id: str, *, body_prefix: int | None = None, limit: int = 500) -> JobDetail:
        """The job, its newest ``limit`` stored vendor messages (each body cut at ``body_prefix``
        bytes when given) and its events, all from one read, e.g. ``JobDetail(job=Job(id="job_1",
        ...), inbound=(Inbound(id="in_2", ...),), events=(Event(id="evt_…", ...),))``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def job_counts(
        self, *, since: int | None = None, until: int | None = None, vendor: str | None = None
    ) -> dict[tuple[str, str], int]:
        """Jobs created in [since, until) (unix ms) per (vendor, status), e.g.
        ``{("apixo", "succeeded"): 9, ("apixo", "failed"): 1}``. Raises :class:`StoreUnavailable`."""
        ...

    async def vendor_stats(self, *, since: int | None, until: int | None, vendor: str | None) -> StatsReport:
        """Per-vendor analytics for jobs created (and messages received) in [``since``, ``until``)
        (unix ms, ``None``: unbounded), for one ``vendor`` or every vendor with data: jobs by state,
        failure codes, submit-to-terminal percentiles (seconds), how outcomes arrived, duplicate,
        stale and rejected callbacks, submit errors, cost per unit (see
        :class:`dispatch.store.stats.VendorStats`). Example: ``await vendor_stats(since=None,
        until=None, vendor="apixo")`` → ``StatsReport(None, None, (VendorStats("apixo", ...),))``.
        Raises :class:`StoreUnavailable`."""
        ...

    async def mark_submitted(
        self,
        job_id: str,
        vendor_job_id: str | None,
        *,
        poll_at: int | None = None,
        deadline_at: int | None = None,
        cost: Cost | None = None,
    ) -> Job:
        """Record that the vendor accepted the job (its id), emitting ``job.queued`` once;
        ``poll_at`` plans the first status poll, ``deadline_at`` is when a job still not terminal
        fails with ``timeout``, ``cost`` what the vendor bills for the accepted submit when its page
        says (APIXO's $0.01). Example: ``await mark_submitted("job_1", "task_1")`` →
        ``Job(id="job_1", vendor_job_id="task_1", sequence=1, ...)``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    # inbound and events -----------------------------------------------------------------------------
    async def record_message(
        self,
        job_id: str,
        kind: str,
        raw: RawMessage,
        update: JobUpdate | None,
        *,
        verdict: str | None = None,
        error: str | None = None,
        max_callbacks: int | None = None,
        reported: JobUpdate | None = None,
    ) -> IngestResult:
        """Store a raw vendor message (``kind``: ``callback``, ``response``, ``poll``, ``reprocess``)
        and apply its parsed ``update`` through the state machine; new events and their deliveries
        are written in the same transaction. With ``update=None`` the message is kept with
        ``verdict`` (default ``invalid``) and ``error`` only, and the cost of ``reported`` (a parsed
        message not applied: ``superseded``) is recorded. Whatever the verdict, a message's cost is
        recorded against its vendor job. With ``max_callbacks`` a job that already has that many
        stored callbacks takes no more.

        Example: ``await record_message("job_1", "callback", raw, update)`` →
        ``IngestResult("in_…", "applied", Job(status=succeeded, ...), ("evt_…",))``.
        Raises :class:`NotFound` (unknown job), :class:`TooManyRequests` (past ``max_callbacks``;
        nothing written), :class:`StoreUnavailable`.
        """
        ...

    async def get_inbound(self, inbound_id: str) -> Inbound:
        """One stored vendor message, e.g. ``Inbound(id="in_1", job_id="job_1", kind="callback",
        verdict="applied", body=b"{...}", ...)``. Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def list_inbound(
        self,
        *,
        job_id: str | None = None,
        vendor: str | None = None,
        verdict: str | None = None,
        limit: int = 50,
        body_prefix: int | None = None,
        after: tuple[int, str] | None = None,
    ) -> list[Inbound]:
        """Newest stored vendor messages first, optionally filtered; with ``body_prefix`` (bytes)
        each body is read only that far and ``size`` gives its whole length, e.g.
        ``[Inbound(id="in_2", body=b"{\\"code\\":200…", size=1048576, ...)]``.
        Raises :class:`StoreUnavailable`."""
        ...

    async def inbound_body_size(self, inbound_id: str) -> int:
        """Bytes of a stored message's body, e.g. ``1048576``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def read_inbound_body(self, inbound_id: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a stored body from byte ``offset`` (fewer at its end, ``b""`` past
        it), e.g. ``b'{"code":200,'``. Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def get_event(self, eid: str) -> Event:
        """One event, e.g. ``Event(id="evt_…", job_id="job_1", type="job.succeeded", sequence=2,
        body='{"id":"evt_…",...}', ...)``. Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def list_events(
        self,
        *,
        job_id: str | None = None,
        vendor: str | None = None,
        type: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 50,
        after: tuple[int, str] | None = None,
    ) -> list[Event]:
        """Events newest first; ``since``/``until`` bound their creation time, e.g.
        ``[Event(id="evt_b", type="job.succeeded", ...), Event(id="evt_a", type="job.queued", ...)]``.
        Raises :class:`StoreUnavailable`."""
        ...

    async def iter_job_events(self, job_id: str) -> list[Event]:
        """A job's events in sequence order (``[]`` for an unknown job), e.g.
        ``[Event(type="job.queued", sequence=1, ...), Event(type="job.succeeded", sequence=2, ...)]``.
        Raises :class:`StoreUnavailable`."""
        ...

    # polls and sources ------------------------------------------------------------------------------
    async def claim_due_polls(self, worker_id: str, *, now: int, limit: int, lease_ms: int) -> list[Job]:
        """Lease up to ``limit`` unfinished jobs whose ``poll_at`` has come (for ``lease_ms``), e.g.
        ``[Job(id="job_1", poll_at=1764480000000, ...)]``. Raises :class:`StoreUnavailable`."""
        ...

    async def finish_poll(self, job_id: str, *, next_poll_at: int | None, late: bool = False) -> Job:
        """Count one poll and plan the next (``None``: no more), releasing the lease, e.g.
        ``Job(id="job_1", poll_attempts=3, poll_at=1764480010000, ...)``; with ``late``, also for a job
        the relay failed itself (its late polls). Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def poll_soon(self, job_id: str, at: int) -> None:
        """Bring an unfinished job's next poll forward to ``at`` (nothing for a finished or unknown
        job); returns ``None``. Raises :class:`StoreUnavailable`."""
        ...

    async def create_source(self, vendor: str, *, token_hash: str, description: str | None) -> Source:
        """A new source for ``vendor``; its callback token is stored only as ``token_hash``, e.g.
        ``Source(id="src_…", vendor="dreamina", description=None, created_at=...)``.
        Raises :class:`StoreUnavailable`."""
        ...

    async def find_source_by_token(self, vendor: str, token_hash: str) -> Source | None:
        """The ``vendor`` source whose token hashes to ``token_hash``, e.g. ``Source(id="src_1",
        ...)``, or ``None``. Raises :class:`StoreUnavailable`."""
        ...

    async def find_callback_target(self, vendor: str, token_hash: str) -> Job | Source | None:
        """What a callback URL's token opens: the ``vendor`` job whose callback token hashes to
        ``token_hash`` (``Job(id="job_1", ...)``), else the source whose token does (``Source(id=
        "src_1", ...)``), else ``None``; one read for both. Raises :class:`StoreUnavailable`."""
        ...

    async def list_sources(
        self, *, limit: int | None = None, after: tuple[int, str] | None = None
    ) -> list[Source]:
        """Every source, oldest first, e.g. ``[Source(id="src_1", vendor="dreamina", ...)]``.
        Raises :class:`StoreUnavailable`."""
        ...

    async def get_source(self, source_id: str) -> Source:
        """One source, e.g. ``Source(id="src_1", vendor="dreamina", ...)``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def job_for_source(
        self,
        source: Source,
        vendor_job_id: str,
        *,
        poll_at: int | None,
        deadline_at: int | None,
        max_per_hour: int | None = None,
    ) -> Job:
        """The job a source callback is about: found by (source, vendor job id), or created
        ``queued`` on first sight, e.g. ``Job(id="job_…", source_id="src_1", vendor_job_id="t1", ...)``.
        Raises :class:`TooManyRequests` (nothing created) past ``max_per_hour`` new jobs in the
        last hour, :class:`StoreUnavailable`."""
        ...

    async def record_source_message(
        self,
        source: Source,
        vendor_job_id: str,
        raw: RawMessage,
        update: JobUpdate,
        *,
        poll_at: int | None,
        deadline_at: int | None,
        max_per_hour: int | None = None,
        max_callbacks: int | None = None,
    ) -> IngestResult:
        """A source callback in one transaction: find or create the job for (source, vendor job id),
        then :meth:`record_message` it as a ``callback``, so no poll can slip between the job's
        creation and its first callback. Example: ``IngestResult("in_…", "applied", <Job succeeded>,
        ("evt_…",))``. Raises :class:`TooManyRequests` (nothing written) past ``max_per_hour`` new
        jobs or ``max_callbacks`` stored callbacks, :class:`StoreUnavailable`."""
        ...

    async def record_orphan(
        self, vendor: str, kind: str, raw: RawMessage, *, verdict: str, error: str | None
    ) -> str:
        """Keep a vendor message that belongs to no job; returns its inbound id, e.g. ``"in_…"``.
        Raises :class:`StoreUnavailable`."""
        ...

    # subscribers ------------------------------------------------------------------------------------
    async def create_subscriber(
        self,
        url: str,
        *,
        event_types: Sequence[str] = DEFAULT_EVENT_TYPES,
        description: str | None = None,
        enabled: bool = True,
        retry_schedule: Sequence[float] | None = None,
    ) -> tuple[Subscriber, str]:
        """Create a subscriber; returns it and its new secret (shown only this once), e.g.
        ``(Subscriber(id="sub_…", url="https://app.example.com/hooks", ...), "whsec_…")``.
        ``retry_schedule`` (seconds after each failed attempt) overrides the relay's.
        Raises :class:`StoreUnavailable`."""
        ...

    async def get_subscriber(self, sub_id: str) -> Subscriber:
        """One live (not deleted) subscriber, e.g. ``Subscriber(id="sub_1", enabled=True, ...)``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def list_subscribers(
        self, *, limit: int | None = None, after: tuple[int, str] | None = None
    ) -> list[Subscriber]:
        """Every live subscriber, oldest first, e.g. ``[Subscriber(id="sub_1", ...)]``.
        Raises :class:`StoreUnavailable`."""
        ...

    async def update_subscriber(self, sub_id: str, **changes: Any) -> Subscriber:
        """Change ``url``, ``event_types``, ``description``, ``enabled`` or ``retry_schedule``;
        enabling clears the failure streak. Example: ``await update_subscriber("sub_1",
        enabled=False)`` → ``Subscriber(id="sub_1", enabled=False, ...)``. Raises :class:`NotFound`,
        :class:`ValueError` (a field that cannot be changed), :class:`StoreUnavailable`."""
        ...

    async def delete_subscriber(self, sub_id: str) -> None:
        """Delete a subscriber (its pending deliveries end ``dead``, its history stays); returns
        ``None``. Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def rotate_secret(self, sub_id: str, *, overlap_ms: int) -> tuple[Subscriber, str]:
        """A new secret; the old one keeps signing beside it for ``overlap_ms``, e.g.
        ``(Subscriber(id="sub_1", previous_secret_until=1764480086400000, ...), "whsec_…")``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    # deliveries -------------------------------------------------------------------------------------
    async def replay_event(self, event_id: str, subscriber_id: str | None = None) -> list[Delivery]:
        """Deliver a stored event again as a new generation: to ``subscriber_id`` if given, else to
        every enabled subscriber that wants its type, e.g. ``[Delivery(id="dlv_…", generation=1,
        status="pending", ...)]``. Raises :class:`NotFound` (event or subscriber),
        :class:`StoreUnavailable`."""
        ...

    async def get_delivery(self, delivery_id: str) -> Delivery:
        """One delivery with its attempts, e.g. ``Delivery(id="dlv_1", status="retrying",
        attempt_log=(Attempt(number=1, status_code=500, ...),), ...)``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def list_deliveries(
        self,
        *,
        status: str | None = None,
        subscriber_id: str | None = None,
        event_id: str | None = None,
        limit: int = 50,
        after: tuple[int, str] | None = None,
    ) -> list[Delivery]:
        """Newest deliveries first (without attempt logs), optionally filtered, e.g.
        ``[Delivery(id="dlv_2", status="succeeded", ...)]``. Raises :class:`StoreUnavailable`."""
        ...

    async def retry_delivery(self, delivery_id: str) -> Delivery:
        """Make a ``dead``, ``failed`` or ``retrying`` delivery due now with a fresh schedule, e.g.
        ``Delivery(id="dlv_1", status="retrying", next_attempt_at=<now>, ...)``.
        Raises :class:`NotFound`, :class:`Conflict` (it already succeeded), :class:`StoreUnavailable`."""
        ...

    async def claim_due_deliveries(
        self,
        worker_id: str,
        *,
        now: int,
        limit: int,
        lease_ms: int,
        per_subscriber: int = 1_000_000,
        exclude: Sequence[str] = (),
    ) -> list[DeliveryWork]:
        """Lease up to ``limit`` due deliveries to ``worker_id`` until ``now + lease_ms``, at most
        ``per_subscriber`` per subscriber and none for subscribers in ``exclude``; first attempts
        before retries, e.g. ``[DeliveryWork("dlv_1", "evt_…", "sub_1", "https://…", b"{...}",
        ("whsec_…",), 0)]``. Raises :class:`StoreUnavailable`."""
        ...

    async def finish_attempt(
        self,
        delivery_id: str,
        worker_id: str,
        attempt: Attempt,
        *,
        next_attempt_at: int | None,
        disable_after_ms: int | None = None,
    ) -> Delivery:
        """Record one attempt and its outcome, releasing the lease: 2xx ``succeeded``, else
        ``retrying`` at ``next_attempt_at`` or ``dead`` (also on 410, which disables the subscriber,
        as does failing for ``disable_after_ms``), e.g. ``Delivery(id="dlv_1", status="succeeded",
        attempts=1, ...)``. Raises :class:`Conflict` when ``worker_id`` lost the lease (the attempt
        is still recorded), :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def finish_attempts(
        self,
        worker_id: str,
        finished: Sequence[tuple[str, Attempt, int | None]],
        *,
        disable_after_ms: int | None = None,
    ) -> list[Delivery | None]:
        """:meth:`finish_attempt` for several ``(delivery_id, attempt, next_attempt_at)`` in one
        transaction, in order: each the delivery as its attempt left it, or ``None`` where
        ``worker_id`` lost the lease (the attempt is still recorded) or the delivery is gone, e.g.
        ``[Delivery(id="dlv_1", status="succeeded", ...), None]``. Raises :class:`StoreUnavailable`."""
        ...

    async def renew_leases(self, worker_id: str, delivery_ids: Sequence[str], *, until: int) -> int:
        """Extend ``worker_id``'s leases on ``delivery_ids`` to ``until``; returns how many it
        still held, e.g. ``3``. Raises :class:`StoreUnavailable`."""
        ...

    async def count_recoverable(self, sub_id: str, *, since: int, until: int | None) -> int:
        """How many ``failed`` or ``dead`` deliveries of ``sub_id`` were created in [since, until),
        e.g. ``12``. Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def recover_deliveries(
        self, sub_id: str, *, since: int, until: int | None, batch: int = 500
    ) -> int:
        """Re-enqueue up to ``batch`` ``failed`` or ``dead`` deliveries of ``sub_id`` created in
        [since, until), due now; returns how many, e.g. ``500`` (call until ``0``).
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def release_leases(self, worker_id: str) -> int:
        """Give back every delivery lease ``worker_id`` holds; returns how many, e.g. ``2``.
        Raises :class:`StoreUnavailable`."""
        ...

    async def prune(self, *, before: int, dry_run: bool = False) -> dict[str, int]:
        """Delete history older than ``before`` (unix ms): stored vendor messages, attempts of
        succeeded deliveries, events whose every delivery succeeded; never a job's latest state,
        undelivered work or dead letters. Returns the counts (``dry_run``: what would go), e.g.
        ``{"inbound": 120, "attempts": 300, "deliveries": 280, "events": 140}``. Raises
        :class:`StoreUnavailable`."""
        ...

    async def next_due_at(self) -> int | None:
        """Unix ms of the earliest pending or retrying delivery, e.g. ``1764480000000``, or ``None``.
        Raises :class:`StoreUnavailable`."""
        ...

    async def operations_snapshot(self, now: int) -> dict[str, float]:
        """What ``GET /metrics`` gauges show, at ``now`` (unix ms): deliveries due now, the age in
        seconds of the oldest due one (0 when none), dead letters and disabled subscribers, e.g.
        ``{"deliveries_due": 3, "oldest_due_age_seconds": 12.5, "dead_letters": 1,
        "disabled_subscribers": 0}``. Raises :class:`StoreUnavailable`."""
        ...

    # submit outbox ----------------------------------------------------------------------------------
    async def create_idempotent_job(
        self,
        vendor: str,
        params: dict[str, Any],
        *,
        reference: str | None,
        token_hash: str | None,
        token: str | None,
        submit_lease_ms: int | None,
        idempotency_key: str,
        request_hash: str,
        window_ms: int,
    ) -> tuple[Job, bool]:
        """Create the job for ``idempotency_key`` once: ``(job, True)`` when this call created it (submit
        pending), ``(original, False)`` for the same key and request within ``window_ms`` (also when
        both arrive at once). Example: ``(<Job queued>, True)``. Raises :class:`ValidationFailed` (the
        key was used with a different request), :class:`StoreUnavailable`."""
        ...

    async def claim_submit(self, job_id: str, *, now: int, lease_ms: int) -> tuple[Job, bool] | None:
        """Lease one job's due submit: ``(job, interrupted)`` (``interrupted``: an earlier lease
        expired mid-send), e.g. ``(Job(id="job_1", ...), False)``, or ``None`` when it has none due
        or another holds it. Raises :class:`StoreUnavailable`."""
        ...

    async def claim_due_submits(self, *, now: int, limit: int, lease_ms: int) -> list[tuple[Job, bool]]:
        """Lease up to ``limit`` due submits, oldest first, each as :meth:`claim_submit` returns it,
        e.g. ``[(Job(id="job_1", ...), False)]``. Raises :class:`StoreUnavailable`."""
        ...

    async def renew_submit_lease(self, job_id: str, *, until: int) -> bool:
        """Extend a submit lease still held to ``until``; ``False`` when the submit ended, e.g.
        ``True``. Raises :class:`StoreUnavailable`."""
        ...

    async def retry_submit_at(self, job_id: str, at: int, reason: str) -> Job:
        """Plan the next submit attempt at ``at``, keeping ``reason`` (e.g. ``"rate_limited: HTTP
        429"``), releasing the lease, e.g. ``Job(id="job_1", submit_at=1764480030000, ...)``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def end_submit(
        self, job_id: str, *, outcome_unknown: bool = False, poll_at: int | None = None
    ) -> Job:
        """No more submit attempts; with ``outcome_unknown`` the job is flagged
        ``submit_outcome_unknown`` and looked at again at ``poll_at``, e.g. ``Job(id="job_1",
        submit_at=None, flags=("submit_outcome_unknown",), ...)``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def resubmit(
        self,
        job_id: str,
        kind: str,
        raw: RawMessage,
        reason: str,
        *,
        at: int | None = None,
        reported: JobUpdate | None = None,
    ) -> IngestResult:
        """Store a vendor message that failed the job transiently (``reported``: its parsed update,
        whose cost is recorded) and plan a new submit at ``at`` (unix ms; now when ``None``) instead of
        failing it, e.g. ``IngestResult("in_…", "resubmitted", Job(status=queued, resubmits=1, ...),
        ())``. Raises :class:`NotFound`, :class:`StoreUnavailable`."""
        ...

    async def callback_token(self, job_id: str) -> str | None:
        """The job's callback token in clear, e.g. ``"q3V…"``, or ``None`` for synchronous vendors.
        Raises :class:`NotFound`, :class:`ValidationFailed` (the secret key changed since),
        :class:`StoreUnavailable`."""
        ...

    # mirrors ----------------------------------------------------------------------------------------
    async def claim_due_mirrors(self, *, now: int, limit: int, lease_ms: int) -> list[MirrorTask]:
        """Lease up to ``limit`` due mirror tasks (each due again at ``now + lease_ms`` unless ended
        first), e.g. ``[MirrorTask(Job(id="job_1", ...), attempts=1, deadline_at=1764562800000,
        results=(None,))]``. Raises :class:`StoreUnavailable`."""
        ...

    async def retry_mirror(
        self, job_id: str, *, at: int, results: Sequence[Output | None], error: str
    ) -> None:
        """Plan the next copy attempt at ``at``, keeping ``results`` (per output index, ``None``: not
        copied yet) and ``error`` (e.g. ``"expired: HTTP 404"``); returns ``None``.
        Raises :class:`NotFound` (no pending mirror task), :class:`StoreUnavailable`."""
        ...

    async def renew_mirror_lease(self, job_id: str, *, until: int) -> bool:
        """Extend a mirror task's lease to ``until`` (unix ms) while its copy runs; ``False`` when it
        holds none any more. Raises :class:`StoreUnavailable`."""
        ...

    async def release_mirror(self, job_id: str, *, results: Sequence[Output | None]) -> bool:
        """Make a claimed mirror task due now for any runner, keeping ``results`` (an abandoned
        attempt, not counted); ``False`` when it holds no lease. Raises :class:`StoreUnavailable`."""
        ...

    async def complete_mirror(self, job_id: str, outputs: Sequence[Output]) -> tuple[Job, bool]:
        """Set a succeeded job's outputs (each with ``mirror`` or ``mirror_error``), end its mirror
        task and emit its held ``job.succeeded`` (or rewrite the stored one's body on a re-mirror), in
        one transaction; ``(job, emitted)``, e.g. ``(Job(id="job_1", ...), True)``.
        Raises :class:`NotFound`, :class:`ValidationFailed`, :class:`StoreUnavailable`."""
        ...

    async def next_mirror_at(self) -> int | None:
        """Unix ms when the earliest pending mirror task is due, e.g. ``1764480000000``, or ``None``.
        Raises :class:`StoreUnavailable`."""
        ...

    async def ping(self) -> bool:
        """Readiness: ``True`` when the database answers a trivial query, ``False`` when it does
        not. Raises :class:`StoreUnavailable` only when the check itself cannot be scheduled (a
        runner without a read connection whose write transaction cannot start)."""
        ...

    # console sessions -----------------------------------------------------------------------------
    async def revoke_session(self, sid: str, *, until: int, now: int) -> None:
        """Keep console session ``sid`` signed out until ``until`` (unix ms, when its cookie expires
        anyway), on every process; forgets revocations that ended before ``now``. Raises
        :class:`StoreUnavailable`."""
        ...

    async def session_revoked(self, sid: str, *, now: int) -> bool:
        """Whether console session ``sid`` was signed out (its revocation runs at ``now``, unix ms).
        Raises :class:`StoreUnavailable`."""
        ...


SOURCE_CACHE_SIZE = 4096  # sources remembered by token per process (cleared whole when full)


class RunnerStore(Store):
    """:class:`Store` over a :class:`Runner`: writes through ``runner.call``, reads (``get_*``,
    ``list_*``, ``find_*``, counts, bodies, tokens, ``ping``) through ``runner.read``.

    Example: ``store = RunnerStore(open_runner(settings))``; ``await store.get_job("job_1")``.
    The runner is started and stopped by whoever opened it; ``runner`` stays reachable for that.
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        # sources never change once created (no update or delete verb), so a token that opened one
        # opens the same one for good: callbacks on a source URL skip the read
        self._sources: dict[tuple[str, str], Source] = {}

    async def _write(self, fn: Callable[[SQLiteStore], T]) -> T:
        return await self.runner.call(fn)

    async def _write_hot(self, fn: Callable[[SQLiteStore], T]) -> T:
        """A short verb of the callback or delivery path: ``runner.call_hot`` (on SQLite it may
        commit on the event loop's thread, saving the thread hand-offs)."""
        return await self.runner.call_hot(fn)

    async def _read(self, fn: Callable[[SQLiteStore], T]) -> T:
        return await self.runner.read(fn)

    # jobs
    async def create_job(
        self,
        vendor: str,
        params: dict[str, Any],
        *,
        reference: str | None,
        token_hash: str | None,
        token: str | None = None,
        submit: bool = False,
        submit_lease_ms: int | None = None,
    ) -> Job:
        return await self._write(
            lambda s: s.create_job(
                vendor,
                params,
                reference=reference,
                token_hash=token_hash,
                token=token,
                submit=submit,
                submit_lease_ms=submit_lease_ms,
            )
        )

    async def get_job(self, job_id: str) -> Job:
        return await self._read(lambda s: s.get_job(job_id))

    async def find_job_by_token(self, vendor: str, token_hash: str) -> Job | None:
        return await self._read(lambda s: s.find_job_by_token(vendor, token_hash))

    async def list_jobs(
        self,
        *,
        vendor: str | None = None,
        status: str | None = None,
        limit: int = 50,
        after: tuple[int, str] | None = None,
    ) -> list[Job]:
        return await self._read(lambda s: s.list_jobs(vendor=vendor, status=status, limit=limit, after=after))

    async def job_detail(self, job_id: str, *, body_prefix: int | None = None, limit: int = 500) -> JobDetail:
        def detail(s: SQLiteStore) -> JobDetail:
            job = s.get_job(job_id)
            inbound = s.list_inbound(job_id=job_id, limit=limit, body_prefix=body_prefix)
            return JobDetail(job, tuple(inbound), tuple(s.iter_job_events(job_id)))

        return await self._read(detail)

    async def job_counts(
        self, *, since: int | None = None, until: int | None = None, vendor: str | None = None
    ) -> dict[tuple[str, str], int]:
        return await self._read(lambda s: s.job_counts(since=since, until=until, vendor=vendor))

    async def vendor_stats(self, *, since: int | None, until: int | None, vendor: str | None) -> StatsReport:
        return await self._read(lambda s: s.vendor_stats(since=since, until=until, vendor=vendor))

    async def mark_submitted(
        self,
        job_id: str,
        vendor_job_id: str | None,
        *,
        poll_at: int | None = None,
        deadline_at: int | None = None,
        cost: Cost | None = None,
    ) -> Job:
        return await self._write(
            lambda s: s.mark_submitted(
                job_id, vendor_job_id, poll_at=poll_at, deadline_at=deadline_at, cost=cost
            )
        )

    # inbound and events
    async def record_message(
        self,
        job_id: str,
        kind: str,
        raw: RawMessage,
        update: JobUpdate | None,
        *,
        verdict: str | None = None,
        error: str | None = None,
        max_callbacks: int | None = None,
        reported: JobUpdate | None = None,
    ) -> IngestResult:
        return await self._write_hot(
            lambda s: s.record_message(
                job_id,
                kind,
                raw,
                update,
                verdict=verdict,
                error=error,
                max_callbacks=max_callbacks,
                reported=reported,
            )
        )

    async def get_inbound(self, inbound_id: str) -> Inbound:
        return await self._read(lambda s: s.get_inbound(inbound_id))

    async def list_inbound(
        self,
        *,
        job_id: str | None = None,
        vendor: str | None = None,
        verdict: str | None = None,
        limit: int = 50,
        body_prefix: int | None = None,
        after: tuple[int, str] | None = None,
    ) -> list[Inbound]:
        return await self._read(
            lambda s: s.list_inbound(
                job_id=job_id,
                vendor=vendor,
                verdict=verdict,
                limit=limit,
                body_prefix=body_prefix,
                after=after,
            )
        )

    async def inbound_body_size(self, inbound_id: str) -> int:
        return await self._read(lambda s: s.inbound_body_size(inbound_id))

    async def read_inbound_body(self, inbound_id: str, offset: int, length: int) -> bytes:
        return await self._read(lambda s: s.read_inbound_body(inbound_id, offset, length))

    async def get_event(self, eid: str) -> Event:
        return await self._read(lambda s: s.get_event(eid))

    async def list_events(
        self,
        *,
        job_id: str | None = None,
        vendor: str | None = None,
        type: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 50,
        after: tuple[int, str] | None = None,
    ) -> list[Event]:
        return await self._read(
            lambda s: s.list_events(
                job_id=job_id, vendor=vendor, type=type, since=since, until=until, limit=limit, after=after
            )
        )

    async def iter_job_events(self, job_id: str) -> list[Event]:
        return await self._read(lambda s: list(s.iter_job_events(job_id)))

    # polls and sources
    async def claim_due_polls(self, worker_id: str, *, now: int, limit: int, lease_ms: int) -> list[Job]:
        return await self._write(
            lambda s: s.claim_due_polls(worker_id, now=now, limit=limit, lease_ms=lease_ms)
        )

    async def finish_poll(self, job_id: str, *, next_poll_at: int | None, late: bool = False) -> Job:
        return await self._write(lambda s: s.finish_poll(job_id, next_poll_at=next_poll_at, late=late))

    async def poll_soon(self, job_id: str, at: int) -> None:
        await self._write(lambda s: s.poll_soon(job_id, at))

    async def create_source(self, vendor: str, *, token_hash: str, description: str | None) -> Source:
        return await self._write(
            lambda s: s.create_source(vendor, token_hash=token_hash, description=description)
        )

    async def find_source_by_token(self, vendor: str, token_hash: str) -> Source | None:
        return await self._read(lambda s: s.find_source_by_token(vendor, token_hash))

    async def find_callback_target(self, vendor: str, token_hash: str) -> Job | Source | None:
        cached = self._sources.get((vendor, token_hash))
        if cached is not None:
            return cached
        found = await self._read(lambda s: s.find_callback_target(vendor, token_hash))
        if isinstance(found, Source):
            if len(self._sources) >= SOURCE_CACHE_SIZE:
                self._sources.clear()
            self._sources[(vendor, token_hash)] = found
        return found

    async def list_sources(
        self, *, limit: int | None = None, after: tuple[int, str] | None = None
    ) -> list[Source]:
        return await self._read(lambda s: s.list_sources(limit=limit, after=after))

    async def get_source(self, source_id: str) -> Source:
        return await self._read(lambda s: s.get_source(source_id))

    async def record_source_message(
        self,
        source: Source,
        vendor_job_id: str,
        raw: RawMessage,
        update: JobUpdate,
        *,
        poll_at: int | None,
        deadline_at: int | None,
        max_per_hour: int | None = None,
        max_callbacks: int | None = None,
    ) -> IngestResult:
        return await self._write_hot(
            lambda s: s.record_source_message(
                source,
                vendor_job_id,
                raw,
                update,
                poll_at=poll_at,
                deadline_at=deadline_at,
                max_per_hour=max_per_hour,
                max_callbacks=max_callbacks,
            )
        )

    async def job_for_source(
        self,
        source: Source,
        vendor_job_id: str,
        *,
        poll_at: int | None,
        deadline_at: int | None,
        max_per_hour: int | None = None,
    ) -> Job:
        return await self._write(
            lambda s: s.job_for_source(
                source, vendor_job_id, poll_at=poll_at, deadline_at=deadline_at, max_per_hour=max_per_hour
            )
        )

    async def record_orphan(
        self, vendor: str, kind: str, raw: RawMessage, *, verdict: str, error: str | None
    ) -> str:
        return await self._write_hot(
            lambda s: s.record_orphan(vendor, kind, raw, verdict=verdict, error=error)
        )

    # subscribers
    async def create_subscriber(
        self,
        url: str,
        *,
        event_types: Sequence[str] = DEFAULT_EVENT_TYPES,
        description: str | None = None,
        enabled: bool = True,
        retry_schedule: Sequence[float] | None = None,
    ) -> tuple[Subscriber, str]:
        return await self._write(
            lambda s: s.create_subscriber(
                url,
                event_types=event_types,
                description=description,
                enabled=enabled,
                retry_schedule=retry_schedule,
            )
        )

    async def get_subscriber(self, sub_id: str) -> Subscriber:
        return await self._read(lambda s: s.get_subscriber(sub_id))

    async def list_subscribers(
        self, *, limit: int | None = None, after: tuple[int, str] | None = None
    ) -> list[Subscriber]:
        return await self._read(lambda s: s.list_subscribers(limit=limit, after=after))

    async def update_subscriber(self, sub_id: str, **changes: Any) -> Subscriber:
        return await self._write(lambda s: s.update_subscriber(sub_id, **changes))

    async def delete_subscriber(self, sub_id: str) -> None:
        await self._write(lambda s: s.delete_subscriber(sub_id))

    async def rotate_secret(self, sub_id: str, *, overlap_ms: int) -> tuple[Subscriber, str]:
        return await self._write(lambda s: s.rotate_secret(sub_id, overlap_ms=overlap_ms))

    # deliveries
    async def replay_event(self, event_id: str, subscriber_id: str | None = None) -> list[Delivery]:
        return await self._write(lambda s: s.replay_event(event_id, subscriber_id))

    async def get_delivery(self, delivery_id: str) -> Delivery:
        return await self._read(lambda s: s.get_delivery(delivery_id))

    async def list_deliveries(
        self,
        *,
        status: str | None = None,
        subscriber_id: str | None = None,
        event_id: str | None = None,
        limit: int = 50,
        after: tuple[int, str] | None = None,
    ) -> list[Delivery]:
        return await self._read(
            lambda s: s.list_deliveries(
                status=status, subscriber_id=subscriber_id, event_id=event_id, limit=limit, after=after
            )
        )

    async def retry_delivery(self, delivery_id: str) -> Delivery:
        return await self._write(lambda s: s.retry_delivery(delivery_id))

    async def claim_due_deliveries(
        self,
        worker_id: str,
        *,
        now: int,
        limit: int,
        lease_ms: int,
        per_subscriber: int = 1_000_000,
        exclude: Sequence[str] = (),
    ) -> list[DeliveryWork]:
        return await self._write_hot(
            lambda s: s.claim_due_deliveries(
                worker_id,
                now=now,
                limit=limit,
                lease_ms=lease_ms,
                per_subscriber=per_subscriber,
                exclude=exclude,
            )
        )

    async def finish_attempt(
        self,
        delivery_id: str,
        worker_id: str,
        attempt: Attempt,
        *,
        next_attempt_at: int | None,
        disable_after_ms: int | None = None,
    ) -> Delivery:
        return await self._write_hot(
            lambda s: s.finish_attempt(
                delivery_id,
                worker_id,
                attempt,
                next_attempt_at=next_attempt_at,
                disable_after_ms=disable_after_ms,
            )
        )

    async def finish_attempts(
        self,
        worker_id: str,
        finished: Sequence[tuple[str, Attempt, int | None]],
        *,
        disable_after_ms: int | None = None,
    ) -> list[Delivery | None]:
        items = list(finished)
        return await self._write_hot(
            lambda s: s.finish_attempts(worker_id, items, disable_after_ms=disable_after_ms)
        )

    async def renew_leases(self, worker_id: str, delivery_ids: Sequence[str], *, until: int) -> int:
        ids = list(delivery_ids)  # a snapshot: the caller's set changes while the call waits its turn
        return await self._write(lambda s: s.renew_leases(worker_id, ids, until=until))

    async def count_recoverable(self, sub_id: str, *, since: int, until: int | None) -> int:
        return await self._read(lambda s: s.count_recoverable(sub_id, since=since, until=until))

    async def recover_deliveries(
        self, sub_id: str, *, since: int, until: int | None, batch: int = 500
    ) -> int:
        return await self._write(
            lambda s: s.recover_deliveries(sub_id, since=since, until=until, batch=batch)
        )

    async def release_leases(self, worker_id: str) -> int:
        return await self._write(lambda s: s.release_leases(worker_id))

    async def prune(self, *, before: int, dry_run: bool = False) -> dict[str, int]:
        return await self._write(lambda s: s.prune(before=before, dry_run=dry_run))

    async def next_due_at(self) -> int | None:
        return await self._read(lambda s: s.next_due_at())

    async def operations_snapshot(self, now: int) -> dict[str, float]:
        return await self._read(lambda s: s.operations_snapshot(now))

    # submit outbox
    async def create_idempotent_job(
        self,
        vendor: str,
        params: dict[str, Any],
        *,
        reference: str | None,
        token_hash: str | None,
        token: str | None,
        submit_lease_ms: int | None,
        idempotency_key: str,
        request_hash: str,
        window_ms: int,
    ) -> tuple[Job, bool]:
        return await self._write(
            lambda s: s.create_idempotent_job(
                vendor,
                params,
                reference=reference,
                token_hash=token_hash,
                token=token,
                submit_lease_ms=submit_lease_ms,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                window_ms=window_ms,
            )
        )

    async def claim_submit(self, job_id: str, *, now: int, lease_ms: int) -> tuple[Job, bool] | None:
        return await self._write(lambda s: s.claim_submit(job_id, now=now, lease_ms=lease_ms))

    async def claim_due_submits(self, *, now: int, limit: int, lease_ms: int) -> list[tuple[Job, bool]]:
        return await self._write(lambda s: s.claim_due_submits(now=now, limit=limit, lease_ms=lease_ms))

    async def renew_submit_lease(self, job_id: str, *, until: int) -> bool:
        return await self._write(lambda s: s.renew_submit_lease(job_id, until=until))

    async def retry_submit_at(self, job_id: str, at: int, reason: str) -> Job:
        return await self._write(lambda s: s.retry_submit_at(job_id, at, reason))

    async def end_submit(
        self, job_id: str, *, outcome_unknown: bool = False, poll_at: int | None = None
    ) -> Job:
        return await self._write(
            lambda s: s.end_submit(job_id, outcome_unknown=outcome_unknown, poll_at=poll_at)
        )

    async def resubmit(
        self,
        job_id: str,
        kind: str,
        raw: RawMessage,
        reason: str,
        *,
        at: int | None = None,
        reported: JobUpdate | None = None,
    ) -> IngestResult:
        return await self._write(lambda s: s.resubmit(job_id, kind, raw, reason, at=at, reported=reported))

    async def callback_token(self, job_id: str) -> str | None:
        return await self._read(lambda s: s.callback_token(job_id))

    # mirrors
    async def claim_due_mirrors(self, *, now: int, limit: int, lease_ms: int) -> list[MirrorTask]:
        return await self._write(lambda s: s.claim_due_mirrors(now=now, limit=limit, lease_ms=lease_ms))

    async def retry_mirror(
        self, job_id: str, *, at: int, results: Sequence[Output | None], error: str
    ) -> None:
        kept = list(results)
        await self._write(lambda s: s.retry_mirror(job_id, at=at, results=kept, error=error))

    async def renew_mirror_lease(self, job_id: str, *, until: int) -> bool:
        return await self._write(lambda s: s.renew_mirror_lease(job_id, until=until))

    async def release_mirror(self, job_id: str, *, results: Sequence[Output | None]) -> bool:
        kept = list(results)
        return await self._write(lambda s: s.release_mirror(job_id, results=kept))

    async def complete_mirror(self, job_id: str, outputs: Sequence[Output]) -> tuple[Job, bool]:
        kept = list(outputs)
        return await self._write(lambda s: s.complete_mirror(job_id, kept))

    async def next_mirror_at(self) -> int | None:
        return await self._read(lambda s: s.next_mirror_at())

    async def ping(self) -> bool:
        return await self._read(lambda s: s.ping())

    async def revoke_session(self, sid: str, *, until: int, now: int) -> None:
        await self._write(lambda s: s.revoke_session(sid, until=until, now=now))

    async def session_revoked(self, sid: str, *, now: int) -> bool:
        return await self._read(lambda s: s.session_revoked(sid, now=now))
