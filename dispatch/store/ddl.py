"""The relay's tables, declared once and rendered for each engine, with CHECK constraints generated
from the same enums the code uses (:mod:`dispatch.model`), so a status, verdict, kind or event type
the code does not know can never be stored.

Example: ``create_table_sql("inbound", "postgres")`` →
``CREATE TABLE IF NOT EXISTS inbound (id TEXT PRIMARY KEY, ..., body BYTEA NOT NULL, verdict TEXT NOT
NULL CHECK (verdict IN ('applied', ...)), ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from dispatch.model import DeliveryStatus, EventType, InboundKind, JobState, Verdict

Engine = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Column:
    """One column: ``kind`` is ``text``, ``int`` (unix ms, counters: 64-bit), ``bytes`` or ``serial``
    (an integer key the database assigns); ``check`` limits it to an enum's values."""

    name: str
    kind: Literal["text", "int", "bytes", "serial"]
    not_null: bool = False
    default: str | None = None
    primary_key: bool = False
    check: type[StrEnum] | None = None


def _c(name: str, kind: Literal["text", "int", "bytes", "serial"] = "text", **kw: object) -> Column:
    return Column(name, kind, **kw)  # type: ignore[arg-type]


# The tables as of migration 005 (SQLite 005 rebuilds them from this, Postgres 001 creates them);
# later migrations change them with their own statements below.
TABLES: dict[str, tuple[Column, ...]] = {
    "jobs": (
        _c("id", primary_key=True),
        _c("vendor", not_null=True),
        _c("vendor_job_id"),
        _c("status", not_null=True, check=JobState),
        _c("progress", "int"),
        _c("outputs", default="'[]'"),
        _c("error"),
        _c("reference"),
        _c("params", not_null=True),
        _c("token_hash"),
        _c("sequence", "int", not_null=True, default="0"),
        _c("flags", default="'[]'"),
        _c("created_at", "int", not_null=True),
        _c("updated_at", "int", not_null=True),
        _c("submitted_at", "int"),
        _c("completed_at", "int"),
        _c("source_id"),
        _c("poll_at", "int"),
        _c("poll_attempts", "int", not_null=True, default="0"),
        _c("poll_lease_until", "int"),
        _c("deadline_at", "int"),
        _c("callback_count", "int", not_null=True, default="0"),
        _c("submit_at", "int"),
        _c("submit_lease_until", "int"),
        _c("submit_attempts", "int", not_null=True, default="0"),
        _c("submit_error"),
        _c("submit_interrupted", "int", not_null=True, default="0"),
        _c("callback_token"),
        _c("resubmits", "int", not_null=True, default="0"),
        _c("previous_vendor_job_ids", not_null=True, default="'[]'"),
    ),
    "inbound": (
        _c("id", primary_key=True),
        _c("job_id"),
        _c("vendor", not_null=True),
        _c("kind", not_null=True, check=InboundKind),
        _c("received_at", "int", not_null=True),
        _c("peer"),
        _c("headers"),
        _c("body", "bytes", not_null=True),
        _c("verdict", not_null=True, check=Verdict),
        _c("error"),
        _c("event_ids"),
    ),
    "events": (
        _c("id", primary_key=True),
        _c("job_id", not_null=True),
        _c("type", not_null=True, check=EventType),
        _c("sequence", "int", not_null=True),
        _c("created_at", "int", not_null=True),
        _c("body", not_null=True),
    ),
    "subscribers": (
        _c("id", primary_key=True),
        _c("url", not_null=True),
        _c("event_types", not_null=True),
        _c("description"),
        _c("enabled", "int", not_null=True),
        _c("secret", not_null=True),
        _c("previous_secret"),
        _c("previous_secret_until", "int"),
        _c("created_at", "int", not_null=True),
        _c("updated_at", "int", not_null=True),
        _c("deleted_at", "int"),
        _c("retry_schedule"),
        _c("failing_since", "int"),
        _c("disabled_reason"),
    ),
    "deliveries": (
        _c("id", primary_key=True),
        _c("event_id", not_null=True),
        _c("subscriber_id", not_null=True),
        _c("generation", "int", not_null=True, default="0"),
        _c("status", not_null=True, check=DeliveryStatus),
        _c("attempts", "int", not_null=True, default="0"),
        _c("next_attempt_at", "int"),
        _c("lease_owner"),
        _c("lease_expires_at", "int"),
        _c("last_status_code", "int"),
        _c("last_error"),
        _c("created_at", "int", not_null=True),
        _c("updated_at", "int", not_null=True),
        _c("schedule_offset", "int", not_null=True, default="0"),
    ),
    "attempts": (
        _c("id", "serial", primary_key=True),
        _c("delivery_id", not_null=True),
        _c("number", "int", not_null=True),
        _c("started_at", "int", not_null=True),
        _c("duration_ms", "int", not_null=True),
        _c("status_code", "int"),
        _c("response_headers"),
        _c("response_body"),
        _c("error"),
    ),
    "sources": (
        _c("id", primary_key=True),
        _c("vendor", not_null=True),
        _c("token_hash", not_null=True),
        _c("description"),
        _c("created_at", "int", not_null=True),
    ),
}

