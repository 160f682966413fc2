"""finish_attempts: a worker's ended attempts recorded together, one transaction, on both engines."""

from __future__ import annotations

from typing import Any

from dispatch.model import JobState, JobUpdate, Output, now_ms
from dispatch.store.records import Attempt, RawMessage

RAW = RawMessage({"content-type": "application/json"}, b"{}", "127.0.0.1:1")


def _attempt(status: int | None) -> Attempt:
    return Attempt(1, now_ms(), 5, status, {}, "", None if status else "boom")


def test_a_batch_records_each_attempt_and_skips_a_lost_lease(store: Any) -> None:
    """Three deliveries leased to w1: a success, a failure with a retry time, and one another worker
    took over meanwhile. Each is recorded in order; the lost one comes back None and keeps the other
    worker's lease, yet its attempt is in the log."""
    for n in range(3):
        store.create_subscriber(f"https://hooks.example.com/{n}")
    job = store.create_job("apixo", {"input": {}}, reference=None, token_hash=None)
    store.record_message(
        job.id,
        "callback",
        RAW,
        JobUpdate(JobState.SUCCEEDED, outputs=(Output("https://cdn.example.com/a.png"),)),
    )
    now = now_ms() + 1
    work = store.claim_due_deliveries("w1", now=now, limit=10, lease_ms=60_000)
    assert len(work) == 3
    ok, failing, lost = (w.delivery_id for w in work)
    with store.transaction() as conn:
        conn.execute("UPDATE deliveries SET lease_owner = 'w2' WHERE id = ?", (lost,))
    results = store.finish_attempts(
        "w1", [(ok, _attempt(200), None), (failing, _attempt(500), now + 5000), (lost, _attempt(200), None)]
    )
    assert [r.id if r else None for r in results] == [ok, failing, None]
    assert (results[0].status, results[1].status, results[1].next_attempt_at) == (
        "succeeded",
        "retrying",
        now + 5000,
    )
    assert store.get_delivery(lost).status == "pending"
    assert [a.status_code for a in store.get_delivery(lost).attempt_log] == [200]
    assert store.finish_attempts("w1", []) == []
