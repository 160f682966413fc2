"""The lean write path (issue 10): what an applied callback costs in SQL statements, counted with each
driver's own trace hook (SQLite's ``set_trace_callback``, libpq's protocol trace through psycopg), on
both engines. Transaction control (BEGIN, COMMIT, SAVEPOINT, RELEASE) is not counted."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from dispatch.model import JobState, JobUpdate, Output
from dispatch.store.records import RawMessage

MAX_STATEMENTS = 6
CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)


@contextmanager
def counted(store: Any) -> Iterator[list[str]]:
    """Every data statement the store's connection sends while the block runs."""
    seen: list[str] = []
    if store.sql.name == "sqlite":
        store.conn.set_trace_callback(seen.append)
        try:
            yield seen
        finally:
            store.conn.set_trace_callback(None)
        seen[:] = [s for s in seen if not CONTROL.match(s)]
        return
    pgconn = store.conn.raw.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        try:
            yield seen
        finally:
            pgconn.untrace()
            trace.seek(0)
            lines = trace.read().splitlines()
        for line in lines:
            parts = line.split("\t")
            if len(parts) >= 3 and parts[0] == "F" and parts[2].startswith(("Execute", "Query")):
                seen.append(line)
        seen[:] = [s for s in seen if not re.search(r'Query\t "(BEGIN|COMMIT|SAVEPOINT|RELEASE)', s)]


def _applied(store: Any, job_id: str) -> Callable[[], object]:
    raw = RawMessage({"content-type": "application/json"}, b'{"code": 200}', "127.0.0.1:9")
    update = JobUpdate(
        JobState.SUCCEEDED, "success", progress=100, outputs=(Output("https://x/a.png", "image/png"),)
    )
    return lambda: store.record_message(job_id, "callback", raw, update)


def test_an_applied_callback_costs_at_most_six_statements(store: Any) -> None:
    """A terminal callback for a submitted job with one subscriber: one event, one delivery, within six
    statements (the subscriber list comes from the cache while nothing about subscribers changed)."""
    store.create_subscriber("https://hooks.example.com/a")
    warm = store.create_job("apixo", {}, reference=None, token_hash="a" * 64)
    store.mark_submitted(warm.id, "task_warm")
    _applied(store, warm.id)()  # fills the subscriber cache
    job = store.create_job("apixo", {}, reference=None, token_hash="b" * 64)
    store.mark_submitted(job.id, "task_1")
    with counted(store) as statements:
        result = _applied(store, job.id)()
    assert result.verdict == "applied" and len(result.event_ids) == 1  # type: ignore[attr-defined]
    assert len(store.list_deliveries(event_id=result.event_ids[0])) == 1  # type: ignore[attr-defined]
    print(f"{store.sql.name}: {len(statements)} statements per applied callback")
    assert 1 <= len(statements) <= MAX_STATEMENTS, statements


def test_a_subscriber_change_reaches_the_cached_list(store: Any) -> None:
    """The cache is invalidated on change: a subscriber added (or disabled) after the list was cached
    gets (or does not get) the next event's delivery."""
    first, _ = store.create_subscriber("https://hooks.example.com/a")
    warm = store.create_job("apixo", {}, reference=None, token_hash="c" * 64)
    _applied(store, warm.id)()
    second, _ = store.create_subscriber("https://hooks.example.com/b")
    store.update_subscriber(first.id, enabled=False)
    job = store.create_job("apixo", {}, reference=None, token_hash="d" * 64)
    result: Any = _applied(store, job.id)()
    deliveries = {d.subscriber_id: d.status for d in store.list_deliveries(event_id=result.event_ids[0])}
    assert deliveries == {first.id: "failed", second.id: "pending"}


def test_a_sources_first_callback_writes_its_job_once(store: Any) -> None:
    """A source callback that creates its job (useapi's account-wide replyUrl): the job row is written
    once, in the state the callback leaves it (no INSERT then UPDATE), within seven statements: the
    lookup with the subscribers' version, the hourly cap, the job, the event, the delivery, the
    message and the per-minute source count. Postgres adds the first-sight lock and NOTIFY."""
    store.create_subscriber("https://hooks.example.com/a")
    source = store.create_source("apixo", token_hash="s" * 64, description=None)
    raw = RawMessage({"content-type": "application/json"}, b'{"code": 200}', "127.0.0.1:9")
    update = JobUpdate(
        JobState.SUCCEEDED, "success", progress=100, outputs=(Output("https://x/a.png", "image/png"),)
    )
    store.record_source_message(
        source, "task_warm", raw, update, poll_at=None, deadline_at=None, max_per_hour=50
    )
    with counted(store) as statements:
        result = store.record_source_message(
            source, "task_1", raw, update, poll_at=None, deadline_at=None, max_per_hour=50
        )
    job = store.get_job(result.job.id)
    assert (result.verdict, job.status, job.sequence, job.vendor_job_id) == (
        "applied",
        "succeeded",
        1,
        "task_1",
    )
    assert job.outputs == update.outputs and job.completed_at is not None and job.source_id == source.id
    assert len(store.list_deliveries(event_id=result.event_ids[0])) == 1
    writes = [s for s in statements if re.search(r"\b(UPDATE|update)\s+jobs\b", s)]
    assert writes == [], writes
    limit = 7 if store.sql.name == "sqlite" else 9
    print(f"{store.sql.name}: {len(statements)} statements for a source's first callback")
    assert 1 <= len(statements) <= limit, statements