# (table, columns, unique)
INDEXES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("jobs", ("token_hash",), True),
    ("jobs", ("vendor", "vendor_job_id"), False),
    ("jobs", ("created_at",), False),
    ("jobs", ("poll_at",), False),
    ("jobs", ("source_id", "vendor_job_id"), False),
    ("jobs", ("submit_at",), False),
    ("inbound", ("job_id",), False),
    ("events", ("job_id", "sequence"), False),
    ("events", ("created_at",), False),
    ("deliveries", ("event_id", "subscriber_id", "generation"), True),
    ("deliveries", ("status", "next_attempt_at"), False),
    ("deliveries", ("subscriber_id", "status", "next_attempt_at"), False),  # claims (migration 010)
    ("attempts", ("delivery_id", "number"), True),
    ("sources", ("token_hash",), True),
)

_TYPES: dict[Engine, dict[str, str]] = {
    "sqlite": {"text": "TEXT", "int": "INTEGER", "bytes": "BLOB", "serial": "INTEGER"},
    "postgres": {"text": "TEXT", "int": "BIGINT", "bytes": "BYTEA", "serial": "BIGSERIAL"},
}


def check_values(column: Column) -> tuple[str, ...]:
    """The values a checked column allows, e.g. ``("queued", "running", "succeeded", "failed")``."""
    return tuple(member.value for member in column.check) if column.check else ()


def column_sql(column: Column, engine: Engine) -> str:
    """One column definition, e.g. ``"status TEXT NOT NULL CHECK (status IN ('queued', ...))"``."""
    parts = [column.name, _TYPES[engine][column.kind]]
    if column.primary_key:
        parts.append("PRIMARY KEY")
    if column.not_null:
        parts.append("NOT NULL")
    if column.default is not None:
        parts.append(f"DEFAULT {column.default}")
    if column.check is not None:
        allowed = ", ".join(f"'{value}'" for value in check_values(column))
        parts.append(f"CHECK ({column.name} IN ({allowed}))")
    return " ".join(parts)


def create_table_sql(table: str, engine: Engine, *, name: str | None = None) -> str:
    """``CREATE TABLE`` for ``table`` on ``engine`` (under another ``name`` when given: a rebuild)."""
    columns = ", ".join(column_sql(c, engine) for c in TABLES[table])
    return f"CREATE TABLE IF NOT EXISTS {name or table} ({columns})"


def create_indexes_sql(table: str) -> list[str]:
    """``CREATE [UNIQUE] INDEX IF NOT EXISTS idx_<table>_<cols> ...`` for every index of ``table``."""
    return [
        f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS idx_{t}_{'_'.join(cols)} ON {t} ({', '.join(cols)})"
        for t, cols, unique in INDEXES
        if t == table
    ]


RELAY_META_SQL = "CREATE TABLE IF NOT EXISTS relay_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)"
"""Small counters shared by every process (``subscribers``: the subscriber list's version)."""

