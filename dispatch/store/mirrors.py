"""Store verbs for mirroring: a succeeded job's outputs are copied to the relay's object store
(``RELAY_MIRROR_URL``) before its ``job.succeeded`` event is emitted.

With :attr:`MirrorVerbs.mirror_hold` set (the process mirrors), the state machine applies
``succeeded`` as usual but holds the event: the same transaction adds a ``mirrors`` row, due now.
A mirror runner claims due rows (the claim pushes ``next_attempt_at`` past a lease, so a crashed
runner's row comes back by itself), copies, and either plans a retry (:meth:`MirrorVerbs.retry_mirror`,
a stored decision, nobody sleeps) or ends it (:meth:`MirrorVerbs.complete_mirror`): the outputs with
their ``mirror`` (or ``mirror_error``) and the held event, in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dispatch.errors import NotFound, ValidationFailed
from dispatch.events import event_body
from dispatch.model import EventType, JobState, Output, event_id, now_ms
from dispatch.store.records import Job
from dispatch.store.sql import Conn, Dialect

MIRROR_WINDOW_MS = 23 * 3600 * 1000
"""How long copying is retried when the vendor does not say when its URLs expire (ms)."""


@dataclass(frozen=True)
class MirrorTask:
    """One job whose outputs are being copied: ``results`` holds, per output index, the output as
    copied so far (with ``mirror`` or ``mirror_error``) or ``None`` (not done yet); ``deadline_at``
    (unix ms) is when retrying stops; ``attempts`` counts claims, this one included.

    Example: ``MirrorTask(Job(id="job_1", ...), attempts=1, deadline_at=1764566400000, results=(None,))``.
    """

    job: Job
    attempts: int
    deadline_at: int
    results: tuple[Output | None, ...]


class MirrorVerbs:
    """Mirror work. Mixed into :class:`dispatch.store.sqlite.SQLiteStore` and the Postgres store."""

    conn: Conn
    sql: Dialect
    mirror_hold: bool = False
    """True in a process that mirrors (``RELAY_MIRROR_URL`` set): ``job.succeeded`` waits for the copy."""

    if TYPE_CHECKING:  # provided by the engine and JobVerbs

        def transaction(self) -> AbstractContextManager[Conn]: ...

        def get_job(self, job_id: str) -> Job: ...

        def _load_job_for_write(self, job_id: str) -> tuple[Job, int]: ...

        def _update_job(self, job_id: str, changes: dict[str, Any]) -> None: ...

        def _emit(
            self, job: Job, events: tuple[tuple[str, int | None], ...], now: int, version: int | None = None
        ) -> tuple[tuple[tuple[str, str], ...], int]: ...

    def _hold_succeeded(
        self, job: Job, events: tuple[tuple[str, int | None], ...], now: int
    ) -> tuple[tuple[str, int | None], ...]:
        """``events`` without ``job.succeeded`` when this process mirrors and the job has outputs;
        the job's mirror work is then added (due now, retried until the earliest output
        ``expires_at``, else for 23 h). Called by the state machine inside its transaction."""
        if not self.mirror_hold or not job.outputs or job.status is not JobState.SUCCEEDED:
            return events
        kept = tuple(e for e in events if e[0] != EventType.SUCCEEDED)
        if kept == events:
            return events
        expiries = [int(o.expires_at.timestamp() * 1000) for o in job.outputs if o.expires_at is not None]
        deadline = min(expiries) if expiries else now + MIRROR_WINDOW_MS
        self.conn.execute(
            "INSERT INTO mirrors (job_id, vendor, status, attempts, next_attempt_at, deadline_at, results,"
            " created_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?, '[]', ?, ?) ON CONFLICT DO NOTHING",
            (job.id, job.vendor, now, deadline, now, now),
        )
        return kept

    def claim_due_mirrors(self, *, now: int, limit: int, lease_ms: int) -> list[MirrorTask]:
        """Lease up to ``limit`` pending mirror tasks whose ``next_attempt_at`` (unix ms) has come,
        oldest first, in one statement (``SKIP LOCKED`` on Postgres): each becomes due again at
        ``now + lease_ms`` unless :meth:`retry_mirror` or :meth:`complete_mirror` ends the attempt
        first. Example: ``claim_due_mirrors(now=1764480000000, limit=4, lease_ms=300000)`` →
        ``[MirrorTask(Job(id="job_1", ...), 1, 1764562800000, (None,))]``. Raises :class:`StoreUnavailable`."""
        with self.transaction() as conn:
            rows = conn.execute(
                "UPDATE mirrors SET attempts = attempts + 1, next_attempt_at = ?, lease_until = ?, updated_at = ?"
                " WHERE job_id IN (SELECT job_id FROM mirrors WHERE status = 'pending' AND next_attempt_at <= ?"
                f" ORDER BY next_attempt_at LIMIT ?{self.sql.skip_locked})"
                " RETURNING job_id, attempts, deadline_at, results",
                (now + lease_ms, now + lease_ms, now, now, limit),
            ).fetchall()
            return [
                MirrorTask(self.get_job(r["job_id"]), int(r["attempts"]), int(r["deadline_at"]), _results(r))
                for r in rows
            ]

    def renew_mirror_lease(self, job_id: str, *, until: int) -> bool:
        """Extend the lease of a mirror task still being copied to ``until`` (unix ms): the runner's
        heartbeat, so a short lease (``RELAY_LEASE_SECONDS``) covers a long copy and a crashed
        runner's task comes back soon. ``False`` when the task holds no lease any more (retried,
        released or done). Raises :class:`StoreUnavailable`."""
        with self.transaction() as conn:
            done = conn.execute(
                "UPDATE mirrors SET next_attempt_at = ?, lease_until = ? WHERE job_id = ?"
                " AND status = 'pending' AND lease_until IS NOT NULL",
                (until, until, job_id),
            ).rowcount
            return bool(done)

    def release_mirror(self, job_id: str, *, results: Sequence[Output | None]) -> bool:
        """Give up a claimed mirror task without a verdict (the process is stopping): it is due again
        at once for any runner, keeps ``results`` (what was copied, per output index) and does not
        count as an attempt. ``False`` when the task holds no lease (it ended meanwhile). Raises
        :class:`StoreUnavailable`."""
        now = now_ms()
        with self.transaction() as conn:
            done = conn.execute(
                "UPDATE mirrors SET next_attempt_at = ?, lease_until = NULL, results = ?, updated_at = ?,"
                " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"
                " WHERE job_id = ? AND status = 'pending' AND lease_until IS NOT NULL",
                (now, _dump(results), now, job_id),
            ).rowcount
            return bool(done)

    def retry_mirror(self, job_id: str, *, at: int, results: Sequence[Output | None], error: str) -> None:
        """Plan the next copy attempt of ``job_id`` at ``at`` (unix ms), keeping what was copied
        (``results``, per output index) and the last ``error`` (e.g. ``"expired: HTTP 404"``).
        Raises :class:`NotFound` when the job has no pending mirror task, :class:`StoreUnavailable`."""
        with self.transaction() as conn:
            done = conn.execute(
                "UPDATE mirrors SET next_attempt_at = ?, lease_until = NULL, results = ?, last_error = ?,"
                " updated_at = ? WHERE job_id = ? AND status = 'pending'",
                (at, _dump(results), error[:500], now_ms(), job_id),
            ).rowcount
            if not done:
                raise NotFound(f"job {job_id} has no pending mirror task")

    def complete_mirror(self, job_id: str, outputs: Sequence[Output]) -> tuple[Job, bool]:
        """End mirroring of a succeeded job: its outputs become ``outputs`` (one per output, in order,
        each with ``mirror`` or ``mirror_error``), its mirror task is done, and its ``job.succeeded``
        event (the deterministic id) is emitted with its deliveries, all in one transaction. When the
        event was emitted before (a re-mirror), its stored body gets the new outputs instead (same id,
        sequence and time), so a later retry or replay carries them.

        Returns ``(job, emitted)``, e.g. ``(Job(id="job_1", outputs=(Output(..., mirror=Mirror(...)),),
        ...), True)``. Raises :class:`NotFound`, :class:`ValidationFailed` (not a succeeded job, or
        another number of outputs), :class:`StoreUnavailable`.
        """
        with self.transaction() as conn:
            job, version = self._load_job_for_write(job_id)
            if job.status is not JobState.SUCCEEDED or len(outputs) != len(job.outputs):
                raise ValidationFailed(
                    f"job {job_id} is {job.status.value} with {len(job.outputs)} outputs; mirrors apply"
                    " to a succeeded job's outputs, one each"
                )
            now = now_ms()
            job = replace(job, outputs=tuple(outputs), updated_at=now)
            eid = event_id(job.id, EventType.SUCCEEDED)
            stored = conn.execute("SELECT sequence, created_at FROM events WHERE id = ?", (eid,)).fetchone()
            emitted = False
            if stored is None:
                ids, sequence = self._emit(job, ((EventType.SUCCEEDED, None),), now, version)
                job, emitted = replace(job, sequence=sequence), bool(ids)
            else:
                snapshot = replace(job, sequence=int(stored["sequence"]))
                body = event_body(snapshot, EventType.SUCCEEDED, eid, int(stored["created_at"]))
                conn.execute("UPDATE events SET body = ? WHERE id = ?", (body, eid))
            self._update_job(job.id, {"outputs": job.outputs, "sequence": job.sequence, "updated_at": now})
            conn.execute(
                "UPDATE mirrors SET status = 'done', next_attempt_at = NULL, lease_until = NULL, results = ?,"
                " updated_at = ? WHERE job_id = ?",
                (_dump(outputs), now, job_id),
            )
            return job, emitted

    def next_mirror_at(self) -> int | None:
        """Unix ms when the earliest pending mirror task is due (leased ones: when their lease ends),
        e.g. ``1764480000000``, or ``None`` when none is pending. Raises :class:`StoreUnavailable`."""
        row = self.conn.execute(
            "SELECT MIN(next_attempt_at) AS due FROM mirrors WHERE status = 'pending'"
        ).fetchone()
        return None if row is None or row["due"] is None else int(row["due"])


def _results(row: Any) -> tuple[Output | None, ...]:
    return tuple(Output.from_json(o) if o else None for o in json.loads(row["results"] or "[]"))


def _dump(results: Sequence[Output | None]) -> str:
    return json.dumps([o.to_json() if o is not None else None for o in results])
