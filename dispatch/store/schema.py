"""Versioned migrations for the SQLite store.

Each migration is a small named function applied in its own transaction and recorded in
``_migrations`` (sqlite-utils' migrations style). Add new ones at the end; never edit applied ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sqlite_utils import Database

from dispatch.model import now_ms
from dispatch.store.ddl import (
    ANOMALIES_SQL,
    CLAIM_INDEX_SQL,
    IDEMPOTENCY_SQL,
    PARTIAL_INDEX_SQL,
    RELAY_META_SQL,
    SOURCE_COUNTS_BACKFILL,
    SOURCE_COUNTS_SQL,
    TABLES,
    analytics_sql,
    costs_sql,
    create_indexes_sql,
    create_table_sql,
    mirrors_sql,
)


def _m001_initial(db: Database) -> None:
    db.table("jobs").create(
        {
            "id": str,
            "vendor": str,
            "vendor_job_id": str,
            "status": str,
            "progress": int,
            "outputs": str,
            "error": str,
            "reference": str,
            "params": str,
            "token_hash": str,
            "sequence": int,
            "flags": str,
            "created_at": int,
            "updated_at": int,
            "submitted_at": int,
            "completed_at": int,
        },
        pk="id",
        not_null={"vendor", "status", "params", "sequence", "created_at", "updated_at"},
        defaults={"sequence": 0, "flags": "[]", "outputs": "[]"},
    )
    db.table("jobs").create_index(["token_hash"], unique=True)
    db.table("jobs").create_index(["vendor", "vendor_job_id"])
    db.table("jobs").create_index(["created_at"])
    db.table("inbound").create(
        {
            "id": str,
            "job_id": str,
            "vendor": str,
            "kind": str,
            "received_at": int,
            "peer": str,
            "headers": str,
            "body": bytes,
            "verdict": str,
            "error": str,
            "event_ids": str,
        },
        pk="id",
        not_null={"vendor", "kind", "received_at", "body", "verdict"},
    )
    db.table("inbound").create_index(["job_id"])
    db.table("events").create(
        {"id": str, "job_id": str, "type": str, "sequence": int, "created_at": int, "body": str},
        pk="id",
        not_null={"job_id", "type", "sequence", "created_at", "body"},
    )
    db.table("events").create_index(["job_id", "sequence"])
    db.table("events").create_index(["created_at"])
    db.table("subscribers").create(
        {
            "id": str,
            "url": str,
            "event_types": str,
            "description": str,
            "enabled": int,
            "secret": str,
            "previous_secret": str,
            "previous_secret_until": int,
            "created_at": int,
            "updated_at": int,
            "deleted_at": int,
        },
        pk="id",
        not_null={"url", "event_types", "enabled", "secret", "created_at", "updated_at"},
    )
    db.table("deliveries").create(
        {
            "id": str,
            "event_id": str,
            "subscriber_id": str,
            "generation": int,
            "status": str,
            "attempts": int,
            "next_attempt_at": int,
            "lease_owner": str,
            "lease_expires_at": int,
            "last_status_code": int,
            "last_error": str,
            "created_at": int,
            "updated_at": int,
        },
        pk="id",
        not_null={
            "event_id",
            "subscriber_id",
            "generation",
            "status",
            "attempts",
            "created_at",
            "updated_at",
        },
        defaults={"attempts": 0, "generation": 0},
    )
    db.table("deliveries").create_index(["event_id", "subscriber_id", "generation"], unique=True)
    db.table("deliveries").create_index(["status", "next_attempt_at"])
    db.table("deliveries").create_index(["subscriber_id", "status"])
    db.table("attempts").create(
        {
            "id": int,
            "delivery_id": str,
            "number": int,
            "started_at": int,
            "duration_ms": int,
            "status_code": int,
            "response_headers": str,
            "response_body": str,
            "error": str,
        },
        pk="id",
        not_null={"delivery_id", "number", "started_at", "duration_ms"},
    )
    db.table("attempts").create_index(["delivery_id", "number"], unique=True)


def _m002_polling_sources_recovery(db: Database) -> None:
    jobs = db.table("jobs")
    jobs.add_column("source_id", str)
    jobs.add_column("poll_at", int)  # unix ms of the next status poll (NULL: none planned)
    jobs.add_column("poll_attempts", int, not_null_default=0)
    jobs.add_column("poll_lease_until", int)
    jobs.add_column("deadline_at", int)  # unix ms after which a non-terminal job fails with "timeout"
    jobs.create_index(["poll_at"])
    jobs.create_index(["source_id", "vendor_job_id"])
    db.table("sources").create(
        {"id": str, "vendor": str, "token_hash": str, "description": str, "created_at": int},
        pk="id",
        not_null={"vendor", "token_hash", "created_at"},
    )
    db.table("sources").create_index(["token_hash"], unique=True)
    subscribers = db.table("subscribers")
    subscribers.add_column("retry_schedule", str)  # JSON list of seconds, NULL: the relay's
    subscribers.add_column("failing_since", int)  # unix ms of the first failure of the current streak
    subscribers.add_column("disabled_reason", str)
    # attempts made before the current retry schedule started (a manual retry or recover restarts it)
    db.table("deliveries").add_column("schedule_offset", int, not_null_default=0)


def _m003_callback_count(db: Database) -> None:
    # stored callbacks per job, so RELAY_MAX_INBOUND_PER_JOB is checked without counting rows
    db.table("jobs").add_column("callback_count", int, not_null_default=0)
    db.execute(
        "UPDATE jobs SET callback_count = (SELECT COUNT(*) FROM inbound i"
        " WHERE i.job_id = jobs.id AND i.kind = 'callback')"
    )
    db.table("jobs").create_index(["source_id", "created_at"])


def _m004_submit_outbox(db: Database) -> None:
    jobs = db.table("jobs")
    jobs.add_column("submit_at", int)  # unix ms of the next submit attempt (NULL: none pending)
    jobs.add_column("submit_lease_until", int)  # a submit in flight holds this lease
    jobs.add_column("submit_attempts", int, not_null_default=0)
    jobs.add_column("submit_error", str)  # the last attempt's error while retrying
    jobs.add_column("submit_interrupted", int, not_null_default=0)  # the claim found an expired lease
    jobs.add_column("callback_token", str)  # encrypted with the secret key, for background submits
    jobs.add_column("resubmits", int, not_null_default=0)  # new submits after transient vendor failures
    jobs.add_column("previous_vendor_job_ids", str, not_null_default="[]")  # JSON list, oldest first
    jobs.create_index(["submit_at"])


def _m005_checks_from_enums(db: Database) -> None:
    # every table rebuilt from dispatch.store.ddl: CHECK constraints from the code's enums (SQLite
    # cannot add a constraint to an existing table)
    for table, columns in TABLES.items():
        names = ", ".join(c.name for c in columns)
        db.execute(create_table_sql(table, "sqlite", name=f"{table}_new"))
        db.execute(f"INSERT INTO {table}_new ({names}) SELECT {names} FROM {table}")
        db.execute(f"DROP TABLE {table}")
        db.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
        for sql in create_indexes_sql(table):
            db.execute(sql)


def _m006_subscribers_version(db: Database) -> None:
    # a counter bumped by every subscriber change, read with the job on the write path, so each
    # process can cache the subscriber list (dispatch.store.sql.SubscriberCache)
    db.execute(RELAY_META_SQL)
    db.execute("INSERT INTO relay_meta (key, value) VALUES ('subscribers', 0) ON CONFLICT DO NOTHING")


def _m007_idempotent_submits(db: Database) -> None:
    for sql in IDEMPOTENCY_SQL:
        db.execute(sql)


def _m008_vendor_analytics(db: Database) -> None:
    for sql in analytics_sql("sqlite"):
        db.execute(sql)


def _m009_mirrors(db: Database) -> None:
    # outputs copied to RELAY_MIRROR_URL before job.succeeded is emitted (dispatch.store.mirrors)
    for sql in mirrors_sql("sqlite"):
        db.execute(sql)


def _m010_source_counts_claim_index(db: Database) -> None:
    for sql in (*SOURCE_COUNTS_SQL, *CLAIM_INDEX_SQL):
        db.execute(sql)
    db.execute(SOURCE_COUNTS_BACKFILL, (now_ms() - 3_600_000,))


def _m011_partial_job_indexes(db: Database) -> None:
    for sql in PARTIAL_INDEX_SQL:
        db.execute(sql)


def _m012_costs_as_billed(db: Database) -> None:
    # costs per vendor job as the vendor bills them, estimates apart, compute time apart (dispatch.costs)
    for sql in costs_sql("sqlite"):
        db.execute(sql)


def _m013_payload_anomalies(db: Database) -> None:
    # vendor fields left out of a job's messages (dispatch.model.Anomaly), counted by vendor analytics
    for sql in ANOMALIES_SQL:
        db.execute(sql)


MIGRATIONS: list[tuple[str, Callable[[Database], None]]] = [
    ("001_initial", _m001_initial),
    ("002_polling_sources_recovery", _m002_polling_sources_recovery),
    ("003_callback_count", _m003_callback_count),
    ("004_submit_outbox", _m004_submit_outbox),
    ("005_checks_from_enums", _m005_checks_from_enums),
    ("006_subscribers_version", _m006_subscribers_version),
    ("007_idempotent_submits", _m007_idempotent_submits),
    ("008_vendor_analytics", _m008_vendor_analytics),
    ("009_mirrors", _m009_mirrors),
    ("010_source_counts_claim_index", _m010_source_counts_claim_index),
    ("011_partial_job_indexes", _m011_partial_job_indexes),
    ("012_costs_as_billed", _m012_costs_as_billed),
    ("013_payload_anomalies", _m013_payload_anomalies),
]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; returns their names.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Raises ``sqlite3.Error`` as is.
    """
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied: list[str] = []
    db = Database(conn)
    for name, step in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                step(db)
                conn.execute("INSERT INTO _migrations VALUES (?, datetime('now'))", (name,))
                applied.append(name)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return applied


def status(conn: sqlite3.Connection) -> list[tuple[str, str | None]]:
    """Every known migration with when it was applied (``"2026-11-30 06:12:00"``), or ``None``."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0]: row[1] for row in conn.execute("SELECT name, applied_at FROM _migrations")}
    return [(name, done.get(name)) for name, _ in MIGRATIONS]
