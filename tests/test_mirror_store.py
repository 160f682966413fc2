"""The mirror store verbs (dispatch.store.mirrors) on both engines: job.succeeded is held while the
outputs are copied, retries are stored decisions, and completing emits the held event once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatch.errors import NotFound, ValidationFailed
from dispatch.model import EventType, JobError, JobState, JobUpdate, Mirror, Output, event_id, now_ms
from dispatch.store.mirrors import MIRROR_WINDOW_MS
from dispatch.store.records import RawMessage

RAW = RawMessage({"content-type": "application/json"}, b"{}", "127.0.0.1:1")
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def _succeed(store: Any, *outputs: Output) -> str:
    job_id: str = store.create_job("apixo", {"input": {}}, reference="r1", token_hash=None).id
    store.mark_submitted(job_id, "task_1")
    update = JobUpdate(JobState.SUCCEEDED, "success", "task_1", outputs=outputs)
    store.record_message(job_id, "callback", RAW, update)
    return job_id


def _mirrored(output: Output, index: int) -> Output:
    return Output(
        output.url, "image/png", 64, 48, output.expires_at, Mirror(f"https://m/{index}", 10, "a" * 64, LATER)
    )


def test_mirroring_off_emits_job_succeeded_at_once(store: Any) -> None:
    """Without mirror_hold the state machine emits job.succeeded and adds no mirror work."""
    job_id = _succeed(store, Output("https://x/a.png"))
    assert [e.type for e in store.iter_job_events(job_id)] == ["job.queued", "job.succeeded"]
    assert store.next_mirror_at() is None


def test_a_held_job_succeeds_without_its_event_until_the_copy_completes(store: Any) -> None:
    """With mirror_hold the job is succeeded, its event waits; completing emits it with the mirrors."""
    store.mirror_hold = True
    sub, _ = store.create_subscriber("http://127.0.0.1:1/h")
    expires = datetime.now(UTC) + timedelta(hours=2)
    outputs = (Output("https://x/a.png", expires_at=expires), Output("https://x/b.png"))
    job_id = _succeed(store, *outputs)
    assert store.get_job(job_id).status is JobState.SUCCEEDED
    assert [e.type for e in store.iter_job_events(job_id)] == ["job.queued"]
    assert store.list_deliveries(event_id=event_id(job_id, EventType.SUCCEEDED)) == []

    now = now_ms()
    (task,) = store.claim_due_mirrors(now=now, limit=10, lease_ms=60_000)
    assert task.job.id == job_id and task.attempts == 1 and task.results == ()
    assert task.deadline_at == int(expires.timestamp() * 1000)  # the earliest vendor expiry
    assert store.claim_due_mirrors(now=now, limit=10, lease_ms=60_000) == []  # leased

    final = [_mirrored(outputs[0], 0), Output("https://x/b.png", mirror_error=JobError("too_large", "big"))]
    job, emitted = store.complete_mirror(job_id, final)
    assert emitted and job.outputs == tuple(final)
    event = store.get_event(event_id(job_id, EventType.SUCCEEDED))
    data = json.loads(event.body)["data"]
    assert data["outputs"][0]["mirror"] == {
        "url": "https://m/0",
        "size_bytes": 10,
        "sha256": "a" * 64,
        "expires_at": "2030-01-01T00:00:00.000Z",
    }
    assert data["outputs"][0]["mirror_error"] is None and data["outputs"][0]["width"] == 64
    assert data["outputs"][1]["mirror"] is None
    assert data["outputs"][1]["mirror_error"] == {"code": "too_large", "message": "big"}
    assert data["sequence"] == 2 and event.sequence == 2
    assert [d.subscriber_id for d in store.list_deliveries(event_id=event.id)] == [sub.id]
    assert store.next_mirror_at() is None  # done


def test_a_retry_is_stored_with_what_was_copied(store: Any) -> None:
    """retry_mirror plans the next attempt and keeps per-output results; without an expiry the
    deadline is 23 h after success; a second completion rewrites the event instead of emitting."""
    store.mirror_hold = True
    outputs = (Output("https://x/a.png"), Output("https://x/b.png"))
    before = now_ms()
    job_id = _succeed(store, *outputs)
    (task,) = store.claim_due_mirrors(now=now_ms(), limit=1, lease_ms=60_000)
    assert before + MIRROR_WINDOW_MS <= task.deadline_at <= now_ms() + MIRROR_WINDOW_MS
    partial = [_mirrored(outputs[0], 0), None]
    at = now_ms() + 5_000
    store.retry_mirror(job_id, at=at, results=partial, error="expired: HTTP 404")
    assert store.next_mirror_at() == at
    assert store.claim_due_mirrors(now=at - 1, limit=1, lease_ms=60_000) == []
    (again,) = store.claim_due_mirrors(now=at, limit=1, lease_ms=60_000)
    assert again.attempts == 2 and again.results == tuple(partial)

    store.complete_mirror(job_id, [_mirrored(outputs[0], 0), _mirrored(outputs[1], 1)])
    redone = [_mirrored(outputs[0], 5), _mirrored(outputs[1], 6)]
    job, emitted = store.complete_mirror(job_id, redone)  # a re-mirror
    assert not emitted
    events = list(store.iter_job_events(job_id))
    assert [e.type for e in events] == ["job.queued", "job.succeeded"]
    data = json.loads(events[1].body)["data"]
    assert [o["mirror"]["url"] for o in data["outputs"]] == ["https://m/5", "https://m/6"]
    assert data["sequence"] == events[1].sequence == job.sequence == 2
    with pytest.raises(NotFound):
        store.retry_mirror(job_id, at=at, results=partial, error="x")


def test_a_lease_is_renewed_while_copying_and_released_when_abandoned(store: Any) -> None:
    """renew_mirror_lease moves a claimed task's due time; release_mirror makes it due at once with
    what was copied, without counting the attempt; neither touches a task that holds no lease."""
    store.mirror_hold = True
    outputs = (Output("https://x/a.png"), Output("https://x/b.png"))
    job_id = _succeed(store, *outputs)
    now = now_ms()
    store.claim_due_mirrors(now=now, limit=1, lease_ms=3_000)
    assert store.next_mirror_at() == now + 3_000
    assert store.renew_mirror_lease(job_id, until=now + 9_000)
    assert store.next_mirror_at() == now + 9_000
    assert store.claim_due_mirrors(now=now + 5_000, limit=1, lease_ms=3_000) == []  # renewed: still held

    partial = [_mirrored(outputs[0], 0), None]
    before = now_ms()
    assert store.release_mirror(job_id, results=partial)
    due = store.next_mirror_at()
    assert due is not None and before <= due <= now_ms()
    assert not store.release_mirror(job_id, results=partial)  # no lease held any more
    assert not store.renew_mirror_lease(job_id, until=now + 60_000)
    assert store.next_mirror_at() == due
    (again,) = store.claim_due_mirrors(now=now_ms(), limit=1, lease_ms=3_000)
    assert again.attempts == 1 and again.results == tuple(partial)  # the abandoned try did not count
    store.complete_mirror(job_id, [_mirrored(outputs[0], 0), _mirrored(outputs[1], 1)])
    assert not store.renew_mirror_lease(job_id, until=now + 60_000)
    assert not store.release_mirror(job_id, results=partial)


def test_complete_mirror_refuses_another_shape(store: Any) -> None:
    """Completing with a different number of outputs (or for a job not succeeded) is refused."""
    store.mirror_hold = True
    job_id = _succeed(store, Output("https://x/a.png"))
    with pytest.raises(ValidationFailed):
        store.complete_mirror(job_id, [])
    other = store.create_job("apixo", {"input": {}}, reference=None, token_hash=None).id
    with pytest.raises(ValidationFailed):
        store.complete_mirror(other, [])


def test_a_success_without_outputs_is_not_held(store: Any) -> None:
    """A vendor success without outputs is not a success yet: the job stays running (flagged), nothing
    is held for copying and no job.succeeded is emitted."""
    store.mirror_hold = True
    job_id = _succeed(store)
    assert [e.type for e in store.iter_job_events(job_id)] == ["job.queued", "job.running"]
    job = store.get_job(job_id)
    assert job.status is JobState.RUNNING and "success_without_output" in job.flags
    assert store.claim_due_mirrors(now=now_ms(), limit=10, lease_ms=60_000) == []


def test_retention_drops_finished_copies_and_keeps_pending_ones(store: Any) -> None:
    """prune deletes the mirrors rows of copies that finished before its cut-off (their results live
    on in the job's outputs) and never one still being copied."""
    store.mirror_hold = True
    done_id = _succeed(store, Output("https://x/a.png"))
    (task,) = store.claim_due_mirrors(now=now_ms(), limit=10, lease_ms=60_000)
    store.complete_mirror(task.job.id, [_mirrored(Output("https://x/a.png"), 0)])
    pending_id = _succeed(store, Output("https://x/b.png"))
    later = now_ms() + 1000
    assert store.prune(before=later, dry_run=True)["mirrors"] == 1
    assert store.prune(before=later)["mirrors"] == 1
    assert store.get_job(done_id).outputs[0].mirror is not None
    (left,) = store.claim_due_mirrors(now=later, limit=10, lease_ms=60_000)
    assert left.job.id == pending_id
