"""Crash safety (issue 4): a worker killed with SIGKILL mid-burst leaves leases that expire; the next
worker re-claims them, so every (event, subscriber) pair arrives at least once."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from fixtures.harness import serve_in_thread, wait_until
from receiver.fakes.subscriber import Behaviour, SubscriberLog, Verifier, create_subscriber
from tests.procs import RelayProcess, open_test_store, relay_environ, seed_succeeded_jobs, wait_while_alive

EVENTS = 500
SUBSCRIBERS = ("a", "b", "c")
LEASE_SECONDS = 2


def _pairs(log: SubscriberLog) -> set[tuple[str, str | None]]:
    return {(d.name, d.event_id) for d in log.deliveries()}


def _verifier(secret: str) -> Verifier:
    webhook = Webhook(secret)

    def verify(body: bytes, headers: Mapping[str, str]) -> None:
        webhook.verify(body, dict(headers))

    return verify


def test_kill_9_mid_burst_then_restart_delivers_every_pair_at_least_once(
    tmp_path: Path, relay_database: str
) -> None:
    """500 events to 3 subscribers: after SIGKILL of the worker mid-burst and a restart, the subscriber
    servers have counted every (event, subscriber) pair at least once, all signatures valid."""
    db = relay_database
    sub_app, log = create_subscriber()
    # A short hang keeps attempts in flight, so the kill lands mid-delivery, not between attempts.
    log.program(Behaviour.hang_for(0.03))
    env = relay_environ(db, allow_private_targets=True, lease_seconds=LEASE_SECONDS, poll_interval=0.05)
    with serve_in_thread(sub_app) as server:
        store = open_test_store(db)
        try:
            for name in SUBSCRIBERS:
                _sub, secret = store.create_subscriber(f"{server.url}/hooks/{name}")
                log.set_verifier(_verifier(secret), name=name)
            event_ids = seed_succeeded_jobs(store, EVENTS)
        finally:
            store.close()
        expected = {(name, eid) for name in SUBSCRIBERS for eid in event_ids}

        with RelayProcess.start("worker-1", ["worker"], env, tmp_path) as first:
            wait_while_alive(
                first,
                lambda: log.count() >= 150,
                timeout=30,
                interval=0.005,
                message="the first worker delivered too little",
            )
            first.send_signal(signal.SIGKILL)
            assert first.wait_exit(10) == -signal.SIGKILL
        at_kill = len(_pairs(log) & expected)
        assert 0 < at_kill < len(expected), (
            f"the kill was not mid-burst: {at_kill} of {len(expected)} arrived"
        )

        with RelayProcess.start("worker-2", ["worker"], env, tmp_path) as second:
            wait_while_alive(
                second,
                lambda: expected <= _pairs(log),
                timeout=40,
                interval=0.05,
                message=f"pairs still missing: {len(expected - _pairs(log))}",
            )
            store = open_test_store(db)
            try:
                wait_until(
                    lambda: store.next_due_at() is None,
                    timeout=15,
                    message="deliveries still pending in the store",
                )
                dead = store.list_deliveries(status="dead", limit=10)
            finally:
                store.close()
            second.send_signal(signal.SIGTERM)
            assert second.wait_exit(15) == 0, second.stderr()[-2000:]

    receipts = log.deliveries()
    unique = _pairs(log)
    duplicates = len(receipts) - len(unique)
    figures = (
        f"events={EVENTS} subscribers={len(SUBSCRIBERS)} pairs={len(expected)}"
        f" receipts_before_kill={at_kill} subscriber_receipts={len(receipts)}"
        f" unique_pairs={len(unique)} duplicates={duplicates}"
    )
    print(f"\ncrash figures: {figures}")
    assert expected <= unique, f"missing pairs; {figures}"
    assert unique <= expected, f"unexpected deliveries; {figures}"
    assert all(d.verified for d in receipts), f"unverified delivery; {figures}"
    assert dead == [], f"dead deliveries after restart: {dead}; {figures}"
