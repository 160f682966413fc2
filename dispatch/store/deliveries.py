"""Store verbs for subscribers, deliveries (the outbox) and their attempts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dispatch.errors import Conflict, NotFound
from dispatch.model import DEFAULT_EVENT_TYPES, DeliveryStatus, new_id, now_ms
from dispatch.secretbox import SecretBox
from dispatch.signing import generate_secret
from dispatch.store.records import Attempt, Delivery, DeliveryWork, Subscriber
from dispatch.store.sql import Conn, Dialect, SubscriberCache

_SUB_COLUMNS = (
    "id, url, event_types, description, enabled, created_at, updated_at, retry_schedule, failing_since,"
    " disabled_reason, previous_secret_until"
)
_DEL_COLUMNS = (
    "id, event_id, subscriber_id, generation, status, attempts, next_attempt_at, last_status_code,"
    " last_error, created_at, updated_at"
)


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row["id"],
        url=row["url"],
        event_types=tuple(json.loads(row["event_types"])),
        description=row["description"],
        enabled=bool(row["enabled"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        retry_schedule=tuple(json.loads(row["retry_schedule"])) if row["retry_schedule"] else None,
        failing_since=row["failing_since"],
        disabled_reason=row["disabled_reason"],
        previous_secret_until=row["previous_secret_until"],
    )


def _delivery(row: Any, attempts: tuple[Attempt, ...] = ()) -> Delivery:
    return Delivery(
        id=row["id"],
        event_id=row["event_id"],
        subscriber_id=row["subscriber_id"],
        generation=row["generation"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempt_log=attempts,
    )


def _attempt(row: Any) -> Attempt:
    return Attempt(
        number=row["number"],
        started_at=row["started_at"],
        duration_ms=row["duration_ms"],
        status_code=row["status_code"],
        response_headers=json.loads(row["response_headers"] or "{}"),
        response_body=row["response_body"] or "",
        error=row["error"],
    )


class DeliveryVerbs:
    """Subscribers and deliveries. Mixed into :class:`dispatch.store.sqlite.SQLiteStore`."""

    conn: Conn
    sql: Dialect
    subscriber_cache: SubscriberCache
    box: SecretBox

    if TYPE_CHECKING:  # provided by SQLiteStore

        def transaction(self) -> AbstractContextManager[Conn]: ...

        def lock(self, key: str) -> None: ...

        def notify_due(self) -> None: ...

    # subscribers --------------------------------------------------------------------------------
    def create_subscriber(
        self,
        url: str,
        *,
        event_types: Sequence[str] = DEFAULT_EVENT_TYPES,
        description: str | None = None,
        enabled: bool = True,
        retry_schedule: Sequence[float] | None = None,
    ) -> tuple[Subscriber, str]:
        """Create a subscriber; returns it and its new ``whsec_…`` secret (shown only this once).

        The secret is stored encrypted with the store's :class:`SecretBox`. ``retry_schedule``
        (seconds after each failed attempt) overrides the relay's schedule for this subscriber.
        """
        secret = generate_secret()
        now = now_ms()
        sub_id = new_id("sub")
        schedule = json.dumps(list(retry_schedule)) if retry_schedule is not None else None
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO subscribers (id, url, event_types, description, enabled, secret, created_at,"
                " updated_at, retry_schedule) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sub_id,
                    url,
                    json.dumps(list(event_types)),
                    description,
                    int(enabled),
                    self.box.encrypt(secret),
                    now,
                    now,
                    schedule,
                ),
            )
            self._subscribers_changed()
        return self.get_subscriber(sub_id), secret

    def get_subscriber(self, sub_id: str) -> Subscriber:
        """One live (not deleted) subscriber. Raises :class:`NotFound`."""
        row = self.conn.execute(
            f"SELECT {_SUB_COLUMNS} FROM subscribers WHERE id = ? AND deleted_at IS NULL", (sub_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"subscriber {sub_id} not found")
        return _subscriber(row)

    def list_subscribers(
        self, *, limit: int | None = None, after: tuple[int, str] | None = None
    ) -> list[Subscriber]:
        """Live subscribers, oldest first (all of them without ``limit``).

        Keyset pagination: ``after`` is the ``(time, id)`` of the last row of the previous page (see
        :func:`dispatch.store.sql.page_key`); rows inserted meanwhile never shift a page.
        """
        keyset = "AND (created_at, id) > (?, ?)" if after else ""
        rows = self.conn.execute(
            f"SELECT {_SUB_COLUMNS} FROM subscribers WHERE deleted_at IS NULL {keyset}"
            " ORDER BY created_at, id LIMIT ?",
            (*(after or ()), limit if limit is not None else -1 if self.sql.name == "sqlite" else None),
        ).fetchall()
        return [_subscriber(r) for r in rows]

    def update_subscriber(self, sub_id: str, **changes: Any) -> Subscriber:
        """Change ``url``, ``event_types``, ``description``, ``enabled`` or ``retry_schedule``.

        Enabling a subscriber clears its failure streak and disabled reason. Raises :class:`NotFound`.
        """
        allowed = {"url", "event_types", "description", "enabled", "retry_schedule"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}")
        with self.transaction() as conn:
            self.get_subscriber(sub_id)
            for name, value in changes.items():
                if name in ("event_types", "retry_schedule") and value is not None:
                    value = json.dumps(list(value))
                elif name == "enabled":
                    value = int(bool(value))
                    if value:
                        conn.execute(
                            "UPDATE subscribers SET failing_since = NULL, disabled_reason = NULL WHERE id = ?",
                            (sub_id,),
                        )
                conn.execute(f"UPDATE subscribers SET {name} = ? WHERE id = ?", (value, sub_id))
            conn.execute("UPDATE subscribers SET updated_at = ? WHERE id = ?", (now_ms(), sub_id))
            self._subscribers_changed()
        return self.get_subscriber(sub_id)

    def delete_subscriber(self, sub_id: str) -> None:
        """Delete a subscriber; its pending deliveries are dropped (marked ``dead``), its history kept."""
        now = now_ms()
        with self.transaction() as conn:
            self.get_subscriber(sub_id)
            conn.execute("UPDATE subscribers SET deleted_at = ?, enabled = 0 WHERE id = ?", (now, sub_id))
            self._subscribers_changed()
            conn.execute(
                "UPDATE deliveries SET status = 'dead', last_error = 'subscriber deleted', updated_at = ?,"
                " next_attempt_at = NULL WHERE subscriber_id = ? AND status IN ('pending', 'retrying')",
                (now, sub_id),
            )

    def _secrets(self, sub_id: str, now: int) -> tuple[str, ...]:
        row = self.conn.execute(
            "SELECT secret, previous_secret, previous_secret_until FROM subscribers WHERE id = ?", (sub_id,)
        ).fetchone()
        secrets = [self.box.decrypt(row["secret"])]
        until = row["previous_secret_until"]
        if row["previous_secret"] and until and until > now:
            secrets.append(self.box.decrypt(row["previous_secret"]))
        return tuple(secrets)

    # deliveries ---------------------------------------------------------------------------------
    def _enqueue_deliveries(self, events: list[tuple[str, str]], now: int, version: int | None) -> int:
        """One delivery per (event, subscriber that wants its type), in one statement: ``pending`` for
        enabled subscribers, ``failed`` (kept for a later recover, nothing is dropped) for disabled
        ones. The subscriber list comes from :class:`SubscriberCache` while ``version`` (read with the
        job) is unchanged. Returns how many deliveries were written."""
        rows: list[Any] = []
        for sub_id, types, enabled in self._subscriber_list(version):
            for eid, event_type in events:
                if event_type in types:
                    rows.extend(
                        (
                            new_id("dlv"),
                            eid,
                            sub_id,
                            0,
                            DeliveryStatus.PENDING if enabled else DeliveryStatus.FAILED,
                            now if enabled else None,
                            None if enabled else "subscriber disabled",
                            now,
                            now,
                        )
                    )
        if not rows:
            return 0
        count = len(rows) // 9
        marks = ", ".join(["(?, ?, ?, ?, ?, 0, CAST(? AS BIGINT), ?, ?, ?)"] * count)
        self.conn.execute(
            "INSERT INTO deliveries (id, event_id, subscriber_id, generation, status, attempts,"
            f" next_attempt_at, last_error, created_at, updated_at) VALUES {marks} ON CONFLICT DO NOTHING",
            rows,
        )
        self.notify_due()
        return count

    def _subscriber_list(self, version: int | None) -> tuple[tuple[str, frozenset[str], bool], ...]:
        """Live subscribers as ``(id, event types, enabled)``, cached per subscribers' version."""
        if version is None:
            row = self.conn.execute("SELECT value FROM relay_meta WHERE key = 'subscribers'").fetchone()
            version = int(row["value"]) if row else 0
        cached = self.subscriber_cache.get(version)
        if cached is not None:
            return cached
        rows = self.conn.execute(
            "SELECT id, event_types, enabled FROM subscribers WHERE deleted_at IS NULL ORDER BY created_at, id"
        ).fetchall()
        subs = tuple((r["id"], frozenset(json.loads(r["event_types"])), bool(r["enabled"])) for r in rows)
        self.subscriber_cache.put(version, subs)
        return subs

    def _subscribers_changed(self) -> None:
        """Bump the subscribers' version: every process's cached list is stale from this commit on."""
        self.conn.execute("UPDATE relay_meta SET value = value + 1 WHERE key = 'subscribers'")

    def _insert_delivery(
        self, event_id: str, sub_id: str, generation: int, now: int, *, paused: bool = False
    ) -> str:
        delivery_id = new_id("dlv")
        self.conn.execute(
            "INSERT INTO deliveries (id, event_id, subscriber_id, generation, status, attempts,"
            " next_attempt_at, last_error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                delivery_id,
                event_id,
                sub_id,
                generation,
                "failed" if paused else "pending",
                None if paused else now,
                "subscriber disabled" if paused else None,
                now,
                now,
            ),
        )
        return delivery_id

    def replay_event(self, event_id: str, subscriber_id: str | None = None) -> list[Delivery]:
        """Deliver a stored event again (same event id, same body) as a new delivery generation.

        To ``subscriber_id`` if given (whatever its event types), else to every enabled subscriber
        whose event types include the event's. Raises :class:`NotFound`.
        """
        now = now_ms()
        with self.transaction() as conn:
            row = conn.execute("SELECT type FROM events WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                raise NotFound(f"event {event_id} not found")
            if subscriber_id is not None:
                targets = [self.get_subscriber(subscriber_id).id]
            else:
                targets = [
                    s.id for s in self.list_subscribers() if s.enabled and row["type"] in s.event_types
                ]
            created = []
            for sub_id in targets:
                generation = conn.execute(
                    "SELECT COALESCE(MAX(generation) + 1, 0) AS next FROM deliveries"
                    " WHERE event_id = ? AND subscriber_id = ?",
                    (event_id, sub_id),
                ).fetchone()["next"]
                created.append(self._insert_delivery(event_id, sub_id, generation, now))
            self.notify_due()
            return [self.get_delivery(d) for d in created]

    def get_delivery(self, delivery_id: str) -> Delivery:
        """One delivery with its attempts. Raises :class:`NotFound`."""
        row = self.conn.execute(
            f"SELECT {_DEL_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"delivery {delivery_id} not found")
        attempts = self.conn.execute(
            "SELECT number, started_at, duration_ms, status_code, response_headers, response_body, error"
            " FROM attempts WHERE delivery_id = ? ORDER BY number",
            (delivery_id,),
        ).fetchall()
        log = tuple(_attempt(a) for a in attempts)
        return _delivery(row, log)

    def list_deliveries(
        self,
        *,
        status: str | None = None,
        subscriber_id: str | None = None,
        event_id: str | None = None,
        limit: int = 50,
        after: tuple[int, str] | None = None,
    ) -> list[Delivery]:
        """Newest deliveries first (without attempt logs), optionally filtered.

        Keyset pagination: ``after`` is the ``(time, id)`` of the last row of the previous page (see
        :func:`dispatch.store.sql.page_key`); rows inserted meanwhile never shift a page.
        """
        values = {"status": status, "subscriber_id": subscriber_id, "event_id": event_id}
        clauses = [f"{k} = ?" for k, v in values.items() if v is not None]
        args: list[Any] = [v for v in values.values() if v is not None]
        if after is not None:
            clauses.append("(created_at, id) < (?, ?)")
            args.extend(after)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.conn.execute(
            f"SELECT {_DEL_COLUMNS} FROM deliveries {where} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_delivery(r) for r in rows]

    def retry_delivery(self, delivery_id: str) -> Delivery:
        """Make a ``dead``, ``failed`` or ``retrying`` delivery due now, restarting its retry schedule
        (attempt numbers go on). Raises :class:`NotFound`, or :class:`Conflict` if it already succeeded."""
        now = now_ms()
        with self.transaction() as conn:
            current = self.get_delivery(delivery_id)
            if current.status == "succeeded":
                raise Conflict(f"delivery {delivery_id} already succeeded; replay the event instead")
            conn.execute(
                "UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END,"
                " next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?,"
                " schedule_offset = attempts WHERE id = ?",
                (now, now, delivery_id),
            )
            self.notify_due()
        return self.get_delivery(delivery_id)

    def claim_due_deliveries(
        self,
        worker_id: str,
        *,
        now: int,
        limit: int,
        lease_ms: int,
        per_subscriber: int = 1_000_000,
        exclude: Sequence[str] = (),
    ) -> list[DeliveryWork]:
        """Lease up to ``limit`` due deliveries to ``worker_id`` until ``now + lease_ms`` (unix ms).

        At most ``per_subscriber`` per subscriber, none for subscribers in ``exclude`` (those the
        worker already saturates). First attempts come before retries, so a backlog of retries
        never delays fresh events. An expired lease (its worker died) is claimable again.
        """
        excluded = set(exclude)
        with self.transaction() as conn:
            # per enabled subscriber, its first due deliveries by index (subscriber_id, status,
            # next_attempt_at): first attempts (pending) before retries, each oldest first; then the
            # oldest `limit` of those across subscribers. Each read stops after `take` rows, so a
            # claim costs the same with 10 or 100,000 deliveries due (a ranking over every due row
            # was half the worker's time with a backlog, bench/README.md). On Postgres the rows are
            # locked as read, skipping those another worker is claiming.
            take = max(0, min(per_subscriber, limit))
            candidates: list[tuple[int, int, str]] = []
            subscribers = conn.execute("SELECT id FROM subscribers WHERE enabled = 1").fetchall()
            for sub_id in (row["id"] for row in subscribers):
                if sub_id in excluded or take == 0:
                    continue
                found = 0
                for rank, status in enumerate(("pending", "retrying")):
                    for row in conn.execute(
                        "SELECT id, next_attempt_at FROM deliveries WHERE subscriber_id = ? AND status = ?"
                        " AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)"
                        f" ORDER BY next_attempt_at LIMIT ?{self.sql.skip_locked}",
                        (sub_id, status, now, now, take - found),
                    ).fetchall():
                        candidates.append((rank, row["next_attempt_at"], row["id"]))
                        found += 1
                    if found >= take:
                        break
            chosen = [delivery_id for _, _, delivery_id in sorted(candidates)[:limit]]
            if not chosen:
                return []
            rows = conn.execute(
                "UPDATE deliveries SET lease_owner = ?, lease_expires_at = ?"
                f" WHERE id IN ({','.join('?' * len(chosen))})"
                " RETURNING id, event_id, subscriber_id, attempts, schedule_offset",
                (worker_id, now + lease_ms, *chosen),
            ).fetchall()
            order = {delivery_id: n for n, delivery_id in enumerate(chosen)}
            rows = sorted(rows, key=lambda r: order[r["id"]])
            work = []
            targets: dict[str, tuple[str, tuple[float, ...] | None, tuple[str, ...]]] = {}
            bodies: dict[str, bytes] = {}
            for delivery_id, event_id, sub_id, attempts, offset in (tuple(r) for r in rows):
                if event_id not in bodies:
                    bodies[event_id] = (
                        conn.execute("SELECT body FROM events WHERE id = ?", (event_id,))
                        .fetchone()["body"]
                        .encode()
                    )
                if sub_id not in targets:  # read and decrypt each subscriber once per claim
                    sub = conn.execute(
                        "SELECT url, retry_schedule FROM subscribers WHERE id = ?", (sub_id,)
                    ).fetchone()
                    schedule = tuple(json.loads(sub["retry_schedule"])) if sub["retry_schedule"] else None
                    targets[sub_id] = (sub["url"], schedule, self._secrets(sub_id, now))
                url, schedule, secrets = targets[sub_id]
                work.append(
                    DeliveryWork(
                        delivery_id,
                        event_id,
                        sub_id,
                        url,
                        bodies[event_id],
                        secrets,
                        attempts,
                        schedule,
                        offset,
                    )
                )
            return work

    def finish_attempt(
        self,
        delivery_id: str,
        worker_id: str,
        attempt: Attempt,
        *,
        next_attempt_at: int | None,
        disable_after_ms: int | None = None,
    ) -> Delivery:
        """Record one attempt and its outcome, releasing the lease.

        A 2xx ``status_code`` makes the delivery ``succeeded`` and ends the subscriber's failure
        streak; otherwise it is ``retrying`` at ``next_attempt_at`` (unix ms) or ``dead`` when that
        is ``None``. A 410 Gone makes it ``dead`` and disables the subscriber; a subscriber failing
        without a success for ``disable_after_ms`` is disabled too (its later events are kept as
        ``failed`` deliveries for a recover). Raises :class:`Conflict` when ``worker_id`` no longer
        holds the lease (it expired and another worker took over); the attempt is still recorded.

        Returns the delivery as this attempt left it, without its attempt log (``attempt_log`` is
        empty: the worker needs only the status, and reading the log back after every attempt was a
        cost of the delivery loop; :meth:`get_delivery` has it).
        """
        with self.transaction():
            delivery = self._finish(delivery_id, worker_id, attempt, next_attempt_at, disable_after_ms)
            if delivery is None:
                self.get_delivery(delivery_id)  # NotFound when it is gone
                raise Conflict(f"delivery {delivery_id} is no longer leased to {worker_id}")
            return delivery

    def finish_attempts(
        self,
        worker_id: str,
        finished: Sequence[tuple[str, Attempt, int | None]],
        *,
        disable_after_ms: int | None = None,
    ) -> list[Delivery | None]:
        """:meth:`finish_attempt` for several ``(delivery_id, attempt, next_attempt_at)`` in one
        transaction (a worker's attempts that ended while the previous batch was being written), in
        order; ``None`` for a delivery ``worker_id`` no longer holds (its attempt is still recorded)
        or that no longer exists. Example: ``finish_attempts("w1", [("dlv_1", attempt, None)])`` →
        ``[Delivery(id="dlv_1", status="succeeded", ...)]``."""
        with self.transaction():
            return [
                self._finish(delivery_id, worker_id, attempt, next_at, disable_after_ms)
                for delivery_id, attempt, next_at in finished
            ]

    def _finish(
        self,
        delivery_id: str,
        worker_id: str,
        attempt: Attempt,
        next_attempt_at: int | None,
        disable_after_ms: int | None,
    ) -> Delivery | None:
        """One attempt's rows, inside the caller's transaction; ``None`` when the lease is lost."""
        ok = attempt.status_code is not None and 200 <= attempt.status_code < 300
        gone = attempt.status_code == 410
        status = "succeeded" if ok else ("retrying" if next_attempt_at is not None and not gone else "dead")
        now = now_ms()
        conn = self.conn
        conn.execute(
            "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code,"
            " response_headers, response_body, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                delivery_id,
                attempt.number,
                attempt.started_at,
                attempt.duration_ms,
                attempt.status_code,
                json.dumps(cap_headers(attempt.response_headers)),
                attempt.response_body,
                attempt.error,
            ),
        )
        cur = conn.execute(
            f"UPDATE deliveries SET status = ?, attempts = {self.sql.greatest}(attempts, ?), next_attempt_at = ?,"
            " last_status_code = ?, last_error = ?, lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = ? WHERE id = ? AND lease_owner = ? AND status NOT IN ('succeeded', 'dead')"
            f" RETURNING {_DEL_COLUMNS}",
            (
                status,
                attempt.number,
                next_attempt_at if status == "retrying" else None,
                attempt.status_code,
                attempt.error,
                now,
                delivery_id,
                worker_id,
            ),
        ).fetchone()
        if cur is None:
            return None
        disabled = self._track_health(
            cur["subscriber_id"], ok=ok, gone=gone, now=now, disable_after_ms=disable_after_ms
        )
        return replace(_delivery(cur), subscriber_disabled=disabled)

    def _track_health(
        self, sub_id: str, *, ok: bool, gone: bool, now: int, disable_after_ms: int | None
    ) -> str | None:
        """Update the subscriber's failure streak; returns the reason when this attempt disabled it."""
        if ok:
            self.conn.execute(
                "UPDATE subscribers SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL",
                (sub_id,),
            )
            return None
        self.conn.execute(
            "UPDATE subscribers SET failing_since = ? WHERE id = ? AND failing_since IS NULL", (now, sub_id)
        )
        reason = None
        if gone:
            reason = "endpoint answered 410 Gone"
        elif disable_after_ms is not None:
            since = self.conn.execute(
                "SELECT failing_since FROM subscribers WHERE id = ?", (sub_id,)
            ).fetchone()["failing_since"]
            if now - since >= disable_after_ms:
                reason = f"failing without a success for {disable_after_ms // 1000} s"
        if reason is None:
            return None
        disabled = self.conn.execute(
            "UPDATE subscribers SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ? AND enabled = 1",
            (reason, now, sub_id),
        ).rowcount
        if not disabled:  # already disabled (another worker's attempt got there first): nothing changed
            return None
        self._subscribers_changed()
        return reason

    def renew_leases(self, worker_id: str, delivery_ids: Sequence[str], *, until: int) -> int:
        """Heartbeat: extend ``worker_id``'s leases on ``delivery_ids`` to ``until`` (unix ms)."""
        with self.transaction() as conn:
            return sum(
                conn.execute(
                    "UPDATE deliveries SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
                    (until, d, worker_id),
                ).rowcount
                for d in delivery_ids
            )

    def rotate_secret(self, sub_id: str, *, overlap_ms: int) -> tuple[Subscriber, str]:
        """Give a subscriber a new secret; the old one keeps signing beside it for ``overlap_ms``.
        Returns the subscriber and the new secret. Raises :class:`NotFound`."""
        secret = generate_secret()
        now = now_ms()
        with self.transaction() as conn:
            self.get_subscriber(sub_id)
            conn.execute(
                "UPDATE subscribers SET previous_secret = secret, previous_secret_until = ?, secret = ?,"
                " updated_at = ? WHERE id = ?",
                (now + overlap_ms, self.box.encrypt(secret), now, sub_id),
            )
        return self.get_subscriber(sub_id), secret

    def count_recoverable(self, sub_id: str, *, since: int, until: int | None) -> int:
        """How many ``failed`` or ``dead`` deliveries of ``sub_id`` were created in [since, until) (unix ms)."""
        self.get_subscriber(sub_id)
        return int(
            self.conn.execute(
                "SELECT COUNT(*) AS n FROM deliveries WHERE subscriber_id = ? AND status IN ('failed', 'dead')"
                " AND created_at >= ? AND created_at < ?",
                (sub_id, since, until if until is not None else 2**62),
            ).fetchone()["n"]
        )

    def recover_deliveries(self, sub_id: str, *, since: int, until: int | None, batch: int = 500) -> int:
        """Re-enqueue up to ``batch`` ``failed`` or ``dead`` deliveries of ``sub_id`` created in
        [since, until) (unix ms), due now, with a fresh schedule; returns how many. Call until 0."""
        now = now_ms()
        with self.transaction() as conn:
            self.get_subscriber(sub_id)
            done = conn.execute(
                "UPDATE deliveries SET status = 'retrying', next_attempt_at = ?, schedule_offset = attempts,"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE id IN (SELECT id FROM deliveries"
                " WHERE subscriber_id = ? AND status IN ('failed', 'dead') AND created_at >= ? AND created_at < ?"
                " ORDER BY created_at LIMIT ?)",
                (now, now, sub_id, since, until if until is not None else 2**62, batch),
            ).rowcount
            if done:
                self.notify_due()
            return done

    def release_leases(self, worker_id: str) -> int:
        """Give back every lease ``worker_id`` holds (graceful shutdown); returns how many."""
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?",
                (worker_id,),
            ).rowcount

    def prune(self, *, before: int, dry_run: bool = False) -> dict[str, int]:
        """Delete history older than ``before`` (unix ms): stored vendor messages, the attempts of
        succeeded deliveries, and events whose every delivery succeeded (with those deliveries).
        Never touches a job's latest state (the ``jobs`` table), work still to do (pending, retrying,
        failed deliveries) or dead letters (dead deliveries and their events).

        Returns what was (with ``dry_run``: would be) deleted, e.g. ``{"inbound": 120, "attempts":
        300, "deliveries": 280, "events": 140, "mirrors": 12}`` (finished mirror copies' rows; the
        stored objects stay, for the bucket's own lifecycle rules). Raises :class:`StoreUnavailable`.
        """
        done_events = (
            "SELECT e.id FROM events e WHERE e.created_at < ? AND NOT EXISTS ("
            "SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status <> 'succeeded')"
        )
        old_succeeded = "SELECT id FROM deliveries WHERE status = 'succeeded' AND created_at < ?"
        parts = {
            "inbound": ("FROM inbound WHERE received_at < ?", (before,)),
            "attempts": (f"FROM attempts WHERE delivery_id IN ({old_succeeded})", (before,)),
            "deliveries": (f"FROM deliveries WHERE event_id IN ({done_events})", (before,)),
            "events": (f"FROM events WHERE id IN ({done_events})", (before,)),
            # a finished copy's bookkeeping (the outputs' mirror fields stay on the job)
            "mirrors": ("FROM mirrors WHERE status = 'done' AND updated_at < ?", (before,)),
        }
        with self.transaction() as conn:
            if dry_run:
                return {
                    name: int(conn.execute(f"SELECT COUNT(*) AS n {sql}", args).fetchone()["n"])
                    for name, (sql, args) in parts.items()
                }
            return {name: conn.execute(f"DELETE {sql}", args).rowcount for name, (sql, args) in parts.items()}

    def next_due_at(self) -> int | None:
        """Unix ms of the earliest pending or retrying delivery, or ``None`` when there is none."""
        row = self.conn.execute(
            "SELECT MIN(next_attempt_at) AS due FROM deliveries WHERE status IN ('pending', 'retrying')"
        ).fetchone()
        return row["due"] if row else None

    def operations_snapshot(self, now: int) -> dict[str, float]:
        """Gauges for ``GET /metrics`` at ``now`` (unix ms), in one statement: deliveries due now
        (pending or retrying, ``next_attempt_at <= now``, not in flight under a live lease), the age
        in seconds of the oldest due one (0 when none is due), dead letters and disabled subscribers.

        Example: ``{"deliveries_due": 3, "oldest_due_age_seconds": 12.5, "dead_letters": 1,
        "disabled_subscribers": 0}``.
        """
        row = self.conn.execute(
            "SELECT"
            " (SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'retrying')"
            "  AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)) AS due,"
            " (SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('pending', 'retrying')"
            "  AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)) AS oldest_due,"
            " (SELECT COUNT(*) FROM deliveries WHERE status = 'dead') AS dead,"
            " (SELECT COUNT(*) FROM subscribers WHERE enabled = 0) AS disabled",
            (now, now, now, now),
        ).fetchone()
        oldest = row["oldest_due"]
        return {
            "deliveries_due": int(row["due"] or 0),
            "oldest_due_age_seconds": max(now - int(oldest), 0) / 1000 if oldest is not None else 0.0,
            "dead_letters": int(row["dead"] or 0),
            "disabled_subscribers": int(row["disabled"] or 0),
        }


MAX_STORED_HEADER_BYTES = 4096
"""How much of a subscriber's response headers an attempt keeps (names and values, bytes), like the
4 KiB of its body (:data:`dispatch.sender.MAX_RESPONSE_BYTES`)."""


def cap_headers(headers: dict[str, str], limit: int = MAX_STORED_HEADER_BYTES) -> dict[str, str]:
    """``headers`` cut to at most ``limit`` bytes of names and values (UTF-8), in order; a value that
    does not fit whole is cut, and the marker ``"x-relay-truncated": "true"`` is added when anything
    was dropped. Example: 100 headers of 8 KB each → a few kept, about 4 KiB in all."""
    kept: dict[str, str] = {}
    used = 0
    for name, value in headers.items():
        size = len(name.encode()) + len(value.encode())
        if used + size > limit:
            room = limit - used - len(name.encode())
            if room > 0:
                kept[name] = value.encode()[:room].decode("utf-8", "ignore")
            kept["x-relay-truncated"] = "true"
            return kept
        kept[name] = value
        used += size
    return kept
