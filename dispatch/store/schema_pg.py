"""Versioned migrations for the Postgres store, under the same numbering as SQLite's
(:mod:`dispatch.store.schema`).

Postgres support starts at version 005, so its ``001_initial`` creates the whole schema in its
current shape (from :mod:`dispatch.store.ddl`, CHECK constraints included) and 002-005 only record
that their SQLite changes are part of it. Every later migration has one function per engine. Two
processes starting at once do not race: :func:`migrate` holds an advisory lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

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

MIGRATE_LOCK = 0x7570_7363_616C_65  # pg_advisory_lock key held while migrating ("upscale")


def _m001_initial(conn: psycopg.Connection[Any]) -> None:
    for table in TABLES:
        conn.execute(create_table_sql(table, "postgres"))
        for sql in create_indexes_sql(table):
            conn.execute(sql)


def _included_in_001(conn: psycopg.Connection[Any]) -> None:
    del conn  # SQLite's change is part of 001 on Postgres


def _m006_subscribers_version(conn: psycopg.Connection[Any]) -> None:
    conn.execute(RELAY_META_SQL)
    conn.execute("INSERT INTO relay_meta (key, value) VALUES ('subscribers', 0) ON CONFLICT DO NOTHING")


def _m007_idempotent_submits(conn: psycopg.Connection[Any]) -> None:
    for sql in IDEMPOTENCY_SQL:
        conn.execute(sql)


def _m008_vendor_analytics(conn: psycopg.Connection[Any]) -> None:
    for sql in analytics_sql("postgres"):
        conn.execute(sql)


def _m009_mirrors(conn: psycopg.Connection[Any]) -> None:
    # outputs copied to RELAY_MIRROR_URL before job.succeeded is emitted (dispatch.store.mirrors)
    for sql in mirrors_sql("postgres"):
        conn.execute(sql)


def _m010_source_counts_claim_index(conn: psycopg.Connection[Any]) -> None:
    for sql in (*SOURCE_COUNTS_SQL, *CLAIM_INDEX_SQL):
        conn.execute(sql)
    conn.execute(SOURCE_COUNTS_BACKFILL.replace("?", "%s"), (now_ms() - 3_600_000,))


def _m011_partial_job_indexes(conn: psycopg.Connection[Any]) -> None:
    for sql in PARTIAL_INDEX_SQL:
        conn.execute(sql)


def _m012_costs_as_billed(conn: psycopg.Connection[Any]) -> None:
    # costs per vendor job as the vendor bills them, estimates apart, compute time apart (dispatch.costs)
    for sql in costs_sql("postgres"):
        conn.execute(sql)


def _m013_payload_anomalies(conn: psycopg.Connection[Any]) -> None:
    # vendor fields left out of a job's messages (dispatch.model.Anomaly), counted by vendor analytics
    for sql in ANOMALIES_SQL:
        conn.execute(sql)


MIGRATIONS: list[tuple[str, Callable[[psycopg.Connection[Any]], None]]] = [
    ("001_initial", _m001_initial),
    ("002_polling_sources_recovery", _included_in_001),
    ("003_callback_count", _included_in_001),
    ("004_submit_outbox", _included_in_001),
    ("005_checks_from_enums", _included_in_001),
    ("006_subscribers_version", _m006_subscribers_version),
    ("007_idempotent_submits", _m007_idempotent_submits),
    ("008_vendor_analytics", _m008_vendor_analytics),
    ("009_mirrors", _m009_mirrors),
    ("010_source_counts_claim_index", _m010_source_counts_claim_index),
    ("011_partial_job_indexes", _m011_partial_job_indexes),
    ("012_costs_as_billed", _m012_costs_as_billed),
    ("013_payload_anomalies", _m013_payload_anomalies),
]


def _ensure_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
    )


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction, under an advisory lock;
    returns their names, e.g. ``["001_initial", ...]`` (``[]`` when up to date). ``conn`` must be in
    autocommit mode. Raises ``psycopg.Error`` as is."""
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
    try:
        _ensure_table(conn)
        applied: list[str] = []
        for name, step in MIGRATIONS:
            with conn.transaction():
                if conn.execute("SELECT 1 FROM _migrations WHERE name = %s", (name,)).fetchone():
                    continue
                step(conn)
                conn.execute("INSERT INTO _migrations VALUES (%s, now())", (name,))
                applied.append(name)
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))


def status(conn: psycopg.Connection[Any]) -> list[tuple[str, str | None]]:
    """Every known migration with when it was applied (ISO-8601), or ``None`` if pending."""
    _ensure_table(conn)
    done = {row[0]: str(row[1]) for row in conn.execute("SELECT name, applied_at FROM _migrations")}
    return [(name, done.get(name)) for name, _ in MIGRATIONS]