SOURCE_COUNTS_SQL = (
    # jobs created per source per minute: the hourly cap (RELAY_SOURCE_MAX_JOBS_PER_HOUR) sums at most
    # 61 rows instead of counting every job the source created in the last hour
    "CREATE TABLE IF NOT EXISTS source_job_counts (source_id TEXT NOT NULL, minute BIGINT NOT NULL,"
    " jobs BIGINT NOT NULL, PRIMARY KEY (source_id, minute))",
)
CLAIM_INDEX_SQL = (
    # a claim reads each subscriber's first due deliveries in (status, next_attempt_at) order
    "DROP INDEX IF EXISTS idx_deliveries_subscriber_id_status",
    # the hourly source cap reads source_job_counts now: one index less to keep on every new job
    "DROP INDEX IF EXISTS idx_jobs_source_id_created_at",
    "CREATE INDEX IF NOT EXISTS idx_deliveries_subscriber_id_status_next_attempt_at"
    " ON deliveries (subscriber_id, status, next_attempt_at)",
)
PARTIAL_INDEX_SQL = (
    # Columns that are NULL for most jobs (a source's jobs have no callback token, most jobs no
    # idempotency key, a finished job no poll or submit time) are indexed only where set: every query
    # on them asks for a value (= ?, <= ?, IS NOT NULL), and a new job writes four index entries less.
    "DROP INDEX IF EXISTS idx_jobs_token_hash",
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_jobs_token_hash ON jobs (token_hash) WHERE token_hash IS NOT NULL",
    "DROP INDEX IF EXISTS idx_jobs_idempotency_key",
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_jobs_idempotency_key ON jobs (idempotency_key)"
    " WHERE idempotency_key IS NOT NULL",
    "DROP INDEX IF EXISTS idx_jobs_poll_at",
    "CREATE INDEX IF NOT EXISTS idx_jobs_poll_at ON jobs (poll_at) WHERE poll_at IS NOT NULL",
    "DROP INDEX IF EXISTS idx_jobs_submit_at",
    "CREATE INDEX IF NOT EXISTS idx_jobs_submit_at ON jobs (submit_at) WHERE submit_at IS NOT NULL",
)
SOURCE_COUNTS_BACKFILL = (
    # the last hour's source jobs of a database migrated while running (one parameter: unix ms)
    "INSERT INTO source_job_counts (source_id, minute, jobs) SELECT source_id, created_at / 60000, COUNT(*)"
    " FROM jobs WHERE source_id IS NOT NULL AND created_at > ? GROUP BY source_id, created_at / 60000"
)

IDEMPOTENCY_SQL = (
    # POST /v1/jobs with an Idempotency-Key: the key and a hash of the request, one job per key
    "ALTER TABLE jobs ADD COLUMN idempotency_key TEXT",
    "ALTER TABLE jobs ADD COLUMN request_hash TEXT",
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_jobs_idempotency_key ON jobs (idempotency_key)",
)

MIRRORS: tuple[Column, ...] = (
    # migration 009: one row per succeeded job whose outputs are being copied (RELAY_MIRROR_URL); its
    # job.succeeded event is held until the copy ends (dispatch.store.mirrors)
    _c("job_id", primary_key=True),
    _c("vendor", not_null=True),
    _c("status", not_null=True),  # pending (copying, retried at next_attempt_at) or done
    _c("attempts", "int", not_null=True, default="0"),
    _c("next_attempt_at", "int"),  # unix ms; NULL once done
    _c("lease_until", "int"),  # unix ms; an attempt in flight holds this lease
    _c("deadline_at", "int", not_null=True),  # unix ms: retries stop here (the vendor URL's expiry)
    _c("results", not_null=True, default="'[]'"),  # JSON: per output index, its copy or error so far
    _c("last_error"),
    _c("created_at", "int", not_null=True),
    _c("updated_at", "int", not_null=True),
)


def mirrors_sql(engine: Engine) -> list[str]:
    """Migration 009 on ``engine``: the ``mirrors`` table and its due-time index."""
    columns = ", ".join(column_sql(c, engine) for c in MIRRORS)
    return [
        f"CREATE TABLE IF NOT EXISTS mirrors ({columns}, CHECK (status IN ('pending', 'done')))",
        "CREATE INDEX IF NOT EXISTS idx_mirrors_next_attempt_at ON mirrors (next_attempt_at)",
    ]


