"""The SQLite store's domain verbs on a real database file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dispatch.errors import Conflict, NotFound
from dispatch.model import (
    Anomaly,
    DeliveryStatus,
    EventType,
    InboundKind,
    JobError,
    JobState,
    JobUpdate,
    Output,
    Verdict,
    event_id,
    now_ms,
)
from dispatch.store.ddl import TABLES, check_values
from dispatch.store.postgres import PgRunner
from dispatch.store.records import Attempt, RawMessage
from dispatch.store.runner import StoreRunner
from dispatch.store.sqlite import SQLiteStore

RAW = RawMessage({"content-type": "application/json"}, b"{}", "127.0.0.1:1")


SUCCESS = JobUpdate(JobState.SUCCEEDED, outputs=(Output("https://cdn.example.com/a.png"),))
"""A vendor success with its output URL."""


def _job(store: SQLiteStore) -> str:
    return store.create_job("apixo", {"input": {}}, reference="r1", token_hash=None).id


def _attempt(number: int, status: int | None) -> Attempt:
    return Attempt(number, now_ms(), 5, status, {}, "", None if status else "boom")


def test_migrations_are_recorded_and_wal_is_on(store: SQLiteStore) -> None:
    """Opening migrates once, records it under one numbering on both engines; SQLite is in WAL mode."""
    assert [r[0] for r in store.conn.execute("SELECT name FROM _migrations ORDER BY name").fetchall()] == [
        "001_initial",
        "002_polling_sources_recovery",
        "003_callback_count",
        "004_submit_outbox",
        "005_checks_from_enums",
        "006_subscribers_version",
        "007_idempotent_submits",
        "008_vendor_analytics",
        "009_mirrors",
        "010_source_counts_claim_index",
        "011_partial_job_indexes",
        "012_costs_as_billed",
        "013_payload_anomalies",
    ]
    if store.sql.name == "sqlite":
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_message_applies_update_and_emits_event(store: SQLiteStore) -> None:
    """A success update moves the job to succeeded and writes one event with the contract body."""
    sub, _ = store.create_subscriber("http://127.0.0.1:1/h")
    jid = _job(store)
    out = Output("https://x/a.jpg", "image/jpeg")
    result = store.record_message(
        jid, "callback", RAW, JobUpdate(JobState.SUCCEEDED, "success", "task_1", outputs=(out,))
    )
    assert result.verdict == "applied"
    assert result.event_ids == (event_id(jid, "job.succeeded"),)
    body = json.loads(store.get_event(result.event_ids[0]).body)
    assert body["type"] == "job.succeeded"
    assert body["data"]["outputs"][0]["url"] == "https://x/a.jpg"
    assert body["data"]["vendor_job_id"] == "task_1"
    assert body["data"]["reference"] == "r1"
    assert [d.subscriber_id for d in store.list_deliveries()] == [sub.id]


def test_duplicate_callback_creates_no_event_but_is_stored(store: SQLiteStore) -> None:
    """The same outcome twice is stored twice but emits one event and one delivery."""
    store.create_subscriber("http://127.0.0.1:1/h")
    jid = _job(store)
    update = JobUpdate(JobState.FAILED, "failed", error=JobError("X", "bad"))
    store.record_message(jid, "callback", RAW, update)
    second = store.record_message(jid, "callback", RAW, update)
    assert second.verdict == "duplicate" and second.event_ids == ()
    assert len(store.list_inbound(job_id=jid)) == 2
    assert len(store.list_events(job_id=jid)) == 1
    assert len(store.list_deliveries()) == 1


def test_conflicting_terminal_is_flagged(store: SQLiteStore) -> None:
    """Succeeded after failed leaves the job failed and flags the conflict."""
    jid = _job(store)
    store.record_message(jid, "callback", RAW, JobUpdate(JobState.FAILED))
    result = store.record_message(jid, "callback", RAW, SUCCESS)
    job = store.get_job(jid)
    assert result.verdict == "conflict"
    assert job.status is JobState.FAILED and "conflict" in job.flags


def test_invalid_message_is_kept_with_error(store: SQLiteStore) -> None:
    """An unparseable body is stored with its verdict and error and changes nothing."""
    jid = _job(store)
    result = store.record_message(jid, "callback", RawMessage({}, b"\xff\xfe"), None, error="not UTF-8")
    row = store.get_inbound(result.inbound_id)
    assert (row.verdict, row.error, row.body) == ("invalid", "not UTF-8", b"\xff\xfe")
    assert store.get_job(jid).status is JobState.QUEUED


def test_subscriber_event_type_filter(store: SQLiteStore) -> None:
    """Only subscribers that asked for an event type get deliveries of it."""
    wants_running, _ = store.create_subscriber("http://127.0.0.1:1/a", event_types=["job.running"])
    store.create_subscriber("http://127.0.0.1:1/b")
    jid = _job(store)
    store.record_message(jid, "callback", RAW, JobUpdate(JobState.RUNNING))
    assert [d.subscriber_id for d in store.list_deliveries()] == [wants_running.id]


def test_secret_is_encrypted_at_rest(store: SQLiteStore) -> None:
    """The database holds only ciphertext of a subscriber secret; claims decrypt it."""
    sub, secret = store.create_subscriber("http://127.0.0.1:1/h")
    stored = store.conn.execute("SELECT secret FROM subscribers").fetchone()[0]
    assert secret.startswith("whsec_") and secret not in stored
    store.record_message(_job(store), "callback", RAW, SUCCESS)
    work = store.claim_due_deliveries("w1", now=now_ms() + 1, limit=10, lease_ms=1000)
    assert work[0].secrets == (secret,)
    assert secret not in repr(sub)


def test_claim_lease_finish_and_reclaim_after_expiry(store: SQLiteStore) -> None:
    """A claimed delivery is invisible until its lease expires; the old worker then loses it."""
    store.create_subscriber("http://127.0.0.1:1/h")
    store.record_message(_job(store), "callback", RAW, SUCCESS)
    now = now_ms() + 1
    first = store.claim_due_deliveries("w1", now=now, limit=10, lease_ms=1000)
    assert len(first) == 1
    assert store.claim_due_deliveries("w2", now=now + 500, limit=10, lease_ms=1000) == []
    again = store.claim_due_deliveries("w2", now=now + 1500, limit=10, lease_ms=1000)
    assert [w.delivery_id for w in again] == [first[0].delivery_id]
    with pytest.raises(Conflict):
        store.finish_attempt(first[0].delivery_id, "w1", _attempt(1, 200), next_attempt_at=None)
    done = store.finish_attempt(again[0].delivery_id, "w2", _attempt(1, 200), next_attempt_at=None)
    assert done.status == "succeeded" and done.attempts == 1


def test_failed_attempts_retry_then_dead_then_manual_retry(store: SQLiteStore) -> None:
    """A failure schedules a retry; no next time makes it dead; retry makes it due again."""
    store.create_subscriber("http://127.0.0.1:1/h")
    store.record_message(_job(store), "callback", RAW, SUCCESS)
    now = now_ms() + 1
    (work,) = store.claim_due_deliveries("w", now=now, limit=1, lease_ms=1000)
    retrying = store.finish_attempt(work.delivery_id, "w", _attempt(1, 500), next_attempt_at=now + 5000)
    assert (retrying.status, retrying.next_attempt_at, retrying.last_status_code) == (
        "retrying",
        now + 5000,
        500,
    )
    assert store.claim_due_deliveries("w", now=now + 10, limit=1, lease_ms=1000) == []
    (work,) = store.claim_due_deliveries("w", now=now + 5000, limit=1, lease_ms=1000)
    dead = store.finish_attempt(work.delivery_id, "w", _attempt(2, None), next_attempt_at=None)
    assert dead.status == "dead" and dead.attempts == 2
    assert [a.number for a in store.get_delivery(dead.id).attempt_log] == [1, 2]
    revived = store.retry_delivery(dead.id)
    assert revived.status == "retrying" and revived.next_attempt_at is not None
    assert len(store.claim_due_deliveries("w", now=now_ms() + 1, limit=1, lease_ms=1000)) == 1


def test_first_attempts_are_claimed_before_retries(store: SQLiteStore) -> None:
    """Fresh deliveries come before older retries that are due at the same time."""
    store.create_subscriber("http://127.0.0.1:1/h")
    store.record_message(_job(store), "callback", RAW, SUCCESS)
    now = now_ms() + 1
    (old,) = store.claim_due_deliveries("w", now=now, limit=1, lease_ms=10)
    store.finish_attempt(old.delivery_id, "w", _attempt(1, 500), next_attempt_at=now)
    store.record_message(_job(store), "callback", RAW, SUCCESS)
    first = store.claim_due_deliveries("w", now=now_ms() + 1, limit=1, lease_ms=1000)
    assert first[0].attempts == 0 and first[0].delivery_id != old.delivery_id


def test_replay_creates_new_generation_with_same_event(store: SQLiteStore) -> None:
    """Replay adds a delivery of the same event id as the next generation."""
    sub, _ = store.create_subscriber("http://127.0.0.1:1/h")
    result = store.record_message(_job(store), "callback", RAW, SUCCESS)
    (replayed,) = store.replay_event(result.event_ids[0])
    (again,) = store.replay_event(result.event_ids[0], sub.id)
    assert (replayed.event_id, replayed.generation, again.generation) == (result.event_ids[0], 1, 2)
    with pytest.raises(NotFound):
        store.replay_event("evt_missing")


def test_runner_groups_concurrent_calls_and_isolates_failures(
    request: pytest.FixtureRequest, tmp_path: Path, store: SQLiteStore
) -> None:
    """Many concurrent verbs complete through the engine's runner; a failing one raises to its caller only."""
    runner: Any
    if store.sql.name == "sqlite":
        runner = StoreRunner(store)
    else:
        runner = PgRunner(request.getfixturevalue("pg_url"), store.box, size=4)
    runner.start()

    async def main() -> list[object]:
        calls = [
            runner.call(lambda s: s.create_job("apixo", {}, reference=None, token_hash=None))
            for _ in range(50)
        ]
        calls.append(runner.call(lambda s: s.get_job("job_missing")))
        results: list[object] = await asyncio.gather(*calls, return_exceptions=True)
        return results

    try:
        results = asyncio.run(main())
    finally:
        runner.stop()
    assert sum(1 for r in results if isinstance(r, NotFound)) == 1
    if store.sql.name == "postgres":
        assert store.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 50
        return
    check = sqlite3.connect(tmp_path / "relay.db")
    assert check.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 50
    check.close()


