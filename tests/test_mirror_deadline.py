"""Issue 19, findings 2 and 7 (the mirror's part): every copy has a total deadline, copies run side by
side so slow hosts hold nobody else, SIGTERM ends ``serve`` and ``worker`` promptly with their copies
released for another process, and a copy cut by ``kill -9`` is taken over within a short, heartbeat-
renewed lease instead of 15 minutes. Real ``upscale-relay`` processes, the fake vendors, a real
subscriber and a host whose outputs send one byte a second. Runs on Postgres too under
``RELAY_TEST_DATABASE``."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch.model import event_id
from fixtures.harness import RunningServer, free_port, serve_in_thread, wait_until
from receiver.fakes import FakeConfig, create_fake_vendors, fake_state_of
from receiver.fakes.state import FakeState
from receiver.fakes.subscriber import SubscriberLog, create_subscriber
from tests.databases import query
from tests.output_host import OutputHost, plant_outputs
from tests.procs import RelayProcess, relay_environ, wait_http_ok, wait_while_alive
from tests.relay_env import relay_env

FAKE = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True)
TOKEN = "drip-test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STOP_DEADLINE = 15.0  # seconds SIGTERM may take, with the default RELAY_SHUTDOWN_GRACE of 10
DELIVERY_DEADLINE = 20.0  # a plain mirrored job's job.succeeded, polled for


@dataclass
class World:
    """Everything outside the relay processes: fake vendors, a subscriber, the output host."""

    vendors: RunningServer
    fake: FakeState
    subscriber: RunningServer
    log: SubscriberLog
    host: OutputHost
    host_server: RunningServer


@contextmanager
def world() -> Iterator[World]:
    vendors_app = create_fake_vendors(FAKE)
    sub_app, log = create_subscriber()
    host = OutputHost(drip_every=1.0)
    with (
        serve_in_thread(vendors_app) as vendors,
        serve_in_thread(sub_app) as subscriber,
        serve_in_thread(host.app()) as host_server,
    ):
        yield World(vendors, fake_state_of(vendors_app), subscriber, log, host, host_server)


def _environ(database: str, tmp_path: Path, w: World, base: str, **extra: Any) -> dict[str, str]:
    return relay_environ(
        database,
        api_token=TOKEN,
        allow_private_targets=True,
        poll_interval=0.05,
        public_url=base,
        apixo_api_key=FAKE.apixo_api_key,
        apixo_base_url=w.vendors.url,
        mirror_url=f"file://{tmp_path / 'mirror'}",
        mirror_backoff=0.05,
        **extra,
    )


def _subscribe(base: str, w: World) -> None:
    created = httpx.post(f"{base}/v1/subscribers", json={"url": f"{w.subscriber.url}/hooks/d"}, headers=AUTH)
    assert created.status_code == 201, created.text


def _delivered_output(proc: RelayProcess, w: World, job_id: str) -> dict[str, Any]:
    """The first output of ``job_id``'s job.succeeded, once the subscriber has it (polled with a
    deadline while ``proc`` lives)."""
    eid = event_id(job_id, "job.succeeded")
    wait_while_alive(
        proc, lambda: eid in w.log.by_event_id(), timeout=DELIVERY_DEADLINE, message="job.succeeded held"
    )
    output: dict[str, Any] = w.log.by_event_id()[eid][0].json["data"]["outputs"][0]
    return output


def _pending_mirrors(database: str) -> dict[str, tuple[Any, Any]]:
    """``job_id → (lease_until, next_attempt_at)`` of every pending mirror task."""
    rows = query(
        database, "SELECT job_id, lease_until, next_attempt_at FROM mirrors WHERE status = 'pending'"
    )
    return {str(r[0]): (r[1], r[2]) for r in rows}


@pytest.mark.parametrize("mode", ["serve", "worker"])
def test_drip_outputs_hold_no_other_job_and_sigterm_releases_them(
    tmp_path: Path, relay_database: str, mode: str
) -> None:
    """Four jobs whose outputs send one byte a second are being copied; a plain job's job.succeeded is
    still delivered; SIGTERM ends the mirroring process (serve with its in-process worker, or worker)
    with status 0, and the four copies it abandoned are released: due now, no lease held."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with world() as w, ExitStack() as procs:
        env = _environ(relay_database, tmp_path, w, base)
        args = ["serve", "--port", str(port)] + (["--no-worker"] if mode == "worker" else [])
        web = procs.enter_context(RelayProcess.start("serve", args, env, tmp_path))
        wait_http_ok(web, f"{base}/readyz")
        copier = web
        if mode == "worker":
            copier = procs.enter_context(RelayProcess.start("worker", ["worker"], env, tmp_path))
        _subscribe(base, w)
        drips = [plant_outputs(base, AUTH, w.fake, [f"{w.host_server.url}/drip/{n}"]) for n in range(4)]
        wait_while_alive(copier, lambda: w.host.drips_started() >= 4, timeout=20, message="drips not fetched")

        plain = plant_outputs(base, AUTH, w.fake, [f"{w.host_server.url}/img/plain.png"])
        assert _delivered_output(copier, w, plain["id"])["mirror"]["size_bytes"] > 0
        assert all(f"/drip/{n}" in w.host.requests for n in range(4))  # still copying, not given up

        copier.send_signal(signal.SIGTERM)
        status = copier.wait_exit(STOP_DEADLINE)
        assert status == 0, f"{mode} exited {status}; stderr:\n{copier.stderr()[-3000:]}"
        pending = _pending_mirrors(relay_database)
        now = time.time() * 1000
        assert set(pending) == {d["id"] for d in drips}
        assert all(lease is None and due <= now for lease, due in pending.values()), pending
        if web is not copier:
            web.send_signal(signal.SIGTERM)
            assert web.wait_exit(STOP_DEADLINE) == 0


