"""Horizontal scale on Postgres (issue 10): two ``serve --no-worker`` web processes and two ``worker``
processes share one database. 1,000 APIXO callbacks on a source URL arrive at both web processes at
once; midway one worker is killed with SIGKILL and a new one started. Every (event, subscriber) pair
still arrives, signed, each callback and event is stored exactly once, and the duplicate deliveries
the kill may cause (at-least-once) are counted and printed (``pytest -s`` shows them)."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from fixtures import payload
from fixtures.harness import free_port, serve_in_thread, wait_until
from receiver.fakes.subscriber import Behaviour, SubscriberLog, Verifier, create_subscriber
from tests.databases import PG_SERVER, fresh_postgres, postgres_reachable, query, test_database
from tests.procs import RelayProcess, relay_environ, run_cli, wait_http_ok, wait_while_alive

SERVER = test_database() or PG_SERVER
CALLBACKS = 1000
KILL_AFTER = 400  # callbacks answered before one worker is killed
SUBSCRIBERS = ("a", "b", "c")
SENDERS = 16  # callbacks in flight at once
API_TOKEN = "scale-admin-token-0123456789"
LEASE_SECONDS = 2

pytestmark = pytest.mark.skipif(
    not postgres_reachable(SERVER), reason=f"needs a Postgres server at {SERVER} (RELAY_TEST_PG_SERVER)"
)


def _verifier(secret: str) -> Verifier:
    webhook = Webhook(secret)

    def verify(body: bytes, headers: Mapping[str, str]) -> None:
        webhook.verify(body, dict(headers))

    return verify


def _callback_body(n: int) -> bytes:
    body: dict[str, Any] = json.loads(payload("apixo", "callback_success"))
    body["data"]["taskId"] = f"task_scale_{n}"
    return json.dumps(body).encode()


def _pairs(log: SubscriberLog) -> set[tuple[str, str | None]]:
    return {(d.name, d.event_id) for d in log.deliveries()}


@pytest.fixture
def scale_database() -> Iterator[str]:
    with fresh_postgres(SERVER) as url:
        yield url


def test_two_web_and_two_worker_processes_share_one_postgres(tmp_path: Path, scale_database: str) -> None:
    """1,000 source callbacks across two web processes, a worker SIGKILLed and replaced midway: every
    callback 200, 1,000 jobs and 1,000 events stored, all 3,000 pairs delivered with valid signatures."""
    url = scale_database
    sub_app, log = create_subscriber()
    log.program(Behaviour.hang_for(0.01))  # attempts stay in flight a moment, so the kill lands mid-attempt
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    env = relay_environ(
        url,
        api_token=API_TOKEN,
        public_url=bases[0],
        allow_private_targets=True,
        apixo_api_key="scale-apixo-key",
        lease_seconds=LEASE_SECONDS,
        poll_interval=0.05,
        retry_schedule="[0.2, 0.5, 1, 2]",
        retry_jitter=0,
        source_max_jobs_per_hour=CALLBACKS * 10,
    )
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    assert "applied" in run_cli(env, "migrate").stdout + run_cli(env, "migrate", "--status").stdout

    with serve_in_thread(sub_app) as subscriber:
        web = [
            RelayProcess.start(f"web-{i}", ["serve", "--no-worker", "--port", str(port)], env, tmp_path)
            for i, port in enumerate(ports, 1)
        ]
        workers = [RelayProcess.start(f"worker-{i}", ["worker"], env, tmp_path) for i in (1, 2)]
        try:
            for proc, base in zip(web, bases, strict=True):
                wait_http_ok(proc, f"{base}/readyz")
            for name in SUBSCRIBERS:
                created = httpx.post(
                    f"{bases[0]}/v1/subscribers", json={"url": f"{subscriber.url}/hooks/{name}"}, headers=auth
                )
                assert created.status_code == 201, created.text
                log.set_verifier(_verifier(created.json()["secret"]), name=name)
            source = httpx.post(f"{bases[1]}/v1/sources", json={"vendor": "apixo"}, headers=auth)
            assert source.status_code == 201, source.text
            callback_url = str(source.json()["callback_url"])
            assert callback_url.startswith(bases[0]), callback_url
            path = callback_url.removeprefix(bases[0])

            answered: list[int] = []
            lock = threading.Lock()
            clients = [httpx.Client(base_url=base, timeout=30) for base in bases]

            def send(n: int) -> int:
                response = clients[n % 2].post(
                    path, content=_callback_body(n), headers={"Content-Type": "application/json"}
                )
                with lock:
                    answered.append(response.status_code)
                return response.status_code

            try:
                with ThreadPoolExecutor(max_workers=SENDERS) as pool:
                    futures = [pool.submit(send, n) for n in range(CALLBACKS)]
                    wait_while_alive(
                        workers[0],
                        lambda: len(answered) >= KILL_AFTER,
                        timeout=120,
                        message=f"fewer than {KILL_AFTER} callbacks answered",
                    )
                    workers[0].send_signal(signal.SIGKILL)
                    assert workers[0].wait_exit(10) == -signal.SIGKILL
                    answered_at_kill, pairs_at_kill = len(answered), len(_pairs(log))
                    workers.append(RelayProcess.start("worker-3", ["worker"], env, tmp_path))
                    statuses = [future.result() for future in futures]
            finally:
                for client in clients:
                    client.close()
            assert statuses.count(200) == CALLBACKS, {s: statuses.count(s) for s in set(statuses)}

            rows = query(url, "SELECT vendor_job_id FROM jobs")
            assert len(rows) == CALLBACKS and {r[0] for r in rows} == {
                f"task_scale_{n}" for n in range(CALLBACKS)
            }
            events = query(url, "SELECT job_id, type FROM events")
            assert len(events) == CALLBACKS, f"{len(events)} events for {CALLBACKS} jobs"
            assert len(set(events)) == CALLBACKS, "an event was stored twice"
            event_ids = {r[0] for r in query(url, "SELECT id FROM events")}
            expected = {(name, eid) for name in SUBSCRIBERS for eid in event_ids}

            def all_arrived() -> bool:
                for proc in (*web, *workers[1:]):
                    proc.check_alive()
                return expected <= _pairs(log)

            wait_until(
                all_arrived,
                timeout=120,
                interval=0.1,
                message=f"pairs still missing: {len(expected - _pairs(log))}",
            )
            wait_until(
                lambda: query(url, "SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'")[0][0] == 0,
                timeout=30,
                message="deliveries not all recorded as succeeded",
            )
        finally:
            for proc in (*web, *workers):
                proc.close()

    receipts = log.deliveries()
    unique = _pairs(log)
    duplicates = len(receipts) - len(unique)
    print(
        f"\nscale figures: callbacks={CALLBACKS} web=2 workers=2(+1 after SIGKILL at {answered_at_kill}"
        f" answered, {pairs_at_kill} pairs delivered) subscribers={len(SUBSCRIBERS)} pairs={len(expected)}"
        f" subscriber_receipts={len(receipts)} unique_pairs={len(unique)} duplicate_deliveries={duplicates}"
    )
    assert unique == expected, f"unexpected deliveries: {len(unique - expected)}"
    unverified = [d for d in receipts if not d.verified]
    assert unverified == [], f"{len(unverified)} deliveries failed standardwebhooks verification"