def test_a_vendor_saying_expired_flags_the_job(store: SQLiteStore) -> None:
    """An update whose extra says ``expired: true`` (Apiframe) records vendor_expired on the job, once."""
    job = store.create_job("apiframe", {}, reference=None, token_hash="e" * 64)
    raw = RawMessage({}, b'{"expired": true}', "vendor")
    out = (Output("https://cdn2.apiframe.ai/images/a.png"),)
    update = JobUpdate(JobState.SUCCEEDED, "COMPLETED", outputs=out, extra={"expired": True})
    store.record_message(job.id, "poll", raw, update)
    store.record_message(job.id, "poll", raw, update)
    assert store.get_job(job.id).flags == ("vendor_expired",)


@pytest.mark.parametrize(
    ("table", "column", "enum"),
    [
        ("jobs", "status", JobState),
        ("inbound", "verdict", Verdict),
        ("inbound", "kind", InboundKind),
        ("events", "type", EventType),
        ("deliveries", "status", DeliveryStatus),
    ],
)
def test_check_constraints_follow_the_enums(store: SQLiteStore, table: str, column: str, enum: Any) -> None:
    """Each engine's schema refuses a value its enum does not have, and the DDL lists exactly the enum."""
    (spec,) = [c for c in TABLES[table] if c.name == column]
    assert set(check_values(spec)) == {member.value for member in enum}
    job_id = _job(store)
    bad = "no-such-value"
    with pytest.raises(Exception, match=r"(?i)check"), store.transaction() as conn:
        if table == "jobs":
            conn.execute("UPDATE jobs SET status = ? WHERE id = ?", (bad, job_id))
        elif table == "inbound":
            values = {"verdict": "applied", "kind": "callback", column: bad}
            conn.execute(
                "INSERT INTO inbound (id, job_id, vendor, kind, received_at, body, verdict)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                ("in_x", job_id, "apixo", values["kind"], 1, b"", values["verdict"]),
            )
        elif table == "events":
            conn.execute(
                "INSERT INTO events (id, job_id, type, sequence, created_at, body) VALUES (?, ?, ?, ?, ?, ?)",
                ("evt_x", job_id, bad, 1, 1, "{}"),
            )
        else:
            conn.execute(
                "INSERT INTO deliveries (id, event_id, subscriber_id, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                ("dlv_x", "evt_x", "sub_x", bad, 1, 1),
            )


