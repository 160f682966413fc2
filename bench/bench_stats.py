"""Vendor analytics on a big store: the time of one ``vendor_stats`` report (``GET /v1/stats``,
``upscale-relay stats``) over ``--jobs`` jobs (default 1 million) on SQLite and on Postgres.

Each database is fresh and migrated by the relay itself (a new SQLite file in a temporary directory;
a new Postgres database on the ``--database`` server, dropped afterwards), then seeded directly with
bulk inserts (``executemany`` in one transaction on SQLite, ``COPY`` on Postgres) — the same rows on
both, from a fixed seed: five vendors, jobs spread over 30 days (stored in creation order, as a
relay stores them), 85% succeeded, 10% failed, 5% still
queued or running; outcomes by callback (93%), poll (5%), timeout and submit failure (1% each),
Artnex's by its submit response; turnarounds from 2 s to 10 min; a cost on most jobs (APIXO in
compute seconds, the others in credits, LTX none); and per job one applied inbound message plus, in
proportion, duplicate (6%), stale (1%), signature-rejected (0.5%) callbacks and unknown submit
outcomes (0.3%). Postgres gets ``VACUUM ANALYZE`` after the load (what autovacuum does); SQLite runs
as the relay leaves it (no ``ANALYZE``).

Printed per database: seeding time, then the report's time for all vendors over all time (the
first run, then the best of 3), for the last day, and for one vendor. Both engines must give the
same report for the same rows: the script says ``DIFFERENT`` and exits 1 otherwise.

    python bench/bench_stats.py                          # 1M jobs, SQLite and Postgres
    python bench/bench_stats.py --jobs 100000 --database sqlite
    python bench/bench_stats.py --database postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_postgres_scale import DEFAULT_SERVER, fresh_database
from cryptography.fernet import Fernet

from dispatch.secretbox import SecretBox
from dispatch.store.postgres import PostgresStore, connect
from dispatch.store.schema_pg import migrate as migrate_pg
from dispatch.store.sqlite import SQLiteStore
from dispatch.store.stats import StatsReport

DAY_MS = 86_400_000
NOW = 1_764_480_000_000  # 2025-11-30T05:20:00Z: the seeded window ends here
VENDORS = ("apixo", "apiframe", "artnex", "dreamina", "ltxstudio")
# what each vendor bills in (Dreamina's forecastCost is an estimate, not a bill)
COST_UNITS = {"apixo": "usd", "apiframe": "credits", "artnex": "credits"}
FAILURES = ("ImageFormatIncorrect", "content_policy", "vendor_failed", "InternalError", "nsfw", "quota")
JOB_COLUMNS = (
    "id, vendor, vendor_job_id, status, progress, outputs, error, params, sequence, flags, created_at,"
    " updated_at, submitted_at, completed_at, submit_at, submit_error, outcome_via, turnaround_ms,"
    " cost_amount, cost_unit"
)
INBOUND_COLUMNS = "id, job_id, vendor, kind, received_at, peer, headers, body, verdict, error, event_ids"


def rows(jobs: int, seed: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The job rows and inbound rows to load (``JOB_COLUMNS``, ``INBOUND_COLUMNS`` order)."""
    rnd = random.Random(seed)
    job_rows: list[tuple[Any, ...]] = []
    inbound_rows: list[tuple[Any, ...]] = []
    times = sorted(NOW - rnd.randrange(30 * DAY_MS) for _ in range(jobs))  # stored in creation order
    for n in range(jobs):
        vendor = VENDORS[n % len(VENDORS)]
        created = times[n]
        job_id = f"job_{n:012d}"
        roll = rnd.random()
        status = (
            "succeeded"
            if roll < 0.85
            else "failed"
            if roll < 0.95
            else "queued"
            if roll < 0.98
            else "running"
        )
        via = turnaround = completed = error = submit_at = submit_error = cost = unit = None
        submitted: int | None = created + rnd.randrange(200, 3000)
        if status in ("succeeded", "failed"):
            if vendor == "artnex":
                via = "response"
            else:
                path = rnd.random()
                via = (
                    "callback"
                    if path < 0.93
                    else "poll"
                    if path < 0.98
                    else "timeout"
                    if path < 0.99
                    else "submit"
                )
            if via == "submit":
                status, submitted = "failed", None
            turnaround = int(rnd.lognormvariate(10.3, 0.6)) if submitted is not None else None
            completed = (submitted or created) + (turnaround or 0)
            if status == "failed":
                code = rnd.choice(FAILURES) if via not in ("timeout", "submit") else via
                code = "vendor_rejected" if via == "submit" else "timeout" if via == "timeout" else code
                error = json.dumps({"code": code, "message": None})
            if vendor in COST_UNITS and via != "submit":
                cost, unit = round(rnd.uniform(1, 40), 2), COST_UNITS[vendor]
        elif rnd.random() < 0.1:
            submitted, submit_at, submit_error = None, NOW, "rate_limited: HTTP 429"
        job_rows.append(
            (
                job_id,
                vendor,
                f"task_{n}",
                status,
                100 if status == "succeeded" else None,
                "[]",
                error,
                "{}",
                2,
                "[]",
                created,
                completed or created,
                submitted,
                completed,
                submit_at,
                submit_error,
                via,
                turnaround,
                cost,
                unit,
            )
        )
        if via is not None:
            kind = (
                via if via in ("callback", "poll", "response") else "poll" if via == "timeout" else "response"
            )
            inbound_rows.append(
                _inbound(f"in_{n:012d}a", job_id, vendor, kind, completed or created, "applied")
            )
        extra = rnd.random()
        verdict = (
            "duplicate"
            if extra < 0.06
            else "stale"
            if extra < 0.07
            else "rejected"
            if extra < 0.075
            else "outcome_unknown"
            if extra < 0.078
            else None
        )
        if verdict is not None and vendor != "artnex":
            kind = "response" if verdict == "outcome_unknown" else "callback"
            inbound_rows.append(_inbound(f"in_{n:012d}b", job_id, vendor, kind, created + 60_000, verdict))
    return job_rows, inbound_rows


