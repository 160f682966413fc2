"""Secrets stay out of the logs (issue 4): a real ``upscale-relay serve`` process takes a job through a
fake vendor's callback to a verifying subscriber, rotates the subscriber's secret, and then nothing it
printed contains a callback token, a signing secret, a vendor credential or the admin token."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from fixtures.fake_vendors import FakeConfig, create_fake_vendors, fake_state_of, source_image
from fixtures.harness import free_port, serve_in_thread, wait_until
from fixtures.subscriber import create_subscriber
from receiver.logs import redact
from tests.procs import RelayProcess, relay_environ, wait_http_ok, wait_while_alive

ADMIN = "admin-token-that-must-not-be-logged"


def test_serve_logs_no_token_secret_or_credential(tmp_path: Path) -> None:
    """Access and application logs of a full submit → callback → delivery → rotate run name none of
    the run's secrets; the callback path is logged with its token redacted."""
    fake = FakeConfig(callback_delay=0.02)
    sub_app, sub_log = create_subscriber()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {ADMIN}"}
    vendors_app = create_fake_vendors(fake)
    state = fake_state_of(vendors_app)
    with serve_in_thread(vendors_app) as vendors, serve_in_thread(sub_app) as subscriber:
        env = relay_environ(
            tmp_path / "relay.db",
            api_token=ADMIN,
            public_url=base,
            allow_private_targets=True,
            apixo_api_key=fake.apixo_api_key,
            apixo_base_url=vendors.url,
            poll_interval=0.05,
        )
        with RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as relay:
            wait_http_ok(relay, f"{base}/readyz")
            created = httpx.post(
                f"{base}/v1/subscribers", json={"url": f"{subscriber.url}/hooks/s"}, headers=auth
            )
            assert created.status_code == 201, created.text
            sub = created.json()
            sub_log.set_verifier(lambda body, headers: Webhook(sub["secret"]).verify(body, dict(headers)))
            job = httpx.post(
                f"{base}/v1/jobs",
                json={"vendor": "apixo", "params": {"input": {"image_urls": [source_image()]}}},
                headers=auth,
            )
            assert job.status_code == 202, job.text
            wait_while_alive(relay, lambda: sub_log.count("s") >= 1, timeout=15, message="nothing delivered")
            assert all(d.verified for d in sub_log.deliveries("s"))
            rotated = httpx.post(f"{base}/v1/subscribers/{sub['id']}/rotate-secret", headers=auth)
            assert rotated.status_code == 200, rotated.text
            callback_url = next(
                s.body["callback_url"] for s in state.submits("apixo") if isinstance(s.body, dict)
            )
            token = callback_url.rsplit("/", 1)[1]
            wait_until(
                lambda: "/v1/callbacks/apixo/" in relay.stderr() + relay.stdout(), message="no access log"
            )
            relay.send_signal(signal.SIGTERM)
            assert relay.wait_exit(15) == 0
            printed = relay.stdout() + relay.stderr()

    secrets = {
        "callback token": token,
        "subscriber secret": sub["secret"],
        "rotated secret": rotated.json()["secret"],
        "vendor credential": fake.apixo_api_key,
        "admin token": ADMIN,
    }
    leaked = [name for name, value in secrets.items() if value in printed]
    assert leaked == [], f"{leaked} appear in the logs:\n{printed[-3000:]}"
    assert re.search(r"POST /v1/callbacks/apixo/\S+ HTTP/1\.1\" 200", printed), printed[-3000:]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/v1/callbacks/apixo/Zq3abc", "/v1/callbacks/apixo/***"),
        ("/v1/callbacks/dreamina/Zq3abc?x=1", "/v1/callbacks/dreamina/***?x=1"),
        (
            '"POST /v1/callbacks/ltxstudio/a-b_c HTTP/1.1" 200',
            '"POST /v1/callbacks/ltxstudio/*** HTTP/1.1" 200',
        ),
        ("/v1/callbacks/apixo/", "/v1/callbacks/apixo/"),
        ("/v1/jobs/job_01", "/v1/jobs/job_01"),
        ("a /v1/callbacks/x/t1 and /v1/callbacks/y/t2", "a /v1/callbacks/x/*** and /v1/callbacks/y/***"),
    ],
)
def test_redact_replaces_only_callback_tokens(text: str, expected: str) -> None:
    """Only the token segment of a callback path is replaced; other paths and text stay as they are."""
    assert redact(text) == expected