def test_a_due_submit_is_claimed_once_and_an_expired_lease_says_interrupted(store: SQLiteStore) -> None:
    """claim_due_submits leases each due submit to one claimer; after the lease expires unfinished the
    next claim reports it as interrupted (the process died mid-send)."""
    job = store.create_job("apixo", {}, reference=None, token_hash="f" * 64, token="tok", submit=True)
    now = now_ms()
    ((claimed, interrupted),) = store.claim_due_submits(now=now, limit=10, lease_ms=1000)
    assert (claimed.id, interrupted, claimed.submit_attempts) == (job.id, False, 1)
    assert store.claim_due_submits(now=now + 10, limit=10, lease_ms=1000) == []
    ((again, interrupted),) = store.claim_due_submits(now=now + 2000, limit=10, lease_ms=1000)
    assert (again.id, interrupted, again.submit_attempts) == (job.id, True, 2)
    assert store.callback_token(job.id) == "tok"


def test_prune_deletes_delivered_history_and_keeps_state_work_and_dead_letters(store: SQLiteStore) -> None:
    """Old inbound messages and fully delivered events go; the job's state, a dead letter's event and
    a retrying delivery stay. A dry run counts the same and deletes nothing."""
    ok_sub, _ = store.create_subscriber("https://hooks.example.com/ok")
    job = store.create_job("apixo", {}, reference=None, token_hash="p" * 64)
    store.mark_submitted(job.id, "task_p")  # job.queued
    done = store.record_message(
        job.id, "callback", RawMessage({}, b"{}"), replace(SUCCESS, raw_state="success")
    )
    for work in store.claim_due_deliveries("w1", now=now_ms(), limit=10, lease_ms=60_000):
        store.finish_attempt(work.delivery_id, "w1", _attempt(1, 200), next_attempt_at=None)
    dead_sub, _ = store.create_subscriber("https://hooks.example.com/dead")
    (dead,) = store.replay_event(done.event_ids[0], dead_sub.id)
    for work in store.claim_due_deliveries("w1", now=now_ms(), limit=10, lease_ms=60_000):
        store.finish_attempt(work.delivery_id, "w1", _attempt(1, 500), next_attempt_at=None)
    assert store.get_delivery(dead.id).status == "dead"
    later = now_ms() + 1000
    dry = store.prune(before=later, dry_run=True)
    # job.queued (no subscriber wanted it) goes; the dead letter pins job.succeeded and its deliveries
    assert dry == {"inbound": 1, "attempts": 1, "deliveries": 0, "events": 1, "mirrors": 0}
    assert store.prune(before=later) == dry
    assert store.list_inbound(job_id=job.id) == []
    assert store.get_job(job.id).status is JobState.SUCCEEDED
    assert store.get_delivery(dead.id).status == "dead" and store.get_event(done.event_ids[0])
    assert ok_sub.id


