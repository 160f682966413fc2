"""Acceptance: mirroring in real ``upscale-relay serve --no-worker`` and ``upscale-relay worker``
processes: the worker copies and delivers, the web process serves the copy, both stop cleanly."""

from __future__ import annotations

import hashlib
import re
import signal
from pathlib import Path

import httpx

from dispatch.model import event_id
from fixtures.harness import free_port, serve_in_thread
from receiver.fakes import FakeConfig, create_fake_vendors, source_image
from receiver.fakes.subscriber import create_subscriber
from tests.procs import RelayProcess, relay_environ, run_cli, wait_http_ok, wait_while_alive

FAKE = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True, serve_assets=True)
STOP_DEADLINE = 15.0


def test_the_worker_mirrors_and_the_web_process_serves_the_copy(tmp_path: Path, relay_database: str) -> None:
    """A job submitted to serve --no-worker is mirrored by the worker before its job.succeeded is
    delivered; the event's signed URL, answered by the web process, serves the vendor's bytes; both
    processes exit 0 on SIGTERM."""
    sub_app, log = create_subscriber()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer process-token-0123456789abcdef"}
    with serve_in_thread(create_fake_vendors(FAKE)) as vendors, serve_in_thread(sub_app) as subscriber:
        env = relay_environ(
            relay_database,
            api_token="process-token-0123456789abcdef",
            allow_private_targets=True,
            poll_interval=0.05,
            public_url=base,
            apixo_api_key=FAKE.apixo_api_key,
            apixo_base_url=vendors.url,
            mirror_url=f"file://{tmp_path / 'mirror'}",
            mirror_backoff=0.05,
        )
        with RelayProcess.start("serve", ["serve", "--no-worker", "--port", str(port)], env, tmp_path) as web:
            wait_http_ok(web, f"{base}/readyz")
            added = run_cli(env, "subscribers", "add", f"{subscriber.url}/hooks/proc").stdout
            assert re.search(r"^secret: whsec_\S+$", added, re.MULTILINE), added
            job = {"vendor": "apixo", "params": {"input": {"image_urls": [source_image()]}}}
            created = httpx.post(f"{base}/v1/jobs", json=job, headers=auth, timeout=30)
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            with RelayProcess.start("worker", ["worker", "--grace", "5"], env, tmp_path) as worker:
                eid = event_id(job_id, "job.succeeded")
                wait_while_alive(
                    worker,
                    lambda: eid in log.by_event_id(),
                    timeout=20,
                    message="job.succeeded not delivered",
                )
                output = log.by_event_id()[eid][0].json["data"]["outputs"][0]
                source = httpx.get(output["url"]).content
                assert output["mirror"]["sha256"] == hashlib.sha256(source).hexdigest()
                served = httpx.get(output["mirror"]["url"])
                assert served.status_code == 200 and served.content == source
                worker.send_signal(signal.SIGTERM)
                status = worker.wait_exit(STOP_DEADLINE)
                assert status == 0, f"worker exited {status}; stderr:\n{worker.stderr()[-2000:]}"
            web.send_signal(signal.SIGTERM)
            status = web.wait_exit(STOP_DEADLINE)
            assert status == 0, f"serve exited {status}; stderr:\n{web.stderr()[-2000:]}"