def analytics_sql(engine: Engine) -> tuple[str, ...]:
    """Migration 008 (vendor analytics, :mod:`dispatch.store.stats`) on ``engine``: per job what the
    vendor says it cost (``cost_amount`` in ``cost_unit``: ``credits``, ``compute_seconds``), how its
    terminal state arrived (``outcome_via``: the inbound kind that applied it, ``submit`` or
    ``timeout`` when the relay decided it) and ``turnaround_ms`` (submit to terminal, relay clock);
    jobs already terminal are filled from their stored messages and ``completed_at`` (a failed submit
    then reads as ``response``); and the indexes the per-vendor aggregates read, partial where only a
    few rows matter so that the write path rarely maintains them."""
    real = "REAL" if engine == "sqlite" else "DOUBLE PRECISION"
    return (
        f"ALTER TABLE jobs ADD COLUMN cost_amount {real}",
        "ALTER TABLE jobs ADD COLUMN cost_unit TEXT",
        "ALTER TABLE jobs ADD COLUMN outcome_via TEXT",
        f"ALTER TABLE jobs ADD COLUMN turnaround_ms {_TYPES[engine]['int']}",
        "UPDATE jobs SET outcome_via = (SELECT i.kind FROM inbound i WHERE i.job_id = jobs.id"
        " AND i.verdict = 'applied' ORDER BY i.received_at DESC, i.id DESC LIMIT 1),"
        " turnaround_ms = CASE WHEN completed_at >= submitted_at THEN completed_at - submitted_at END"
        " WHERE status IN ('succeeded', 'failed')",
        *ANALYTICS_INDEXES,
        # failure codes per vendor and outcome path, without reading the rows (failed jobs only;
        # Postgres reads an expression from an index only when the column it is made of is in it)
        "CREATE INDEX IF NOT EXISTS idx_jobs_failure_codes ON jobs (vendor, outcome_via"
        + (
            f", {ERROR_CODE_SQL[engine]}, created_at)"
            if engine == "sqlite"
            else ", created_at) INCLUDE (error)"
        )
        + " WHERE status = 'failed'",
    )


def costs_sql(engine: Engine) -> tuple[str, ...]:
    """Migration 012 (costs as billed, :mod:`dispatch.costs`) on ``engine``: per job its ``charges``
    (JSON, one per vendor job and kind), what of its billed ``cost_amount`` went to resubmits
    (``cost_resubmits``) and to vendor jobs a resubmit replaced (``cost_superseded``), its estimated
    cost (``estimate_amount`` in ``estimate_unit``) and the vendor's compute time (``compute_ms``).
    Jobs recorded before it are corrected: APIXO's ``costTime`` was booked as a cost in
    ``compute_seconds`` and is a duration (``compute_ms``); Dreamina's ``forecastCost`` was booked as
    the cost and is an estimate; any other cost (Apiframe's and Artnex's credits, as reported) becomes
    the job's one billed charge. APIXO's price per submit is not known for them (it was never stored)."""
    real = "REAL" if engine == "sqlite" else "DOUBLE PRECISION"
    charge = (
        "json_array(json_object('vendor_job_id', vendor_job_id, 'submit', resubmits + 1, 'kind', {kind},"
        " 'amount', {amount}, 'unit', {unit}))"
        if engine == "sqlite"
        else "json_build_array(json_build_object('vendor_job_id', vendor_job_id, 'submit', resubmits + 1,"
        " 'kind', {kind}, 'amount', {amount}, 'unit', {unit}))::text"
    )
    return (
        "ALTER TABLE jobs ADD COLUMN charges TEXT NOT NULL DEFAULT '[]'",
        f"ALTER TABLE jobs ADD COLUMN cost_resubmits {real}",
        f"ALTER TABLE jobs ADD COLUMN cost_superseded {real}",
        f"ALTER TABLE jobs ADD COLUMN estimate_amount {real}",
        "ALTER TABLE jobs ADD COLUMN estimate_unit TEXT",
        f"ALTER TABLE jobs ADD COLUMN compute_ms {_TYPES[engine]['int']}",
        "UPDATE jobs SET compute_ms = CAST(ROUND(cost_amount * 1000) AS BIGINT), cost_amount = NULL,"
        " cost_unit = NULL WHERE cost_unit = 'compute_seconds'",
        "UPDATE jobs SET estimate_amount = cost_amount, estimate_unit = cost_unit, cost_amount = NULL,"
        " cost_unit = NULL, charges = "
        + charge.format(kind="'estimate'", amount="cost_amount", unit="cost_unit")
        + " WHERE vendor = 'dreamina' AND cost_amount IS NOT NULL",
        "UPDATE jobs SET cost_resubmits = CASE WHEN resubmits > 0 THEN cost_amount ELSE 0 END,"
        " cost_superseded = 0, charges = "
        + charge.format(kind="'billed'", amount="cost_amount", unit="cost_unit")
        + " WHERE cost_amount IS NOT NULL",
    )


