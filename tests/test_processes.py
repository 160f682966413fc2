"""Acceptance: ``upscale-relay serve`` and ``upscale-relay worker`` as real processes, started as a user
would start them, checked on what they print, answer and deliver."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from fixtures.harness import RunningServer, free_port, serve_in_thread, wait_until
from receiver.fakes.subscriber import SubscriberLog, Verifier, create_subscriber
from tests.procs import (
    RelayProcess,
    open_test_store,
    relay_environ,
    run_cli,
    seed_succeeded_jobs,
    wait_http_ok,
    wait_while_alive,
)

TOKEN_LINE = re.compile(r"this run's admin token is: (\S+)")
STOP_DEADLINE = 15.0  # seconds a SIGTERM'd process gets to exit


@pytest.fixture
def subscriber() -> Iterator[tuple[RunningServer, SubscriberLog]]:
    app, log = create_subscriber()
    with serve_in_thread(app) as server:
        yield server, log


def _token(proc: RelayProcess) -> str:
    wait_while_alive(proc, lambda: TOKEN_LINE.search(proc.stderr()), message="no token printed")
    match = TOKEN_LINE.search(proc.stderr())
    assert match is not None
    return match[1]


def test_serve_prints_a_generated_token_once_and_guards_the_api(tmp_path: Path, relay_database: str) -> None:
    """Without RELAY_API_TOKEN, serve prints one generated token that opens /v1, health is open, and
    SIGTERM ends it with status 0."""
    port = free_port()
    env = relay_environ(relay_database)
    base = f"http://127.0.0.1:{port}"
    with RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as proc:
        wait_http_ok(proc, f"{base}/healthz")
        token = _token(proc)
        assert len(token) >= 32
        assert httpx.get(f"{base}/readyz").status_code == 200
        authorized = httpx.get(f"{base}/v1/jobs", headers={"Authorization": f"Bearer {token}"})
        assert authorized.status_code == 200, authorized.text
        assert authorized.json()["data"] == []
        assert httpx.get(f"{base}/v1/jobs").status_code == 401
        assert httpx.get(f"{base}/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
        proc.send_signal(signal.SIGTERM)
        status = proc.wait_exit(STOP_DEADLINE)
        stderr = proc.stderr()
        assert stderr.count(token) == 1 and len(TOKEN_LINE.findall(stderr)) == 1, stderr
        assert status == 0, (
            f"serve exited {status} after SIGTERM (a negative status is the signal itself: uvicorn"
            f" re-raises the captured SIGTERM after its graceful shutdown); stderr:\n{stderr[-2000:]}"
        )


def test_port_environment_variable_is_honoured(tmp_path: Path, relay_database: str) -> None:
    """serve without --port listens on $PORT (and a set RELAY_API_TOKEN is used, not printed)."""
    port = free_port()
    env = {**relay_environ(relay_database, api_token="process-token-0123456789abcdef"), "PORT": str(port)}
    with RelayProcess.start("serve", ["serve"], env, tmp_path) as proc:
        wait_http_ok(proc, f"http://127.0.0.1:{port}/healthz")
        jobs = httpx.get(
            f"http://127.0.0.1:{port}/v1/jobs",
            headers={"Authorization": "Bearer process-token-0123456789abcdef"},
        )
        assert jobs.status_code == 200, jobs.text
        assert "admin token is" not in proc.stderr()


def _verifier(secret: str) -> Verifier:
    webhook = Webhook(secret)

    def verify(body: bytes, headers: Mapping[str, str]) -> None:
        webhook.verify(body, dict(headers))

    return verify


def test_separate_worker_process_delivers_a_signed_event(
    tmp_path: Path, relay_database: str, subscriber: tuple[RunningServer, SubscriberLog]
) -> None:
    """With serve --no-worker, deliveries wait for an upscale-relay worker process, which delivers them
    signed (verified by the standardwebhooks library) and exits 0 on SIGTERM."""
    server, log = subscriber
    db = relay_database
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer process-token-0123456789abcdef"}
    env = relay_environ(
        db, api_token="process-token-0123456789abcdef", allow_private_targets=True, poll_interval=0.05
    )
    with RelayProcess.start("serve", ["serve", "--no-worker", "--port", str(port)], env, tmp_path) as web:
        wait_http_ok(web, f"{base}/readyz")
        added = run_cli(env, "subscribers", "add", f"{server.url}/hooks/proc").stdout
        sub_id = added.split()[0]
        secret_match = re.search(r"^secret: (whsec_\S+)$", added, re.MULTILINE)
        assert secret_match is not None, added
        secret = secret_match[1]
        log.set_verifier(_verifier(secret))
        store = open_test_store(db)
        try:
            (eid,) = seed_succeeded_jobs(store, 1)
        finally:
            store.close()

        pending = httpx.get(f"{base}/v1/deliveries", params={"event_id": eid}, headers=auth).json()["data"]
        assert [(d["subscriber_id"], d["status"], d["attempts"]) for d in pending] == [(sub_id, "pending", 0)]
        assert log.count() == 0, "serve --no-worker delivered by itself"

        with RelayProcess.start("worker", ["worker", "--grace", "5"], env, tmp_path) as worker:
            wait_while_alive(worker, lambda: log.count() >= 1, timeout=15, message="worker never delivered")
            (delivery,) = log.deliveries()
            assert delivery.event_id == eid and delivery.headers["idempotency-key"] == eid
            assert delivery.verified is True, delivery.verify_error
            Webhook(secret).verify(delivery.body, delivery.headers)  # raises if the signature is wrong
            assert delivery.json["type"] == "job.succeeded"

            def succeeded() -> bool:
                rows = httpx.get(f"{base}/v1/deliveries", params={"event_id": eid}, headers=auth).json()
                return [d["status"] for d in rows["data"]] == ["succeeded"]

            wait_until(succeeded, timeout=10, message="delivery never recorded as succeeded")
            assert "delivering" in worker.stderr()
            worker.send_signal(signal.SIGTERM)
            status = worker.wait_exit(STOP_DEADLINE)
            assert status == 0, f"worker exited {status}; stderr:\n{worker.stderr()[-2000:]}"
        assert log.count() == 1
