"""Delivery you can trust: retry rules per response, dead letters, recovery, rotation, auto-disable,
and refusing to acknowledge a callback the store could not write."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatch.errors import StoreUnavailable
from dispatch.model import JobState, JobUpdate, Output, event_id, parse_iso
from dispatch.store.face import RunnerStore
from dispatch.store.records import RawMessage
from dispatch.store.runner import StoreRunner
from dispatch.store.sqlite import SQLiteStore
from fixtures.harness import wait_until
from receiver.fakes import SOURCE_IMAGE, FakeConfig, source_image
from receiver.fakes.subscriber import Behaviour
from tests.databases import query, sqlite_only
from tests.relay_env import RelayEnv, relay_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[RelayEnv]:
    with relay_env(tmp_path, secret_overlap=1.0, disable_after=0.5) as running:
        yield running


def _deliveries(env: RelayEnv, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = env.ok(env.client.get("/v1/deliveries", params=params), 200)["data"]
    return rows


def _detail(env: RelayEnv, delivery_id: str) -> dict[str, Any]:
    return env.ok(env.client.get(f"/v1/deliveries/{delivery_id}"), 200)


def _succeeded_event(env: RelayEnv) -> str:
    job = env.submit("artnex", {"image": SOURCE_IMAGE})
    return event_id(job["id"], "job.succeeded")


def test_410_gone_kills_the_delivery_and_disables_the_subscriber(env: RelayEnv) -> None:
    """A 410 answer ends the delivery as dead after one attempt and disables the subscriber with a reason."""
    sub = env.subscribe()
    env.sub_log.program(Behaviour.gone(), name="main")
    eid = _succeeded_event(env)
    wait_until(lambda: _deliveries(env, event_id=eid, status="dead"), message="410 did not kill the delivery")
    (dead,) = _deliveries(env, event_id=eid)
    assert dead["attempts"] == 1 and dead["last_status_code"] == 410
    got = env.ok(env.client.get(f"/v1/subscribers/{sub['id']}"), 200)
    assert got["enabled"] is False and "410" in got["disabled_reason"]


def test_events_while_disabled_are_kept_and_recover_sends_them(env: RelayEnv) -> None:
    """Events for a disabled subscriber are recorded as failed deliveries; recover counts, re-enables and sends them."""
    sub = env.subscribe()
    env.ok(env.client.patch(f"/v1/subscribers/{sub['id']}", json={"enabled": False}), 200)
    since = "2000-01-01T00:00:00Z"
    eids = [_succeeded_event(env) for _ in range(3)]
    wait_until(
        lambda: len(_deliveries(env, status="failed")) == 3, message="disabled deliveries not recorded"
    )
    assert env.sub_log.count("main") == 0
    dry = env.ok(
        env.client.post(f"/v1/subscribers/{sub['id']}/recover", json={"since": since, "dry_run": True}), 202
    )
    assert dry == {"count": 3, "dry_run": True}
    assert env.ok(env.client.get(f"/v1/subscribers/{sub['id']}"), 200)["enabled"] is False
    done = env.ok(env.client.post(f"/v1/subscribers/{sub['id']}/recover", json={"since": since}), 202)
    assert done["count"] == 3
    wait_until(
        lambda: all(e in env.sub_log.by_event_id("main") for e in eids), message="recover did not deliver"
    )
    assert env.ok(env.client.get(f"/v1/subscribers/{sub['id']}"), 200)["enabled"] is True
    bad = env.client.post(f"/v1/subscribers/{sub['id']}/recover", json={"since": "yesterday"})
    assert bad.status_code == 422


def test_continuous_failure_disables_the_subscriber(env: RelayEnv) -> None:
    """A subscriber failing without a success for longer than disable_after is disabled automatically."""
    sub = env.subscribe(retry_schedule=[0.2, 0.2, 0.2, 0.2])
    env.sub_log.program(Behaviour.fail(500, times=None), name="main")
    _succeeded_event(env)

    def disabled() -> bool:
        return env.ok(env.client.get(f"/v1/subscribers/{sub['id']}"), 200)["enabled"] is False

    wait_until(disabled, message="never auto-disabled")
    got = env.ok(env.client.get(f"/v1/subscribers/{sub['id']}"), 200)
    assert "failing" in got["disabled_reason"] and got["failing_since"] is not None


def test_retry_after_is_honoured_within_bounds(env: RelayEnv) -> None:
    """A 429 with Retry-After: 1 is retried no earlier than scheduled and no later than twice the schedule."""
    env.subscribe(retry_schedule=[0.3])
    env.sub_log.program(Behaviour.rate_limited(retry_after=1, times=1), name="main")
    eid = _succeeded_event(env)
    wait_until(lambda: _deliveries(env, event_id=eid, status="succeeded"), message="never delivered")
    first, second = env.sub_log.by_event_id("main")[eid]
    gap = second.received_at - first.received_at
    assert 0.3 <= gap < 0.6 + 0.5, gap  # clamped to [0.3, 0.6] s, plus scheduling slack
    detail = _detail(env, _deliveries(env, event_id=eid)[0]["id"])
    assert [a["status_code"] for a in detail["attempt_log"]] == [429, 200]
    assert detail["attempt_log"][0]["response_headers"]["retry-after"] == "1"


def test_redirect_is_a_failure_and_not_followed(env: RelayEnv) -> None:
    """A 301 is recorded as a failed attempt and its Location is never requested."""
    env.subscribe(retry_schedule=[0.05])
    env.sub_log.program(Behaviour.redirect("/hooks/elsewhere"), name="main")
    eid = _succeeded_event(env)
    wait_until(lambda: _deliveries(env, event_id=eid, status="dead"), message="redirect not dead-lettered")
    detail = _detail(env, _deliveries(env, event_id=eid)[0]["id"])
    assert [a["status_code"] for a in detail["attempt_log"]] == [301, 301]
    assert env.sub_log.count("elsewhere") == 0


def test_hang_past_timeout_and_connection_refused_are_recorded(tmp_path: Path) -> None:
    """A subscriber that hangs gets a timeout error; a closed port gets a connection error; both are attempts."""
    with relay_env(tmp_path, delivery_timeout=0.3) as env:
        env.subscribe(retry_schedule=[])
        env.sub_log.program(Behaviour.hang_for(2.0), name="main")
        closed = env.ok(
            env.client.post(
                "/v1/subscribers", json={"url": "http://127.0.0.1:9/closed", "retry_schedule": []}
            ),
            201,
        )
        eid = _succeeded_event(env)
        wait_until(lambda: len(_deliveries(env, event_id=eid, status="dead")) == 2, message="not both dead")
        by_sub = {d["subscriber_id"]: _detail(env, d["id"]) for d in _deliveries(env, event_id=eid)}
        hung = next(v for k, v in by_sub.items() if k != closed["id"])
        assert "timeout" in hung["attempt_log"][0]["error"] and hung["attempt_log"][0]["status_code"] is None
        refused = by_sub[closed["id"]]["attempt_log"][0]
        assert refused["status_code"] is None and refused["error"]


def test_rotation_signs_with_both_secrets_then_only_the_new(env: RelayEnv) -> None:
    """During the overlap both secrets verify a delivery; afterwards only the new one does."""
    sub = env.subscribe()
    old = Webhook(sub["secret"])
    rotated = env.ok(env.client.post(f"/v1/subscribers/{sub['id']}/rotate-secret"), 200)
    new = Webhook(rotated["secret"])
    assert rotated["secret"] != sub["secret"] and rotated["previous_secret_expires_at"]
    env.sub_log.set_verifier(lambda body, headers: new.verify(body, dict(headers)), name="main")
    eid = _succeeded_event(env)
    wait_until(lambda: eid in env.sub_log.by_event_id("main"))
    during = env.sub_log.by_event_id("main")[eid][0]
    assert len(during.headers["webhook-signature"].split()) == 2
    old.verify(during.body, during.headers)
    new.verify(during.body, during.headers)
    expires = parse_iso(rotated["previous_secret_expires_at"])
    assert expires is not None
    wait_until(lambda: time.time() > expires.timestamp() + 0.05, message="overlap never ended")
    eid2 = _succeeded_event(env)
    wait_until(lambda: eid2 in env.sub_log.by_event_id("main"))
    after = env.sub_log.by_event_id("main")[eid2][0]
    assert len(after.headers["webhook-signature"].split()) == 1
    new.verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        old.verify(after.body, after.headers)


def test_secrets_never_leave_after_creation(env: RelayEnv) -> None:
    """Neither the API nor the database shows a subscriber secret after creation."""
    sub = env.subscribe()
    listing = env.client.get("/v1/subscribers").text + env.client.get(f"/v1/subscribers/{sub['id']}").text
    assert sub["secret"] not in listing
    assert sub["secret"] not in repr(query(env.database_url, "SELECT * FROM subscribers"))
    if env.database_url.startswith("sqlite:"):
        assert sub["secret"].encode() not in env.db.read_bytes()


@sqlite_only("fills the database with SQLite's max_page_count; Postgres has no per-session equivalent")
def test_store_write_failure_answers_503_and_keeps_nothing(tmp_path: Path) -> None:
    """With the database full, a callback gets 503 (the vendor retries) and no half-written rows remain."""
    fake = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True)
    with relay_env(tmp_path, fake) as env:
        store = env.apps[0].state.resources.store
        assert isinstance(store, RunnerStore)
        job = env.submit("apixo", {"input": {"image_urls": [source_image("lost")]}})
        url = env.callback_url("generateTask")

        async def fill(pages: int | None) -> None:
            def set_limit(store: SQLiteStore) -> None:
                current = store.conn.execute("PRAGMA page_count").fetchone()[0]
                store.conn.execute(f"PRAGMA max_page_count = {pages if pages is not None else current}")

            runner = store.runner
            assert isinstance(runner, StoreRunner)
            await runner.each_writer(set_limit)  # the writer thread's connection and the on-loop one

        counts_before = _counts(env.database_url)
        asyncio.run(fill(None))  # the file may not grow any more: every new row fails with SQLITE_FULL
        body = b'{"code":200,"message":"success","data":{"taskId":"x","state":"success","resultJson":"{\\"resultUrls\\":[\\"https://f/a.jpg\\"]}"}}'
        response = httpx.post(url, content=body + b" " * 20_000)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "store_unavailable"
        asyncio.run(fill(1_000_000))
        assert _counts(env.database_url) == counts_before
        assert env.job(job["id"])["status"] == "queued"


@sqlite_only("holds SQLite's database-wide write lock from another connection")
def test_a_database_locked_past_the_busy_timeout_answers_503_then_the_retry_lands(tmp_path: Path) -> None:
    """Another process holds the write lock longer than RELAY_DB_BUSY_TIMEOUT: the callback gets 503
    and nothing is stored; once the lock is gone the vendor's retry of the same body gets 200."""
    import sqlite3

    with relay_env(tmp_path, db_busy_timeout=0.2) as env:
        job = env.submit("apixo", {"input": {"image_urls": [source_image("lost")]}})
        task_id = env.job(job["id"])["vendor_job_id"]
        url = env.callback_url("generateTask")
        result = json.dumps({"resultUrls": ["https://f/a.jpg"]})
        data = {"taskId": task_id, "state": "success", "resultJson": result}
        body = json.dumps({"code": 200, "message": "success", "data": data}).encode()
        counts_before = _counts(env.database_url)
        other = sqlite3.connect(env.db, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")  # another process writing (or stuck) for longer than 0.2 s
            response = httpx.post(url, content=body)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "store_unavailable"
            # the configured 0.2 s, not the 5 s default, bounds the wait: the writer's connection
            # carries it (read from SQLite itself, no clock involved)
            writer = env.apps[-1].state.resources.store.runner.store
            assert writer.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 200
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert _counts(env.database_url) == counts_before
        assert env.job(job["id"])["status"] == "queued"
        retried = httpx.post(url, content=body)
        assert retried.status_code == 200, retried.text
        assert env.job(job["id"])["status"] == "succeeded"


def _counts(database_url: str) -> tuple[int, ...]:
    return tuple(
        query(database_url, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("inbound", "events", "deliveries")
    )


def test_runner_reports_store_unavailable_for_a_full_database(store: SQLiteStore) -> None:
    """A write that hits SQLITE_FULL raises StoreUnavailable and leaves the transaction rolled back."""
    if store.sql.name != "sqlite":
        pytest.skip("SQLite's max_page_count simulates a full disk; Postgres has no per-session equivalent")
    job = store.create_job("apixo", {}, reference=None, token_hash=None)
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreUnavailable):
        store.record_message(
            job.id,
            "callback",
            RawMessage({}, b"x" * 50_000),
            JobUpdate(JobState.SUCCEEDED, outputs=(Output("https://cdn.example.com/a.png"),)),
        )
    store.conn.execute("PRAGMA max_page_count = 1000000")
    assert store.list_inbound(job_id=job.id) == [] and store.get_job(job.id).status is JobState.QUEUED