ANOMALIES_SQL = (
    # migration 013: the auxiliary vendor fields each job's messages had to leave out (JSON list of
    # {"path", "seen"}, NULL when none: most jobs), and an index of the few jobs that have some, for
    # the per-vendor, per-field counts of vendor analytics (dispatch.store.stats)
    "ALTER TABLE jobs ADD COLUMN anomalies TEXT",
    "CREATE INDEX IF NOT EXISTS idx_jobs_anomalies ON jobs (vendor, created_at) WHERE anomalies IS NOT NULL",
)

ANOMALY_FIELDS_SQL: dict[Engine, str] = {
    # (vendor, field, jobs) of jobs in a window ({where}: a WHERE on jobs' own columns) whose messages
    # had an anomaly at that field
    "sqlite": "SELECT j.vendor AS vendor, json_extract(a.value, '$.path') AS field, COUNT(DISTINCT j.id) AS n"
    " FROM (SELECT id, vendor, anomalies FROM jobs {where}) j, json_each(j.anomalies) a GROUP BY 1, 2",
    "postgres": "SELECT j.vendor AS vendor, a.value ->> 'path' AS field, COUNT(DISTINCT j.id) AS n"
    " FROM (SELECT id, vendor, anomalies FROM jobs {where}) j"
    " CROSS JOIN LATERAL jsonb_array_elements(j.anomalies::jsonb) AS a(value) GROUP BY 1, 2",
}

ERROR_CODE_SQL: dict[Engine, str] = {
    "sqlite": "json_extract(error, '$.code')",
    "postgres": "(error::jsonb ->> 'code')",
}
"""A job's error code (``jobs.error`` is JSON ``{"code", "message"}``), on SQLite exactly as
``idx_jobs_failure_codes`` indexes it: a query must use this text for the index to serve it."""

NOTABLE_VERDICTS_SQL = "verdict IN ('duplicate', 'stale', 'rejected', 'outcome_unknown')"
"""The inbound messages vendor analytics count, exactly as ``idx_inbound_verdict_kind`` is limited to
them: a query must use this text for the (partial) index to serve it."""

ANALYTICS_INDEXES = (
    # jobs per vendor, state, outcome path and cost unit in a time window (dispatch.store.stats)
    "CREATE INDEX IF NOT EXISTS idx_jobs_vendor_stats ON jobs"
    " (vendor, status, outcome_via, cost_unit, created_at, cost_amount, turnaround_ms)",
    # submit-to-terminal percentiles: each vendor's turnarounds in order, read from either end
    "CREATE INDEX IF NOT EXISTS idx_jobs_vendor_turnaround_ms ON jobs (vendor, turnaround_ms, created_at)"
    " WHERE turnaround_ms IS NOT NULL",
    # duplicate, stale and rejected callbacks, unknown submit outcomes (partial: the applied messages,
    # nearly all of them, are not in it, so ingest does not maintain it)
    "CREATE INDEX IF NOT EXISTS idx_inbound_verdict_kind ON inbound (verdict, kind, vendor, received_at)"
    f" WHERE {NOTABLE_VERDICTS_SQL}",
)