def test_kill_9_mid_copy_then_a_restart_takes_the_copy_over_at_once(
    tmp_path: Path, relay_database: str
) -> None:
    """A worker killed with SIGKILL while copying leaves its task leased for RELAY_LEASE_SECONDS
    only (its heartbeat stopped), not 15 minutes: a new worker copies it and job.succeeded is
    delivered."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with world() as w, ExitStack() as procs:
        env = _environ(relay_database, tmp_path, w, base, lease_seconds=3)
        web = procs.enter_context(
            RelayProcess.start("serve", ["serve", "--no-worker", "--port", str(port)], env, tmp_path)
        )
        wait_http_ok(web, f"{base}/readyz")
        _subscribe(base, w)
        first = procs.enter_context(RelayProcess.start("worker-1", ["worker"], env, tmp_path))
        job = plant_outputs(base, AUTH, w.fake, [f"{w.host_server.url}/drip/killed"])
        wait_while_alive(first, lambda: w.host.drips_started() >= 1, timeout=20, message="copy never started")
        first.popen.kill()
        assert first.wait_exit(STOP_DEADLINE) == -signal.SIGKILL
        w.host.dripping.clear()  # the output is whole from now on

        second = procs.enter_context(RelayProcess.start("worker-2", ["worker"], env, tmp_path))
        output = _delivered_output(second, w, job["id"])
        assert output["mime_type"] == "image/png" and output["mirror"]["size_bytes"] > 0
        for proc in (second, web):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait_exit(STOP_DEADLINE) == 0


def test_a_copy_over_the_mirror_timeout_is_cut_and_retried(tmp_path: Path) -> None:
    """RELAY_MIRROR_TIMEOUT bounds the whole copy, not each read: an output sending a byte every
    0.2 s (each read well within aiohttp's per-read timeout) is cut after 1 s and retried, the
    task's last error naming the setting."""
    host = OutputHost(drip_every=0.2)
    with (
        serve_in_thread(host.app()) as server,
        relay_env(
            tmp_path, FAKE, mirror_url=f"file://{tmp_path / 'mirror'}", mirror_backoff=0.05, mirror_timeout=1
        ) as env,
    ):
        job = plant_outputs(env.relay.url, env.client.headers, env.fake, [f"{server.url}/drip/slow"])

        def last_error() -> str:
            rows = query(env.database_url, "SELECT last_error FROM mirrors WHERE job_id = ?", (job["id"],))
            return str(rows[0][0] or "") if rows else ""

        wait_until(
            lambda: "RELAY_MIRROR_TIMEOUT" in last_error(), timeout=15, message="the copy was never cut"
        )
        assert "timed_out" in last_error()
        wait_until(lambda: host.drips_started() >= 2, timeout=15, message="never retried")
        assert env.job(job["id"])["outputs"][0].get("mirror") is None  # job.succeeded still held