def test_operations_snapshot_counts_due_dead_and_disabled(store: SQLiteStore) -> None:
    """The /metrics gauges: deliveries due at ``now`` and how long the oldest has waited, dead letters,
    disabled subscribers; an empty store gives zeros."""
    now = now_ms()
    assert store.operations_snapshot(now) == {
        "deliveries_due": 0,
        "oldest_due_age_seconds": 0.0,
        "dead_letters": 0,
        "disabled_subscribers": 0,
    }
    store.create_subscriber("http://127.0.0.1:1/h")
    off, _ = store.create_subscriber("http://127.0.0.1:2/h", enabled=False)
    for _ in range(3):
        store.record_message(_job(store), "callback", RAW, SUCCESS)
    created = max(d.created_at for d in store.list_deliveries(limit=10) if d.subscriber_id != off.id)
    later = created + 2500
    snap = store.operations_snapshot(later)
    assert snap["deliveries_due"] == 3
    assert snap["oldest_due_age_seconds"] >= 2.5
    assert snap["disabled_subscribers"] == 1 and snap["dead_letters"] == 0
    (work,) = store.claim_due_deliveries("w", now=later, limit=1, lease_ms=1000)
    store.finish_attempt(work.delivery_id, "w", _attempt(1, 500), next_attempt_at=None)
    (retrying,) = store.claim_due_deliveries("w", now=later, limit=1, lease_ms=1000)
    store.finish_attempt(retrying.delivery_id, "w", _attempt(1, 500), next_attempt_at=later + 60_000)
    snap = store.operations_snapshot(later)
    assert (snap["deliveries_due"], snap["dead_letters"], snap["disabled_subscribers"]) == (1, 1, 1)
    assert store.operations_snapshot(later + 60_000)["deliveries_due"] == 2
    assert store.operations_snapshot(created - 1)["deliveries_due"] == 0


