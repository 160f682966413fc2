"""Graceful shutdown of ``upscale-relay worker`` (issue 4): SIGTERM stops claiming, lets in-flight
attempts finish for up to the grace period, and releases what it still holds, so the next worker
delivers at once instead of waiting for a lease to expire."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.harness import RunningServer, serve_in_thread, wait_until
from receiver.fakes.subscriber import Behaviour, SubscriberLog, create_subscriber
from tests.procs import RelayProcess, open_test_store, relay_environ, seed_succeeded_jobs, wait_while_alive

LEASE_SECONDS = 60  # far longer than any wait below: only a released lease lets a second worker in
STOP_DEADLINE = 15.0


@pytest.fixture
def subscriber() -> Iterator[tuple[RunningServer, SubscriberLog]]:
    app, log = create_subscriber()
    with serve_in_thread(app) as server:
        yield server, log


def _seed(db: str, url: str) -> str:
    """One subscriber at ``url`` and one ``job.succeeded`` event for it; returns the event id."""
    store = open_test_store(db)
    try:
        store.create_subscriber(url)
        (eid,) = seed_succeeded_jobs(store, 1)
    finally:
        store.close()
    return eid


def _delivery(db: str) -> dict[str, Any]:
    """The one delivery row, with the status codes of its recorded attempts."""
    store = open_test_store(db)
    try:
        conn = store.conn
        (row,) = conn.execute("SELECT id, status, attempts, lease_owner FROM deliveries").fetchall()
        codes = [
            code
            for (code,) in conn.execute(
                "SELECT status_code FROM attempts WHERE delivery_id = ? ORDER BY number", (row[0],)
            ).fetchall()
        ]
    finally:
        store.close()
    return {"status": row[1], "attempts": row[2], "lease_owner": row[3], "codes": codes}


def test_sigterm_lets_an_in_flight_attempt_finish_within_the_grace(
    tmp_path: Path, relay_database: str, subscriber: tuple[RunningServer, SubscriberLog]
) -> None:
    """The subscriber takes 1 s to answer; SIGTERM arrives while it thinks. With 10 s of grace the
    attempt completes, is recorded as a success, and the worker exits 0."""
    server, log = subscriber
    log.program(Behaviour.hang_for(1.0))
    db = relay_database
    _seed(db, f"{server.url}/hooks/slow")
    env = relay_environ(db, allow_private_targets=True, lease_seconds=LEASE_SECONDS, poll_interval=0.05)
    with RelayProcess.start("worker", ["worker", "--grace", "10"], env, tmp_path) as worker:
        wait_while_alive(worker, lambda: log.count() >= 1, message="the attempt never started")
        worker.send_signal(signal.SIGTERM)
        status = worker.wait_exit(STOP_DEADLINE)
    assert status == 0, f"worker exited {status}; stderr:\n{worker.stderr()[-2000:]}"
    assert _delivery(db) == {"status": "succeeded", "attempts": 1, "lease_owner": None, "codes": [200]}
    assert log.count() == 1


def test_sigterm_past_the_grace_releases_the_lease_for_the_next_worker(
    tmp_path: Path, relay_database: str, subscriber: tuple[RunningServer, SubscriberLog]
) -> None:
    """The subscriber hangs 30 s on the first request; the worker has 0.5 s of grace. It exits soon
    after SIGTERM, the cancelled attempt leaves the delivery pending with no lease, and a second
    worker delivers it well before the 60 s lease could have expired."""
    server, log = subscriber
    log.program(Behaviour.hang_for(30.0, times=1))
    db = relay_database
    eid = _seed(db, f"{server.url}/hooks/hang")
    env = relay_environ(db, allow_private_targets=True, lease_seconds=LEASE_SECONDS, poll_interval=0.05)
    with RelayProcess.start("worker-1", ["worker", "--grace", "0.5"], env, tmp_path) as first:
        wait_while_alive(first, lambda: log.count() >= 1, message="the attempt never started")
        signalled = time.monotonic()
        first.send_signal(signal.SIGTERM)
        status = first.wait_exit(STOP_DEADLINE)
        stopped_after = time.monotonic() - signalled
    assert status == 0, f"worker exited {status}; stderr:\n{first.stderr()[-2000:]}"
    assert stopped_after < 10, f"a 0.5 s grace took {stopped_after:.1f} s to stop"
    assert _delivery(db) == {"status": "pending", "attempts": 0, "lease_owner": None, "codes": []}

    with RelayProcess.start("worker-2", ["worker"], env, tmp_path) as second:
        wait_while_alive(second, lambda: log.count() >= 2, timeout=10, message="the released delivery waited")
        wait_until(
            lambda: _delivery(db)["status"] == "succeeded", timeout=10, message="the retry was not recorded"
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait_exit(STOP_DEADLINE) == 0
    assert [d.event_id for d in log.deliveries()] == [eid, eid]
    assert _delivery(db) == {"status": "succeeded", "attempts": 1, "lease_owner": None, "codes": [200]}
