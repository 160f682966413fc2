"""Store verbs for jobs, raw vendor messages (inbound) and events."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from dispatch.costs import Charge, charge_of, submit_number, totals, with_charge
from dispatch.errors import NotFound, TooManyRequests
from dispatch.events import event_body
from dispatch.model import (
    Anomaly,
    Cost,
    EventType,
    InboundKind,
    JobError,
    JobState,
    JobUpdate,
    Output,
    Verdict,
    event_id,
    new_id,
    now_ms,
)
from dispatch.secretbox import SecretBox
from dispatch.state import AFTER_RELAY_TIMEOUT, APPLIED, failed_by_relay, transition
from dispatch.store.records import Event, Inbound, IngestResult, Job, RawMessage, evolve
from dispatch.store.sql import Conn, Dialect

_JOB_COLUMNS = (
    "id, vendor, vendor_job_id, status, progress, outputs, error, reference, params, sequence, flags,"
    " created_at, updated_at, submitted_at, completed_at, source_id, poll_at, poll_attempts, deadline_at,"
    " callback_count, submit_at, submit_attempts, submit_error, resubmits, previous_vendor_job_ids,"
    " idempotency_key, cost_amount, cost_unit, outcome_via, turnaround_ms, charges, cost_resubmits,"
    " cost_superseded, estimate_amount, estimate_unit, compute_ms, anomalies"
)

_JOB_COLUMN_NAMES = tuple(name.strip() for name in _JOB_COLUMNS.split(","))
_JOB_VALUES = operator.attrgetter(*_JOB_COLUMN_NAMES)  # a Job's attributes in column order
_INSERT_JOB = f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * len(_JOB_COLUMN_NAMES))})"


def _job(row: Any) -> Job:
    err = json.loads(row["error"]) if row["error"] else None
    return Job(
        id=row["id"],
        vendor=row["vendor"],
        vendor_job_id=row["vendor_job_id"],
        status=JobState(row["status"]),
        progress=row["progress"],
        outputs=tuple(Output.from_json(o) for o in json.loads(row["outputs"] or "[]")),
        error=JobError(err["code"], err.get("message")) if err else None,
        reference=row["reference"],
        params=json.loads(row["params"]),
        sequence=row["sequence"],
        flags=tuple(json.loads(row["flags"] or "[]")),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        submitted_at=row["submitted_at"],
        completed_at=row["completed_at"],
        source_id=row["source_id"],
        poll_at=row["poll_at"],
        poll_attempts=row["poll_attempts"] or 0,
        deadline_at=row["deadline_at"],
        callback_count=row["callback_count"] or 0,
        submit_at=row["submit_at"],
        submit_attempts=row["submit_attempts"] or 0,
        submit_error=row["submit_error"],
        resubmits=row["resubmits"] or 0,
        previous_vendor_job_ids=tuple(json.loads(row["previous_vendor_job_ids"] or "[]")),
        idempotency_key=row["idempotency_key"],
        cost_amount=row["cost_amount"],
        cost_unit=row["cost_unit"],
        outcome_via=row["outcome_via"],
        turnaround_ms=row["turnaround_ms"],
        charges=tuple(Charge.from_json(c) for c in json.loads(row["charges"] or "[]")),
        cost_resubmits=row["cost_resubmits"],
        cost_superseded=row["cost_superseded"],
        estimate_amount=row["estimate_amount"],
        estimate_unit=row["estimate_unit"],
        compute_ms=row["compute_ms"],
        anomalies=tuple(Anomaly(a["path"], a["seen"]) for a in json.loads(row["anomalies"] or "[]")),
    )


def _event(row: Any) -> Event:
    return Event(
        id=row["id"],
        job_id=row["job_id"],
        type=row["type"],
        sequence=row["sequence"],
        created_at=row["created_at"],
        body=row["body"],
    )


def _inbound(row: Any) -> Inbound:
    return Inbound(
        id=row["id"],
        job_id=row["job_id"],
        vendor=row["vendor"],
        kind=row["kind"],
        received_at=row["received_at"],
        peer=row["peer"],
        headers=json.loads(row["headers"] or "{}"),
        body=bytes(row["body"] or b""),
        verdict=row["verdict"],
        error=row["error"],
        event_ids=tuple(json.loads(row["event_ids"] or "[]")),
        size=row["size"] if "size" in row.keys() else None,  # noqa: SIM118 -- sqlite3.Row: `in` tests values
    )


RELAY_OUTCOMES = {"submit_error": "submit", "timeout": "timeout"}
"""``JobUpdate.raw_state`` values of terminal updates the relay makes itself (not a vendor callback)
→ the ``outcome_via`` they record: ``receiver.submit`` fails a submit that failed for good
(``submit_error``), ``receiver.poller`` fails a job past its deadline (``timeout``)."""

EXPIRED_FLAG = "vendor_expired"
"""Job flag: the vendor said its results are gone (Apiframe's ``expired: true``, adapters put it in
``JobUpdate.extra["expired"]``); the output URLs no longer work."""

PAYLOAD_ANOMALY_FLAG = "payload_anomaly"
"""Job flag: a vendor message had an auxiliary field that deviated from the vendor's page and was
left out (``JobUpdate.anomalies``); which ones is in ``Job.anomalies``."""

SUCCESS_WITHOUT_OUTPUT_FLAG = "success_without_output"
"""Job flag: the vendor said the job succeeded but gave no usable output URL. That is not a success
yet: the job stays running (polled again for the URL) until a message with the URL succeeds it."""

MAX_ANOMALIES = 20
"""At most this many distinct ``(path, seen)`` anomalies are kept per job (the first ones)."""


class JobVerbs:
    """Jobs, inbound messages and events. Mixed into :class:`dispatch.store.sqlite.SQLiteStore`."""

    conn: Conn
    sql: Dialect
    box: SecretBox

    if TYPE_CHECKING:  # provided by SQLiteStore and DeliveryVerbs

        def transaction(self) -> AbstractContextManager[Conn]: ...

        def lock(self, key: str) -> None: ...

        def notify_due(self) -> None: ...

        def _enqueue_deliveries(
            self, events: list[tuple[str, str]], now: int, version: int | None
        ) -> int: ...

        def _hold_succeeded(
            self, job: Job, events: tuple[tuple[str, int | None], ...], now: int
        ) -> tuple[tuple[str, int | None], ...]: ...

    # jobs -------------------------------------------------------------------------------------
    def create_job(
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
        """Insert a new ``queued`` job and return it. ``token_hash`` is the SHA-256 hex of its
        callback token (``None`` for synchronous vendors); ``token`` itself, when given, is kept
        encrypted for background submits. With ``submit`` the vendor submit is pending in the outbox
        from this commit on (due now; see :mod:`dispatch.store.submits`), already leased for
        ``submit_lease_ms`` by the caller when given (so the first attempt is the caller's, not a
        worker's that happened to look in between).

        Example: ``create_job("apixo", {"input": {...}}, reference="order-42", token_hash="9f2c…",
        token="q3V…", submit=True)`` → ``Job(id="job_…", status=queued, submit_at=<now>, ...)``.
        Raises :class:`StoreUnavailable`.
        """
        now = now_ms()
        job_id = new_id("job")
        sealed = self.box.encrypt(token) if token is not None else None
        lease = now + submit_lease_ms if submit and submit_lease_ms is not None else None
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO jobs (id, vendor, status, params, reference, token_hash, sequence, flags,"
                " outputs, created_at, updated_at, callback_token, submit_at, submit_lease_until, submit_attempts)"
                " VALUES (?, ?, 'queued', ?, ?, ?, 0, '[]', '[]', ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    vendor,
                    json.dumps(params),
                    reference,
                    token_hash,
                    now,
                    now,
                    sealed,
                    now if submit else None,
                    lease,
                    1 if lease else 0,
                ),
            )
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> Job:
        """The job with ``job_id``. Raises :class:`NotFound`."""
        return self._load_job(job_id)

    def _load_job(self, job_id: str, *, for_update: bool = False) -> Job:
        """:meth:`get_job`; with ``for_update`` the row stays locked until the transaction ends
        (Postgres; SQLite's writer holds the whole database)."""
        lock = self.sql.for_update if for_update else ""
        row = self.conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?{lock}", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return _job(row)

    def find_job_by_token(self, vendor: str, token_hash: str) -> Job | None:
        """The job whose callback token hashes to ``token_hash`` for ``vendor``, or ``None``."""
        row = self.conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE token_hash = ? AND vendor = ?", (token_hash, vendor)
        ).fetchone()
        return _job(row) if row else None

    def list_jobs(
        self,
        *,
        vendor: str | None = None,
        status: str | None = None,
        limit: int = 50,
        after: tuple[int, str] | None = None,
    ) -> list[Job]:
        """Newest jobs first, optionally filtered by vendor and status; at most ``limit``.

        Keyset pagination: ``after`` is the ``(time, id)`` of the last row of the previous page (see
        :func:`dispatch.store.sql.page_key`); rows inserted meanwhile never shift a page.
        """
        where, args = _filters(vendor=vendor, status=status)
        where, args = _after(where, args, "(created_at, id) < (?, ?)", after)
        rows = self.conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_job(r) for r in rows]

    def job_counts(
        self, *, since: int | None = None, until: int | None = None, vendor: str | None = None
    ) -> dict[tuple[str, str], int]:
        """Jobs created in [since, until) (unix ms) per (vendor, status), one SQL aggregate, e.g.
        ``{("apixo", "succeeded"): 9, ("apixo", "failed"): 1}``. Raises :class:`StoreUnavailable`."""
        clauses, args = [], []
        for clause, value in (("created_at >= ?", since), ("created_at < ?", until), ("vendor = ?", vendor)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.conn.execute(
            f"SELECT vendor, status, COUNT(*) AS n FROM jobs {where} GROUP BY vendor, status", args
        ).fetchall()
        return {(r["vendor"], r["status"]): int(r["n"]) for r in rows}

    def mark_submitted(
        self,
        job_id: str,
        vendor_job_id: str | None,
        *,
        poll_at: int | None = None,
        deadline_at: int | None = None,
        cost: Cost | None = None,
    ) -> Job:
        """Record that the vendor accepted the job (its id), emitting ``job.queued`` once.

        ``poll_at`` (unix ms) plans the first status poll in case no callback comes; ``deadline_at``
        (unix ms) is when a job still not terminal fails with ``timeout``; ``cost`` is what the vendor
        bills for the accepted submit, when its page says (APIXO: ``Cost(0.01, "usd")``).
        """
        now = now_ms()
        with self.transaction() as conn:
            job, version = self._load_job_for_write(job_id)
            conn.execute(
                "UPDATE jobs SET vendor_job_id = COALESCE(?, vendor_job_id), submitted_at = ?, updated_at = ?,"
                " poll_at = CASE WHEN status IN ('queued', 'running') THEN CAST(? AS BIGINT) END, deadline_at = ?,"
                " submit_at = NULL, submit_lease_until = NULL, submit_error = NULL WHERE id = ?",
                (vendor_job_id, now, now, poll_at, deadline_at, job_id),
            )
            job = self.get_job(job_id)
            if cost is not None and job.vendor_job_id is not None:
                billed = charged(job, cost, job.vendor_job_id, job.vendor_job_id)
                if billed:
                    self._update_job(job_id, billed)
                    job = evolve(job, **billed)
            if job.sequence == 0 and job.status is JobState.QUEUED:
                _ids, sequence = self._emit(job, ((EventType.QUEUED, None),), now, version)
                if sequence != job.sequence:
                    self._update_job(job_id, {"sequence": sequence})
                    job = replace(job, sequence=sequence)
            return job

    # inbound + state machine -------------------------------------------------------------------
    def record_message(
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
        """Store a raw vendor message and apply its parsed ``update`` to the job, in one transaction.

        ``kind`` is ``callback``, ``response`` or ``poll``. With ``update=None`` the message is kept
        with ``verdict`` (default ``invalid``) and ``error``, and nothing else changes but the cost of
        ``reported``, the parsed message when it is not applied (about a vendor job a resubmit replaced:
        verdict ``superseded``). Otherwise the state machine decides; new events and their deliveries are
        written in the same transaction. Whatever the verdict, the cost the message reports is recorded
        against its vendor job (:mod:`dispatch.costs`).
        With ``max_callbacks``, a job that already has that many stored callbacks takes no more.

        The write path is lean: an applied terminal callback with one subscriber runs five statements
        (read the job with the subscribers' version, insert the event, insert its deliveries, update
        the job, insert the message), six on Postgres (``NOTIFY``).

        Example: ``record_message("job_1", "callback", raw, update)`` →
        ``IngestResult("in_…", "applied", <Job succeeded>, ("evt_…",))``.
        Raises :class:`NotFound` for an unknown job, :class:`TooManyRequests` (nothing written) past
        ``max_callbacks``, :class:`StoreUnavailable` if nothing could be written.
        """
        with self.transaction():
            job, version = self._load_job_for_write(job_id)
            return self._record(
                job,
                version,
                kind,
                raw,
                update,
                verdict=verdict,
                error=error,
                max_callbacks=max_callbacks,
                reported=reported,
            )

    def _load_job_for_write(self, job_id: str) -> tuple[Job, int]:
        """The job (its row locked on Postgres) and the subscribers' version, in one statement.
        Raises :class:`NotFound`."""
        row = self.conn.execute(
            f"SELECT {_JOB_COLUMNS}, (SELECT value FROM relay_meta WHERE key = 'subscribers')"
            f" AS subscribers_version FROM jobs WHERE id = ?{self.sql.for_update}",
            (job_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return _job(row), int(row["subscribers_version"] or 0)

    def _record(
        self,
        job: Job,
        version: int,
        kind: str,
        raw: RawMessage,
        update: JobUpdate | None,
        *,
        verdict: str | None,
        error: str | None,
        max_callbacks: int | None,
        insert: bool = False,
        reported: JobUpdate | None = None,
    ) -> IngestResult:
        """:meth:`record_message` inside its transaction, for a job already read (and locked), or
        with ``insert`` for a job first seen in this message and not yet stored: its row is then
        written once, in the state the message leaves it (a source's first callback)."""
        now = now_ms()
        changes: dict[str, Any] = {}
        if kind == InboundKind.CALLBACK:
            if max_callbacks is not None and job.callback_count >= max_callbacks:
                raise TooManyRequests(
                    f"job {job.id} already has {job.callback_count} stored callbacks"
                    f" (RELAY_MAX_INBOUND_PER_JOB={max_callbacks}); nothing stored"
                )
            changes["callback_count"] = job.callback_count + 1
        events: tuple[tuple[str, int | None], ...] = ()
        if update is None:
            verdict = verdict or Verdict.INVALID
        else:
            error_code = job.error.code if job.error else None
            reopenable = failed_by_relay(job.status, error_code, job.outcome_via)
            awaiting = update.awaiting_output
            if awaiting:  # a success without an output URL is not a success yet: still running
                update = replace(update, state=JobState.RUNNING)
            step = transition(job.status, job.progress, update, reopenable=reopenable)
            verdict = step.verdict
            flags = list(job.flags)
            if verdict in (Verdict.CONFLICT, Verdict.UNKNOWN_STATE) and verdict not in flags:
                flags.append(verdict)
            if verdict == APPLIED and job.status.terminal and AFTER_RELAY_TIMEOUT not in flags:
                flags.append(AFTER_RELAY_TIMEOUT)  # a success after the relay failed the job itself
            if update.extra.get("expired") is True and EXPIRED_FLAG not in flags:
                flags.append(EXPIRED_FLAG)
            if awaiting and not job.status.terminal and SUCCESS_WITHOUT_OUTPUT_FLAG not in flags:
                flags.append(SUCCESS_WITHOUT_OUTPUT_FLAG)
            if update.anomalies:
                if PAYLOAD_ANOMALY_FLAG not in flags:
                    flags.append(PAYLOAD_ANOMALY_FLAG)
                anomalies = _merge_anomalies(job.anomalies, update.anomalies)
                if anomalies != job.anomalies:
                    changes["anomalies"] = anomalies
            if flags != list(job.flags):
                changes["flags"] = tuple(flags)
            if verdict == APPLIED:
                changes.update(_applied(job, step.status, step.progress, update, now, kind))
                events = step.events
        costed = update if update is not None else reported  # whatever its verdict, its cost counts
        if costed is not None and (costed.cost is not None or costed.compute_ms is not None):
            current = changes.get("vendor_job_id", job.vendor_job_id)
            vendor_job_id = costed.vendor_job_id or current
            changes.update(charged(job, costed.cost, vendor_job_id, current, compute_ms=costed.compute_ms))
        job = evolve(job, **changes)
        events = self._hold_succeeded(job, events, now)  # mirroring: emitted once copied (store.mirrors)
        if insert:  # a new job's events are all new: its sequence afterwards is known now
            stored = evolve(job, sequence=job.sequence + len(events), updated_at=now)
            self._insert_job(stored)
        emitted, sequence = self._emit(job, events, now, version)
        if insert:
            assert sequence == stored.sequence, "a new job's event was already stored"
            job, changes = stored, {}
        elif sequence != job.sequence:
            changes["sequence"] = sequence
        if changes:
            changes["updated_at"] = now
            job = evolve(job, **changes)
            self._update_job(job.id, changes)
        inbound_id = new_id("in")
        event_ids = tuple(eid for eid, _ in emitted)
        insert_inbound(self.conn, inbound_id, job.id, job.vendor, kind, now, raw, verdict, error, event_ids)
        return IngestResult(inbound_id, verdict, job, event_ids, tuple(t for _, t in emitted))

    def _insert_job(self, job: Job) -> None:
        """One ``INSERT INTO jobs`` of every column :class:`Job` has (Job attribute names = column names)."""
        values = list(_JOB_VALUES(job))
        for index, convert in _JOB_CONVERSIONS:
            values[index] = convert(values[index])
        self.conn.execute(_INSERT_JOB, values)

    def _update_job(self, job_id: str, changes: dict[str, Any]) -> None:
        """One ``UPDATE jobs`` setting every changed field (Job attribute names = column names)."""
        columns = sorted(changes)
        values = [_column_value(name, changes[name]) for name in columns]
        assignments = ", ".join(f"{name} = ?" for name in columns)
        self.conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values, job_id))

    def _emit(
        self, job: Job, events: tuple[tuple[str, int | None], ...], now: int, version: int | None = None
    ) -> tuple[tuple[tuple[str, str], ...], int]:
        """Insert ``events`` for ``job`` (an event id already stored is skipped) and one delivery per
        interested subscriber each; returns the new ``(event id, event type)`` pairs and the job's
        sequence afterwards. ``version`` is the subscribers' version read with the job (``None``:
        read it now)."""
        emitted: list[tuple[str, str]] = []
        sequence = job.sequence
        for event_type, pct in events:
            eid = event_id(job.id, event_type, pct)
            progress = pct if event_type == EventType.PROGRESS else job.progress
            body = event_body(job, event_type, eid, now, sequence=sequence + 1, progress=progress)
            inserted = self.conn.execute(
                "INSERT INTO events (id, job_id, type, sequence, created_at, body) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (eid, job.id, event_type, sequence + 1, now, body),
            ).fetchone()
            if inserted is None:  # the same outcome was emitted before (a replayed poll, say)
                continue
            sequence += 1
            emitted.append((eid, event_type))
        if emitted:
            self._enqueue_deliveries(emitted, now, version)
        return tuple(emitted), sequence

    def get_inbound(self, inbound_id: str) -> Inbound:
        """One stored vendor message. Raises :class:`NotFound`."""
        row = self.conn.execute(
            f"SELECT {_INBOUND_COLUMNS} FROM inbound WHERE id = ?", (inbound_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"inbound message {inbound_id} not found")
        return _inbound(row)

    def list_inbound(
        self,
        *,
        job_id: str | None = None,
        vendor: str | None = None,
        verdict: str | None = None,
        limit: int = 50,
        body_prefix: int | None = None,
        after: tuple[int, str] | None = None,
    ) -> list[Inbound]:
        """Newest stored vendor messages first, optionally filtered.

        With ``body_prefix`` (bytes) each body is read only that far; the record's ``size`` then
        gives the whole length (see :meth:`read_inbound_body`), so a job with 200 callbacks of
        1 MiB does not come back as 200 MiB.

        Keyset pagination: ``after`` is the ``(time, id)`` of the last row of the previous page (see
        :func:`dispatch.store.sql.page_key`); rows inserted meanwhile never shift a page.
        """
        where, args = _filters(job_id=job_id, vendor=vendor, verdict=verdict)
        where, args = _after(where, args, "(received_at, id) < (?, ?)", after)
        columns = _INBOUND_COLUMNS
        if body_prefix is not None:
            columns = (
                columns.replace(" body,", f" substr(body, 1, {int(body_prefix)}) AS body,")
                + ", length(body) AS size"
            )
        rows = self.conn.execute(
            f"SELECT {columns} FROM inbound {where} ORDER BY received_at DESC, id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_inbound(r) for r in rows]

    def inbound_body_size(self, inbound_id: str) -> int:
        """Bytes of a stored message's body, e.g. ``1048576``. Raises :class:`NotFound`."""
        row = self.conn.execute(
            "SELECT length(body) AS size FROM inbound WHERE id = ?", (inbound_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"inbound message {inbound_id} not found")
        return int(row["size"] or 0)

    def read_inbound_body(self, inbound_id: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a stored body from byte ``offset`` (fewer at its end; ``b""`` past
        it), for streaming it in chunks. Raises :class:`NotFound`."""
        row = self.conn.execute(
            "SELECT substr(body, ?, ?) AS chunk FROM inbound WHERE id = ?", (offset + 1, length, inbound_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"inbound message {inbound_id} not found")
        return bytes(row["chunk"] or b"")

    # events -------------------------------------------------------------------------------------
    def get_event(self, eid: str) -> Event:
        """One event. Raises :class:`NotFound`."""
        row = self.conn.execute(
            "SELECT id, job_id, type, sequence, created_at, body FROM events WHERE id = ?", (eid,)
        ).fetchone()
        if row is None:
            raise NotFound(f"event {eid} not found")
        return _event(row)

    def list_events(
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
        """Events newest first; ``since``/``until`` are unix ms bounds on creation time.

        Keyset pagination: ``after`` is the ``(time, id)`` of the last row of the previous page (see
        :func:`dispatch.store.sql.page_key`); rows inserted meanwhile never shift a page.
        """
        where, args = _filters(**{"e.job_id": job_id, "j.vendor": vendor, "e.type": type})
        clauses = [where.removeprefix("WHERE ")] if where else []
        if since is not None:
            clauses.append("e.created_at >= ?")
            args.append(since)
        if until is not None:
            clauses.append("e.created_at < ?")
            args.append(until)
        if after is not None:
            clauses.append("(e.created_at, e.id) < (?, ?)")
            args.extend(after)
        sql_where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.conn.execute(
            "SELECT e.id, e.job_id, e.type, e.sequence, e.created_at, e.body FROM events e"
            f" JOIN jobs j ON j.id = e.job_id {sql_where} ORDER BY e.created_at DESC, e.id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_event(r) for r in rows]

    def iter_job_events(self, job_id: str) -> Iterator[Event]:
        """A job's events in sequence order."""
        rows = self.conn.execute(
            "SELECT id, job_id, type, sequence, created_at, body FROM events WHERE job_id = ? ORDER BY sequence",
            (job_id,),
        ).fetchall()
        return (_event(r) for r in rows)


def _applied(
    job: Job, status: JobState, progress: int | None, update: JobUpdate, now: int, kind: str
) -> dict[str, Any]:
    """The job fields an applied update changes (a Job attribute → its new value), including what
    vendor analytics read (:mod:`dispatch.store.stats`): the update's cost, and for a terminal state
    ``outcome_via`` (``kind``, or what the relay decided, see :data:`RELAY_OUTCOMES`) and
    ``turnaround_ms``. A job already terminal here is one the relay failed and the vendor's success
    reopens (:func:`dispatch.state.failed_by_relay`): it completes anew, now."""
    error = update.error if status is JobState.FAILED else None
    if status is JobState.FAILED and error is None:
        error = JobError("vendor_failed", None)
    changes: dict[str, Any] = {
        "status": status,
        "progress": progress,
        "outputs": update.outputs or job.outputs,
        "error": error,
    }
    if job.vendor_job_id is None and update.vendor_job_id is not None:
        changes["vendor_job_id"] = update.vendor_job_id
    if status.terminal:
        completed = int(update.completed_at.timestamp() * 1000) if update.completed_at else now
        completed_at = completed if job.status.terminal else (job.completed_at or completed)
        changes.update(completed_at=completed_at, poll_at=None, submit_at=None)
        via = RELAY_OUTCOMES.get(update.raw_state or "", kind) if kind != InboundKind.CALLBACK else kind
        turnaround = max(0, now - job.submitted_at) if job.submitted_at is not None else None
        changes.update(outcome_via=via, turnaround_ms=turnaround)
    return changes


def charged(
    job: Job,
    cost: Cost | None,
    vendor_job_id: str | None,
    current: str | None,
    *,
    compute_ms: int | None = None,
) -> dict[str, Any]:
    """The job fields a vendor's report of what ``vendor_job_id`` cost changes: its :class:`Charge`
    among the job's ``charges`` and the totals (:func:`dispatch.costs.totals`); and ``compute_ms``
    when the report is about the job's ``current`` vendor job. ``{}`` when nothing changes (the same
    report again). Example: ``charged(job, Cost(0.01, "usd"), "task_2", "task_2")`` →
    ``{"charges": (..., Charge("task_2", 2, "billed", 0.01, "usd")), "cost_amount": 0.02, ...}``."""
    changes: dict[str, Any] = {}
    if cost is not None:
        submit = submit_number(vendor_job_id, current, job.previous_vendor_job_ids, job.resubmits)
        charges = with_charge(job.charges, charge_of(cost, vendor_job_id, submit))
        if charges is not None:
            changes.update(charges=charges, **totals(charges, job.resubmits))
    if compute_ms is not None and vendor_job_id == current and compute_ms != job.compute_ms:
        changes["compute_ms"] = compute_ms
    return changes


def _merge_anomalies(known: tuple[Anomaly, ...], new: tuple[Anomaly, ...]) -> tuple[Anomaly, ...]:
    """``known`` followed by those of ``new`` not yet in it, at most :data:`MAX_ANOMALIES` in all (a
    vendor repeating the same deviation in every poll adds it once)."""
    merged = list(known)
    for anomaly in new:
        if len(merged) >= MAX_ANOMALIES:
            break
        if anomaly not in merged:
            merged.append(anomaly)
    return tuple(merged)


def _column_value(name: str, value: Any) -> Any:
    """A Job attribute's value as its ``jobs`` column stores it (JSON text for the structured ones)."""
    convert = _COLUMN_CONVERSIONS.get(name)
    return value if convert is None else convert(value)


def _json_text(value: Any) -> str:
    """Compact JSON text of a value the relay built itself (strings, numbers, lists, dicts), e.g.
    ``_json_text(["expired"]) == '["expired"]'``; orjson, or json for a text with a lone surrogate
    (a vendor's ``"\\ud800"``), which only json writes."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


_COLUMN_CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "status": lambda state: state.value if isinstance(state, JobState) else state,
    "outputs": lambda outputs: _json_text([o.to_json() for o in outputs]),
    "error": lambda error: _json_text(error.to_json()) if error else None,
    "flags": lambda flags: _json_text(list(flags)),
    "previous_vendor_job_ids": lambda ids: _json_text(list(ids)),
    "charges": lambda charges: _json_text([c.to_json() for c in charges]),
    # NULL for the (many) jobs without any: the stats' partial index holds only the others
    "anomalies": lambda found: _json_text([a.to_json() for a in found]) if found else None,
    "params": json.dumps,  # a client's JSON: integers of any size, which orjson refuses
}
_JOB_CONVERSIONS = tuple(
    (index, _COLUMN_CONVERSIONS[name])
    for index, name in enumerate(_JOB_COLUMN_NAMES)
    if name in _COLUMN_CONVERSIONS
)


def insert_inbound(
    conn: Conn,
    inbound_id: str,
    job_id: str | None,
    vendor: str,
    kind: str,
    received_at: int,
    raw: RawMessage,
    verdict: str,
    error: str | None,
    event_ids: tuple[str, ...] = (),
) -> None:
    """Insert one ``inbound`` row (a raw vendor message with what the relay made of it)."""
    conn.execute(
        "INSERT INTO inbound (id, job_id, vendor, kind, received_at, peer, headers, body, verdict,"
        " error, event_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            inbound_id,
            job_id,
            vendor,
            kind,
            received_at,
            raw.peer,
            _json_text(raw.headers),
            raw.body,
            verdict,
            error,
            _json_text(list(event_ids)),
        ),
    )


_INBOUND_COLUMNS = "id, job_id, vendor, kind, received_at, peer, headers, body, verdict, error, event_ids"


def _after(
    where: str, args: list[object], clause: str, after: tuple[int, str] | None
) -> tuple[str, list[object]]:
    """``where`` and ``args`` with the keyset ``clause`` added when ``after`` is given."""
    if after is None:
        return where, args
    return (f"{where} AND {clause}" if where else f"WHERE {clause}"), [*args, *after]


def _filters(**values: object) -> tuple[str, list[object]]:
    clauses = [f"{name} = ?" for name, value in values.items() if value is not None]
    args = [value for value in values.values() if value is not None]
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args