def test_finish_attempt_says_once_when_it_disabled_the_subscriber(store: SQLiteStore) -> None:
    """A 410 disables the subscriber, and the Delivery returned by that attempt names the reason; a
    later failure for the already-disabled subscriber reports nothing new."""
    sub, _ = store.create_subscriber("https://hooks.example.com/gone")
    job = store.create_job("apixo", {}, reference=None, token_hash="g" * 64)
    store.record_message(job.id, "callback", RawMessage({}, b"{}"), replace(SUCCESS, raw_state="ok"))
    (work,) = store.claim_due_deliveries("w1", now=now_ms(), limit=10, lease_ms=60_000)
    first = store.finish_attempt(work.delivery_id, "w1", _attempt(1, 410), next_attempt_at=None)
    assert first.subscriber_disabled == "endpoint answered 410 Gone"
    assert store.get_subscriber(sub.id).enabled is False
    (again,) = store.replay_event(first.event_id, sub.id)
    store.conn.execute(
        "UPDATE deliveries SET lease_owner = 'w1', status = 'pending' WHERE id = ?", (again.id,)
    )
    second = store.finish_attempt(again.id, "w1", _attempt(1, 410), next_attempt_at=None)
    assert second.subscriber_disabled is None and "subscriber_disabled" not in second.to_json()


# -- payload anomalies and successes without output (issue 20) ------------------------------------


def test_anomalies_are_kept_once_each_bounded_and_flagged(store: SQLiteStore) -> None:
    """An update's anomalies are stored on the job with flag ``payload_anomaly``; the same ones again are
    not repeated, at most 20 are kept, and ``to_json`` lists them as ``{"path", "seen"}``."""
    jid = _job(store)
    first = (Anomaly("credits_used", '"lots"'), Anomaly("request_id", "[1]"))
    store.record_message(jid, "poll", RAW, JobUpdate(JobState.RUNNING, "processing", anomalies=first))
    store.record_message(jid, "poll", RAW, JobUpdate(JobState.RUNNING, "processing", anomalies=first[:1]))
    job = store.get_job(jid)
    assert job.flags == ("payload_anomaly",) and job.anomalies == first
    assert job.to_json()["anomalies"] == [
        {"path": "credits_used", "seen": '"lots"'},
        {"path": "request_id", "seen": "[1]"},
    ]
    many = tuple(Anomaly(f"f{n}", str(n)) for n in range(30))
    store.record_message(jid, "poll", RAW, JobUpdate(JobState.RUNNING, "processing", anomalies=many))
    job = store.get_job(jid)
    assert len(job.anomalies) == 20 and job.anomalies[:2] == first and job.flags == ("payload_anomaly",)
    clean = _job(store)
    store.record_message(clean, "poll", RAW, JobUpdate(JobState.RUNNING, "processing"))
    assert store.get_job(clean).anomalies == () and store.get_job(clean).flags == ()
    assert store.conn.execute("SELECT anomalies FROM jobs WHERE id = ?", (clean,)).fetchone()[0] is None


def test_a_success_without_output_keeps_the_job_running_until_the_url_comes(store: SQLiteStore) -> None:
    """A vendor success without outputs is not a success: the job stays running with flag
    ``success_without_output`` and no job.succeeded; the later success with the URL succeeds it once."""
    store.create_subscriber("http://127.0.0.1:1/h")
    jid = _job(store)
    early = store.record_message(jid, "callback", RAW, JobUpdate(JobState.SUCCEEDED, "success", progress=100))
    job = store.get_job(jid)
    assert job.status is JobState.RUNNING and "success_without_output" in job.flags
    assert early.verdict == "applied" and event_id(jid, "job.succeeded") not in early.event_ids
    assert store.record_message(jid, "poll", RAW, JobUpdate(JobState.SUCCEEDED, "success")).event_ids == ()
    done = store.record_message(jid, "poll", RAW, replace(SUCCESS, raw_state="success"))
    assert done.event_ids == (event_id(jid, "job.succeeded"),)
    job = store.get_job(jid)
    assert job.status is JobState.SUCCEEDED and [o.url for o in job.outputs] == [
        "https://cdn.example.com/a.png"
    ]
    late = store.record_message(jid, "callback", RAW, JobUpdate(JobState.SUCCEEDED, "success"))
    assert late.verdict == "stale" and late.event_ids == ()
    assert [e.type for e in store.iter_job_events(jid)] == ["job.running", "job.progress", "job.succeeded"]
