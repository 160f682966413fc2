"""A whole relay on loopback for end-to-end tests: fake vendors, a real subscriber, the relay itself."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from fixtures.harness import RunningServer, serve_factory, serve_in_thread, wait_until
from receiver.app import create_app
from receiver.fakes import FakeConfig, create_fake_vendors, fake_state_of
from receiver.fakes.state import FakeState
from receiver.fakes.subscriber import SubscriberLog, create_subscriber
from receiver.settings import Settings
from tests.databases import database_url_for

API_TOKEN = "test-admin-token-0123456789"  # RELAY_API_TOKEN takes 24 characters or more
TEST_SECRET_KEY = (
    "fTmvyZxFqbkZs6nb7ckoSPJzE6kMz2rKgoq5iqt5H3g="  # a fixed Fernet key: relays in a test share it
)


@dataclass
class RelayEnv:
    """Handles on every running part; ``client`` carries the admin token."""

    relay: RunningServer
    vendors: RunningServer
    subscriber: RunningServer
    sub_log: SubscriberLog
    fake: FakeState
    client: httpx.Client
    db: Path  # the SQLite file (unused when the suite runs on Postgres: see database_url)
    apps: list[Any]
    database_url: str = ""

    def subscribe(
        self, name: str = "main", event_types: list[str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Create a subscriber at ``<subscriber>/hooks/<name>`` whose deliveries are verified with the
        ``standardwebhooks`` reference library; returns the API's answer (with ``secret``)."""
        body: dict[str, Any] = {"url": f"{self.subscriber.url}/hooks/{name}", **extra}
        if event_types is not None:
            body["event_types"] = event_types
        created = self.ok(self.client.post("/v1/subscribers", json=body), 201)
        webhook = Webhook(created["secret"])

        def check(raw: bytes, headers: Mapping[str, str]) -> None:
            webhook.verify(raw, dict(headers))

        self.sub_log.set_verifier(check, name=name)
        return created

    def submit(self, vendor: str, params: dict[str, Any], reference: str | None = None) -> dict[str, Any]:
        """``POST /v1/jobs``; asserts 202 and returns the job."""
        return self.ok(
            self.client.post("/v1/jobs", json={"vendor": vendor, "params": params, "reference": reference}),
            202,
        )

    def job(self, job_id: str) -> dict[str, Any]:
        return self.ok(self.client.get(f"/v1/jobs/{job_id}"), 200)

    def wait_status(self, job_id: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll the job until it has ``status``; returns it."""
        wait_until(
            lambda: self.job(job_id)["status"] == status, timeout, message=f"{job_id} never became {status}"
        )
        return self.job(job_id)

    def callback_url(self, vendor_path_fragment: str) -> str:
        """The relay callback URL the fake vendor received in the latest submit to a path containing
        ``vendor_path_fragment``."""
        for record in reversed(self.fake.submits()):
            if vendor_path_fragment in record.path and isinstance(record.body, dict):
                for key in ("replyUrl", "webhookUrl", "callback_url"):
                    if key in record.body:
                        return str(record.body[key])
        raise AssertionError(f"no submit to {vendor_path_fragment} with a callback URL")

    @staticmethod
    def ok(response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, f"{response.status_code}: {response.text}"
        data: dict[str, Any] = response.json()
        return data


def relay_settings(
    db: Path, public_url: str, vendors_url: str, fake: FakeConfig, **overrides: Any
) -> Settings:
    """Settings for a test relay: fake vendor credentials and URLs, loopback subscribers, fast retries."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{db}",
        "secret_key": TEST_SECRET_KEY,
        "public_url": public_url,
        "api_token": API_TOKEN,
        "allow_private_targets": True,
        "useapi_token": fake.useapi_token,
        "useapi_base_url": vendors_url,
        "apiframe_api_key": fake.apiframe_api_key,
        "apiframe_base_url": vendors_url,
        "apixo_api_key": fake.apixo_api_key,
        "apixo_base_url": vendors_url,
        "artnex_api_key": fake.artnex_api_key,
        "artnex_base_url": vendors_url,
        "retry_schedule": (0.05, 0.1, 0.2),
        "retry_jitter": 0.0,
        "poll_interval": 0.02,
        "delivery_timeout": 2.0,
        **overrides,
    }
    return Settings(**values)


@contextmanager
def relay_env(tmp_path: Path, fake: FakeConfig | None = None, **overrides: Any) -> Iterator[RelayEnv]:
    """Start fake vendors, a subscriber and a relay (with its dispatcher, unless ``run_worker=False``
    is among ``overrides``: then nothing is delivered, polled or retried) on loopback. The other
    ``overrides`` are settings.

    The relay listens on plain HTTP, so a ``fake`` given here needs ``apixo_allow_http=True`` for
    APIXO callback jobs (the default one has it).
    """
    run_worker = bool(overrides.pop("run_worker", True))
    fake = fake or FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True)
    sub_app, sub_log = create_subscriber()
    vendors_app = create_fake_vendors(fake)
    db = tmp_path / "relay.db"
    with (
        database_url_for(tmp_path) as database_url,
        serve_in_thread(vendors_app) as vendors,
        serve_in_thread(sub_app) as subscriber,
    ):
        apps: list[Any] = []
        settings_overrides = {"database_url": database_url, **overrides}

        def factory(url: str) -> Any:
            settings = relay_settings(db, url, vendors.url, fake, **settings_overrides)
            apps.append(create_app(settings, run_worker=run_worker))
            return apps[-1]

        with (
            serve_factory(factory) as relay,
            httpx.Client(
                base_url=relay.url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30
            ) as client,
        ):
            yield RelayEnv(
                relay,
                vendors,
                subscriber,
                sub_log,
                fake_state_of(vendors_app),
                client,
                db,
                apps,
                database_url,
            )
