"""Store verbs for the submit outbox: a job's vendor submit is committed with the job and claimed
like a delivery (a lease, at most one submit in flight per job), so a crash never loses a job and
a retry is a stored decision (``submit_at``), not a sleeping coroutine."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from dispatch.costs import totals
from dispatch.errors import NotFound, ValidationFailed
from dispatch.model import JobUpdate, new_id, now_ms
from dispatch.secretbox import SecretBox
from dispatch.store.jobs import charged, insert_inbound
from dispatch.store.records import IngestResult, Job, RawMessage, evolve
from dispatch.store.sql import Conn, Dialect

OUTCOME_UNKNOWN = "submit_outcome_unknown"
"""Job flag: the vendor may have received the submit (timeout, reset or 5xx after sending); the job
waits for its callback or its deadline instead of being sent again."""


class SubmitVerbs:
    """Pending submits. Mixed into :class:`dispatch.store.sqlite.SQLiteStore`."""

    conn: Conn
    sql: Dialect
    box: SecretBox

    if TYPE_CHECKING:  # provided by SQLiteStore and JobVerbs

        def transaction(self) -> AbstractContextManager[Conn]: ...

        def lock(self, key: str) -> None: ...

        def notify_due(self) -> None: ...

        def get_job(self, job_id: str) -> Job: ...

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
        ) -> Job: ...

        def _load_job(self, job_id: str, *, for_update: bool = False) -> Job: ...

        def _update_job(self, job_id: str, changes: dict[str, Any]) -> None: ...

    def create_idempotent_job(
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
        """Create the job for ``idempotency_key`` once: ``(job, True)`` when this call created it
        (its submit pending, as :meth:`create_job` with ``submit=True``), ``(original, False)`` when a
        job with the same key and the same ``request_hash`` was created within ``window_ms`` — also
        when both requests arrive at once (a unique index decides). A key older than the window is
        free again. Example: ``create_idempotent_job("apixo", {...}, ..., idempotency_key="order-42",
        request_hash="9f…", window_ms=86400000)`` → ``(<Job queued>, True)``.

        Raises :class:`ValidationFailed` when the key was used with a different request,
        :class:`StoreUnavailable`.
        """
        now = now_ms()
        with self.transaction() as conn:
            self.lock(f"idempotency-key:{idempotency_key}")  # two requests at once: one creates, one waits
            conn.execute(
                "UPDATE jobs SET idempotency_key = NULL WHERE idempotency_key = ? AND created_at < ?",
                (idempotency_key, now - window_ms),
            )
            existing = conn.execute(
                f"SELECT id, request_hash FROM jobs WHERE idempotency_key = ?{self.sql.for_update}",
                (idempotency_key,),
            ).fetchone()
            if existing is None:
                job = self.create_job(
                    vendor,
                    params,
                    reference=reference,
                    token_hash=token_hash,
                    token=token,
                    submit=True,
                    submit_lease_ms=submit_lease_ms,
                )
                conn.execute(
                    "UPDATE jobs SET idempotency_key = ?, request_hash = ? WHERE id = ?",
                    (idempotency_key, request_hash, job.id),
                )
                return self.get_job(job.id), True
            if existing["request_hash"] != request_hash:
                raise ValidationFailed(
                    f"Idempotency-Key {idempotency_key[:100]!r} was used for a different request (job"
                    f" {existing['id']}) within the last {window_ms // 3_600_000} h; use a new key",
                    details=[{"field": "Idempotency-Key", "message": "reused with a different request"}],
                )
            return self.get_job(existing["id"]), False

    def claim_submit(self, job_id: str, *, now: int, lease_ms: int) -> tuple[Job, bool] | None:
        """Lease one job's pending submit; ``None`` when it has none due or another holds it.

        Returns ``(job, interrupted)``: ``interrupted`` is true when an earlier lease on this submit
        expired unfinished (a process died mid-send, so the vendor may have the request). Example:
        ``claim_submit("job_1", now=1764480000000, lease_ms=150000)`` → ``(<Job queued>, False)``.
        Raises :class:`StoreUnavailable`.
        """
        claimed = self._claim_submits("id = ?", (job_id,), now=now, limit=1, lease_ms=lease_ms)
        return claimed[0] if claimed else None

    def claim_due_submits(self, *, now: int, limit: int, lease_ms: int) -> list[tuple[Job, bool]]:
        """Lease up to ``limit`` pending submits whose ``submit_at`` (unix ms) has come, oldest first,
        in one statement (``FOR UPDATE SKIP LOCKED`` on Postgres: two workers never claim the same
        submit); each as :meth:`claim_submit` returns it. Raises :class:`StoreUnavailable`."""
        return self._claim_submits("1 = 1", (), now=now, limit=limit, lease_ms=lease_ms)

    def _claim_submits(
        self, where: str, args: tuple[Any, ...], *, now: int, limit: int, lease_ms: int
    ) -> list[tuple[Job, bool]]:
        with self.transaction() as conn:
            rows = conn.execute(
                "UPDATE jobs SET submit_lease_until = ?, submit_attempts = submit_attempts + 1,"
                " submit_interrupted = CASE WHEN submit_lease_until IS NULL THEN 0 ELSE 1 END"
                " WHERE id IN (SELECT id FROM jobs WHERE submit_at IS NOT NULL AND submit_at <= ?"
                " AND status IN ('queued', 'running') AND (submit_lease_until IS NULL OR submit_lease_until < ?)"
                f" AND {where} ORDER BY submit_at LIMIT ?{self.sql.skip_locked})"
                " RETURNING id, submit_interrupted",
                (now + lease_ms, now, now, *args, limit),
            ).fetchall()
            return [(self.get_job(r["id"]), bool(r["submit_interrupted"])) for r in rows]

    def renew_submit_lease(self, job_id: str, *, until: int) -> bool:
        """Extend the lease of a submit still in flight to ``until`` (unix ms); ``False`` when the job
        holds no submit lease any more (it ended). Raises :class:`StoreUnavailable`."""
        with self.transaction() as conn:
            done = conn.execute(
                "UPDATE jobs SET submit_lease_until = ? WHERE id = ? AND submit_lease_until IS NOT NULL",
                (until, job_id),
            ).rowcount
            return bool(done)

    def retry_submit_at(self, job_id: str, at: int, reason: str) -> Job:
        """Plan the next submit attempt at ``at`` (unix ms), releasing the lease; ``reason`` (the
        last error, e.g. ``"rate_limited: HTTP 429"``) is kept on the job. Raises :class:`NotFound`."""
        with self.transaction() as conn:
            done = conn.execute(
                "UPDATE jobs SET submit_at = ?, submit_lease_until = NULL, submit_error = ?, updated_at = ?"
                " WHERE id = ?",
                (at, reason, now_ms(), job_id),
            ).rowcount
            if not done:
                raise NotFound(f"job {job_id} not found")
            return self.get_job(job_id)

    def end_submit(self, job_id: str, *, outcome_unknown: bool = False, poll_at: int | None = None) -> Job:
        """No more submit attempts for the job: clear the pending submit and its lease. With
        ``outcome_unknown`` the job is flagged ``submit_outcome_unknown`` and, having no vendor job
        id to poll, is looked at again at ``poll_at`` (its deadline) only. Raises :class:`NotFound`."""
        with self.transaction() as conn:
            job = self._load_job(job_id, for_update=True)
            flags = list(job.flags)
            if outcome_unknown and OUTCOME_UNKNOWN not in flags:
                flags.append(OUTCOME_UNKNOWN)
            conn.execute(
                "UPDATE jobs SET submit_at = NULL, submit_lease_until = NULL, flags = ?, updated_at = ?,"
                " poll_at = CASE WHEN CAST(? AS BIGINT) IS NOT NULL AND status IN ('queued', 'running')"
                " THEN CAST(? AS BIGINT) ELSE poll_at END, deadline_at = COALESCE(deadline_at, CAST(? AS BIGINT))"
                " WHERE id = ?",
                (json.dumps(flags), now_ms(), poll_at, poll_at, poll_at, job_id),
            )
            return self.get_job(job_id)

    def resubmit(
        self,
        job_id: str,
        kind: str,
        raw: RawMessage,
        reason: str,
        *,
        at: int | None = None,
        reported: JobUpdate | None = None,
    ) -> IngestResult:
        """Store a vendor message that failed the job for a reason the vendor calls transient, and
        plan a new submit of the same job at ``at`` (unix ms; now when ``None``) instead of failing
        it: the vendor job id (or, while unknown, the one ``reported`` names) moves to
        ``previous_vendor_job_ids``, polls stop until the new submit is accepted, nothing is emitted.
        What ``reported`` (the message's parsed update) says the vendor job cost is recorded, and
        what the job was billed for it counts as superseded from now on (:mod:`dispatch.costs`).

        Example: ``resubmit("job_1", "callback", raw, "Timeout: upstream did not finish",
        at=1764480030000)`` → ``IngestResult("in_…", "resubmitted", <Job queued, resubmits=1>, ())``.
        Raises :class:`NotFound`, :class:`StoreUnavailable`.
        """
        now = now_ms()
        inbound_id = new_id("in")
        with self.transaction() as conn:
            job = self._load_job(job_id, for_update=True)
            current = job.vendor_job_id or (reported.vendor_job_id if reported else None)
            previous = [*job.previous_vendor_job_ids, *([current] if current else [])]
            if reported is not None:
                job = evolve(job, **charged(job, reported.cost, current, current))
            if job.charges:  # the replaced vendor job's charges are superseded now
                self._update_job(job_id, {"charges": job.charges, **totals(job.charges, job.resubmits + 1)})
            conn.execute(
                "UPDATE jobs SET vendor_job_id = NULL, previous_vendor_job_ids = ?, resubmits = resubmits + 1,"
                " submit_at = ?, submit_lease_until = NULL, submit_error = ?, poll_at = NULL, updated_at = ?"
                " WHERE id = ?",
                (json.dumps(previous), now if at is None else at, reason[:500], now, job_id),
            )
            insert_inbound(conn, inbound_id, job_id, job.vendor, kind, now, raw, "resubmitted", reason)
            return IngestResult(inbound_id, "resubmitted", self.get_job(job_id), ())

    def callback_token(self, job_id: str) -> str | None:
        """The job's callback token in clear (kept encrypted with the secret key for background
        submits), or ``None`` for synchronous vendors. Raises :class:`NotFound`,
        :class:`ValidationFailed` when the key changed since it was stored."""
        row = self.conn.execute("SELECT callback_token FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return self.box.decrypt(row["callback_token"]) if row["callback_token"] else None
