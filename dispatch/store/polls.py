"""Store verbs for the polling fallback and for sources (callbacks of jobs submitted elsewhere).

Polling is driven by stored times (``jobs.poll_at``, ``jobs.deadline_at``), never by in-memory
timers, so a restart finds every job that still needs a look. Polls are leased like deliveries.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from dispatch.errors import NotFound, TooManyRequests
from dispatch.model import JobState, JobUpdate, new_id, now_ms
from dispatch.store.jobs import insert_inbound
from dispatch.store.records import IngestResult, Job, RawMessage, Source
from dispatch.store.sql import Conn, Dialect


def _source(row: Any) -> Source:
    return Source(
        id=row["id"], vendor=row["vendor"], description=row["description"], created_at=row["created_at"]
    )


class PollVerbs:
    """Mixed into :class:`dispatch.store.sqlite.SQLiteStore`."""

    conn: Conn
    sql: Dialect

    if TYPE_CHECKING:  # provided by SQLiteStore and JobVerbs

        def transaction(self) -> AbstractContextManager[Conn]: ...

        def lock(self, key: str) -> None: ...

        def notify_due(self) -> None: ...

        def get_job(self, job_id: str) -> Job: ...

        def find_job_by_token(self, vendor: str, token_hash: str) -> Job | None: ...

        def _load_job(self, job_id: str, *, for_update: bool = False) -> Job: ...

        def _load_job_for_write(self, job_id: str) -> tuple[Job, int]: ...

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
        ) -> IngestResult: ...

    # polls ---------------------------------------------------------------------------------------
    def claim_due_polls(self, worker_id: str, *, now: int, limit: int, lease_ms: int) -> list[Job]:
        """Lease up to ``limit`` jobs whose ``poll_at`` (unix ms) has come: unfinished ones, and failed
        ones the relay failed itself and still asks about (a late poll, see :meth:`finish_poll`)."""
        with self.transaction() as conn:
            rows = conn.execute(
                "UPDATE jobs SET poll_lease_until = ? WHERE id IN ("
                " SELECT id FROM jobs WHERE poll_at IS NOT NULL AND poll_at <= ?"
                " AND status IN ('queued', 'running', 'failed')"
                " AND (vendor_job_id IS NOT NULL OR poll_at >= deadline_at)"
                " AND (poll_lease_until IS NULL OR poll_lease_until < ?)"
                f" ORDER BY poll_at LIMIT ?{self.sql.skip_locked}) RETURNING id",
                (now + lease_ms, now, now, limit),
            ).fetchall()
            del worker_id  # leases on polls are anonymous: a poll is read-only at the vendor
            return [self.get_job(r["id"]) for r in rows]

    def finish_poll(self, job_id: str, *, next_poll_at: int | None, late: bool = False) -> Job:
        """Count one poll and plan the next (``None``: no more polls), releasing the lease. A terminal
        job gets no next poll, except with ``late``: a job the relay failed itself is still asked
        about at ``next_poll_at`` while it stays ``failed`` (a vendor success may come late,
        :mod:`dispatch.state`). Raises :class:`StoreUnavailable`."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET poll_attempts = poll_attempts + 1, poll_lease_until = NULL,"
                " poll_at = CASE WHEN status IN ('queued', 'running') OR (status = 'failed' AND ?)"
                " THEN CAST(? AS BIGINT) END WHERE id = ?",
                (late, next_poll_at, job_id),
            )
            return self.get_job(job_id)

    def poll_soon(self, job_id: str, at: int) -> None:
        """Bring an unfinished job's next poll forward to ``at`` (unix ms), e.g. to confirm a callback."""
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE jobs SET poll_at = {self.sql.least}(COALESCE(poll_at, ?), ?)"
                " WHERE id = ? AND status IN ('queued', 'running')",
                (at, at, job_id),
            )

    # sources -------------------------------------------------------------------------------------
    def create_source(self, vendor: str, *, token_hash: str, description: str | None) -> Source:
        """A new source for ``vendor``; its callback token is stored only as ``token_hash``."""
        source = Source(new_id("src"), vendor, description, now_ms())
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO sources (id, vendor, token_hash, description, created_at) VALUES (?, ?, ?, ?, ?)",
                (source.id, vendor, token_hash, description, source.created_at),
            )
        return source

    def find_source_by_token(self, vendor: str, token_hash: str) -> Source | None:
        """The ``vendor`` source whose token hashes to ``token_hash``, or ``None``."""
        row = self.conn.execute(
            "SELECT id, vendor, description, created_at FROM sources WHERE token_hash = ? AND vendor = ?",
            (token_hash, vendor),
        ).fetchone()
        return _source(row) if row else None

    def find_callback_target(self, vendor: str, token_hash: str) -> Job | Source | None:
        """What a callback URL's token opens: the ``vendor`` job whose callback token hashes to
        ``token_hash``, else the ``vendor`` source whose token does, else ``None`` (one read instead
        of two for a callback)."""
        return self.find_job_by_token(vendor, token_hash) or self.find_source_by_token(vendor, token_hash)

    def list_sources(self, *, limit: int | None = None, after: tuple[int, str] | None = None) -> list[Source]:
        """Sources, oldest first (all of them without ``limit``).

        Keyset pagination: ``after`` is the ``(time, id)`` of the last row of the previous page (see
        :func:`dispatch.store.sql.page_key`); rows inserted meanwhile never shift a page.
        """
        keyset = "WHERE (created_at, id) > (?, ?)" if after else ""
        rows = self.conn.execute(
            f"SELECT id, vendor, description, created_at FROM sources {keyset} ORDER BY created_at, id LIMIT ?",
            (*(after or ()), limit if limit is not None else -1 if self.sql.name == "sqlite" else None),
        ).fetchall()
        return [_source(r) for r in rows]

    def get_source(self, source_id: str) -> Source:
        """One source. Raises :class:`NotFound`."""
        row = self.conn.execute(
            "SELECT id, vendor, description, created_at FROM sources WHERE id = ?", (source_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"source {source_id} not found")
        return _source(row)

    def job_for_source(
        self,
        source: Source,
        vendor_job_id: str,
        *,
        poll_at: int | None,
        deadline_at: int | None,
        max_per_hour: int | None = None,
    ) -> Job:
        """The job a source callback is about: found by (source, vendor job id), or created on
        first sight (``queued``, no params, polled at ``poll_at`` until ``deadline_at``).

        Raises :class:`TooManyRequests` (nothing created) when the source already created
        ``max_per_hour`` jobs in the last hour (counted per minute: the current minute and the 60
        before it), :class:`StoreUnavailable` when it cannot write.
        """
        with self.transaction():
            job_id, new = self._source_job_id(
                source, vendor_job_id, poll_at=poll_at, deadline_at=deadline_at, max_per_hour=max_per_hour
            )
            if new:
                self._count_source_job(source.id)
            return self.get_job(job_id)

    def _source_job_id(
        self,
        source: Source,
        vendor_job_id: str,
        *,
        poll_at: int | None,
        deadline_at: int | None,
        max_per_hour: int | None,
    ) -> tuple[str, bool]:
        """:meth:`job_for_source` inside its transaction: the job's id, and whether it was created
        now (the caller then counts it with :meth:`_count_source_job`, last: on Postgres the count's
        row stays locked until the commit, so it is taken as late as possible)."""
        found, _version = self._find_source_job(source, vendor_job_id, max_per_hour=max_per_hour)
        if found is not None:
            return found, False
        now = now_ms()
        job_id = new_id("job")
        self.conn.execute(
            "INSERT INTO jobs (id, vendor, vendor_job_id, status, params, sequence, flags, outputs, created_at,"
            " updated_at, submitted_at, source_id, poll_at, deadline_at)"
            " VALUES (?, ?, ?, 'queued', '{}', 0, '[]', '[]', ?, ?, ?, ?, ?, ?)",
            (job_id, source.vendor, vendor_job_id, now, now, now, source.id, poll_at, deadline_at),
        )
        return job_id, True

    def _find_source_job(
        self, source: Source, vendor_job_id: str, *, max_per_hour: int | None
    ) -> tuple[str | None, int]:
        """The id of ``source``'s job for ``vendor_job_id`` (the pair locked for this transaction, so
        two first sights at once make one job), or ``None`` when there is none yet and the source may
        create one; and the subscribers' version, read in the same statement. Raises
        :class:`TooManyRequests` when the source may not create one (``max_per_hour``)."""
        conn = self.conn
        self.lock(f"source-job:{source.id}:{vendor_job_id}")
        row = conn.execute(
            "SELECT (SELECT id FROM jobs WHERE source_id = ? AND vendor_job_id = ?) AS id,"
            " (SELECT value FROM relay_meta WHERE key = 'subscribers') AS subscribers_version",
            (source.id, vendor_job_id),
        ).fetchone()
        version = int(row["subscribers_version"] or 0)
        if row["id"] is not None:
            return str(row["id"]), version
        minute = now_ms() // 60_000
        if max_per_hour is not None:
            recent = int(
                conn.execute(
                    "SELECT COALESCE(SUM(jobs), 0) AS n FROM source_job_counts WHERE source_id = ? AND minute > ?",
                    (source.id, minute - 60),
                ).fetchone()["n"]
            )
            if recent >= max_per_hour:
                raise TooManyRequests(
                    f"source {source.id} created {recent} jobs in the last hour"
                    f" (RELAY_SOURCE_MAX_JOBS_PER_HOUR={max_per_hour}); try again later"
                )
        return None, version

    def _count_source_job(self, source_id: str) -> None:
        """Add one job to ``source_id``'s count for this minute (unix ms // 60,000); the first job of
        a minute also drops the source's counts older than the hour the cap looks at."""
        minute = now_ms() // 60_000
        jobs = self.conn.execute(
            "INSERT INTO source_job_counts (source_id, minute, jobs) VALUES (?, ?, 1)"
            " ON CONFLICT (source_id, minute) DO UPDATE SET jobs = source_job_counts.jobs + 1 RETURNING jobs",
            (source_id, minute),
        ).fetchone()["jobs"]
        if jobs == 1:
            self.conn.execute(
                "DELETE FROM source_job_counts WHERE source_id = ? AND minute <= ?", (source_id, minute - 60)
            )

    def record_source_message(
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
        then record and apply the message like :meth:`record_message` (kind ``callback``), so no poll
        can slip between the job's creation and its first callback. Example:
        ``IngestResult("in_…", "applied", <Job succeeded>, ("evt_…",))``. Raises
        :class:`TooManyRequests` (nothing written) past ``max_per_hour`` new jobs in the last hour or
        ``max_callbacks`` stored callbacks, :class:`StoreUnavailable`."""
        with self.transaction():
            found, version = self._find_source_job(source, vendor_job_id, max_per_hour=max_per_hour)
            new = found is None
            if found is not None:
                job, version = self._load_job_for_write(found)
            else:  # first sight: the job is written once, in the state this callback leaves it
                now = now_ms()
                job = Job(
                    id=new_id("job"),
                    vendor=source.vendor,
                    vendor_job_id=vendor_job_id,
                    status=JobState.QUEUED,
                    progress=None,
                    outputs=(),
                    error=None,
                    reference=None,
                    params={},
                    sequence=0,
                    flags=(),
                    created_at=now,
                    updated_at=now,
                    submitted_at=now,
                    completed_at=None,
                    source_id=source.id,
                    poll_at=poll_at,
                    deadline_at=deadline_at,
                )
            result = self._record(
                job,
                version,
                "callback",
                raw,
                update,
                verdict=None,
                error=None,
                max_callbacks=max_callbacks,
                insert=new,
            )
            if new:
                self._count_source_job(source.id)
            return result

    def record_orphan(
        self, vendor: str, kind: str, raw: RawMessage, *, verdict: str, error: str | None
    ) -> str:
        """Keep a vendor message that belongs to no job (a source callback that could not be
        parsed or authenticated); returns its inbound id."""
        inbound_id = new_id("in")
        with self.transaction() as conn:
            insert_inbound(conn, inbound_id, None, vendor, kind, now_ms(), raw, verdict, error)
        return inbound_id