def _inbound(row_id: str, job_id: str, vendor: str, kind: str, at: int, verdict: str) -> tuple[Any, ...]:
    return (
        row_id,
        job_id,
        vendor,
        kind,
        at,
        "203.0.113.7:443",
        "{}",
        b'{"state":"success"}',
        verdict,
        None,
        "[]",
    )


def seed_sqlite(store: SQLiteStore, jobs: list[tuple[Any, ...]], inbound: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" for _ in JOB_COLUMNS.split(","))
    with store.transaction() as conn:
        conn.executemany(f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({marks})", jobs)
        marks = ", ".join("?" for _ in INBOUND_COLUMNS.split(","))
        conn.executemany(f"INSERT INTO inbound ({INBOUND_COLUMNS}) VALUES ({marks})", inbound)


def seed_postgres(url: str, jobs: list[tuple[Any, ...]], inbound: list[tuple[Any, ...]]) -> None:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            with cur.copy(f"COPY jobs ({JOB_COLUMNS}) FROM STDIN") as copy:
                for row in jobs:
                    copy.write_row(row)
            with cur.copy(f"COPY inbound ({INBOUND_COLUMNS}) FROM STDIN") as copy:
                for row in inbound:
                    copy.write_row(row)
        conn.execute("VACUUM ANALYZE jobs")
        conn.execute("VACUUM ANALYZE inbound")
    finally:
        conn.close()


def timings(label: str, report: Callable[..., StatsReport]) -> StatsReport:
    """Print the report's times; returns the all-vendors, all-time report."""
    started = time.perf_counter()
    full = report(since=None, until=None, vendor=None)
    first = time.perf_counter() - started
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        report(since=None, until=None, vendor=None)
        best = min(best, time.perf_counter() - started)
    started = time.perf_counter()
    report(since=NOW - DAY_MS, until=NOW, vendor=None)
    day = time.perf_counter() - started
    started = time.perf_counter()
    report(since=None, until=None, vendor="apixo")
    one = time.perf_counter() - started
    print(
        f"{label:<9} all vendors, all time: first {first * 1000:7.0f} ms, best of 3 {best * 1000:7.0f} ms;"
        f" last day {day * 1000:6.0f} ms; one vendor {one * 1000:6.0f} ms",
        flush=True,
    )
    return full


@contextlib.contextmanager
def sqlite_store(box: SecretBox) -> Iterator[SQLiteStore]:
    with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
        store = SQLiteStore.open(Path(tmp) / "relay.db", box)
        try:
            yield store
        finally:
            store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs to seed (default 1,000,000)")
    parser.add_argument(
        "--database",
        action="append",
        help="'sqlite' or a Postgres server URL (a fresh database is made on it and dropped);"
        f" repeatable; default: sqlite and {DEFAULT_SERVER}",
    )
    parser.add_argument("--seed", type=int, default=20261130)
    args = parser.parse_args()
    databases = args.database or ["sqlite", DEFAULT_SERVER]
    box = SecretBox(Fernet.generate_key())
    started = time.perf_counter()
    jobs, inbound = rows(args.jobs, args.seed)
    print(
        f"generated {len(jobs):,} jobs and {len(inbound):,} inbound rows in {time.perf_counter() - started:.1f} s"
    )
    reports: dict[str, dict[str, Any]] = {}
    for database in databases:
        if database == "sqlite":
            with sqlite_store(box) as store:
                started = time.perf_counter()
                seed_sqlite(store, jobs, inbound)
                print(f"sqlite    seeded in {time.perf_counter() - started:.1f} s", flush=True)
                reports["sqlite"] = timings("sqlite", store.vendor_stats).to_json()
            continue
        with fresh_database(database) as url:
            admin = connect(url)
            try:
                migrate_pg(admin)
            finally:
                admin.close()
            started = time.perf_counter()
            seed_postgres(url, jobs, inbound)
            print(
                f"postgres  seeded in {time.perf_counter() - started:.1f} s (with VACUUM ANALYZE)", flush=True
            )
            pg = PostgresStore.open(url, box)
            try:
                reports["postgres"] = timings("postgres", pg.vendor_stats).to_json()
            finally:
                pg.close()
    if len({json.dumps(r, sort_keys=True) for r in reports.values()}) > 1:
        print("DIFFERENT reports on the engines:", json.dumps(reports, indent=1)[:4000])
        return 1
    if reports:
        sample = next(iter(reports.values()))["vendors"][0]
        print(f"same report on {', '.join(reports)}; e.g. {sample['vendor']}: {json.dumps(sample)[:400]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
