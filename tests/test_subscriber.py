"""Tests for receiver.fakes.subscriber: a real subscriber server that records and misbehaves on demand."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from fixtures.harness import serve_in_thread, wait_until
from receiver.fakes.subscriber import Behaviour, SubscriberLog, create_subscriber

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass
class Sub:
    url: str
    log: SubscriberLog
    client: httpx.Client


@pytest.fixture
def sub() -> Iterator[Sub]:
    app, log = create_subscriber(lambda body, headers: Webhook(SECRET).verify(body, dict(headers)))
    with serve_in_thread(app, graceful_timeout=1) as server, httpx.Client(base_url=server.url) as client:
        yield Sub(server.url, log, client)


def _signed(event_id: str, payload: dict[str, object], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(event_id, now, body.decode())
    headers = {
        "Webhook-Id": event_id,
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": signature,
        "Content-Type": "application/json",
    }
    return body, headers


def test_records_a_verified_delivery(sub: Sub) -> None:
    """A correctly signed delivery is recorded with lower-cased headers, raw body, JSON and verified=True."""
    body, headers = _signed("evt_1", {"id": "evt_1", "type": "job.succeeded"})
    response = sub.client.post("/hooks/a", content=body, headers=headers)
    assert response.status_code == 200
    [delivery] = sub.log.deliveries("a")
    assert delivery.body == body
    assert delivery.json == {"id": "evt_1", "type": "job.succeeded"}
    assert delivery.headers["webhook-id"] == "evt_1"
    assert delivery.verified is True and delivery.verify_error is None
    assert delivery.status == 200 and delivery.event_id == "evt_1"


def test_bad_signature_is_recorded_as_unverified(sub: Sub) -> None:
    """A delivery signed with another secret is still answered but recorded with verified=False."""
    other = "whsec_" + base64.b64encode(b"x" * 24).decode()
    body, headers = _signed("evt_2", {"id": "evt_2"}, secret=other)
    sub.client.post("/hooks/a", content=body, headers=headers)
    [delivery] = sub.log.deliveries()
    assert delivery.verified is False
    assert delivery.verify_error is not None and "WebhookVerificationError" in delivery.verify_error


def test_groups_deliveries_by_event_id_across_hooks(sub: Sub) -> None:
    """by_event_id groups repeated deliveries of one event, and names separate subscriber URLs."""
    for name, event in [("a", "evt_x"), ("a", "evt_x"), ("b", "evt_y")]:
        body, headers = _signed(event, {"id": event})
        sub.client.post(f"/hooks/{name}", content=body, headers=headers)
    grouped = sub.log.by_event_id()
    assert {k: len(v) for k, v in grouped.items()} == {"evt_x": 2, "evt_y": 1}
    assert sub.log.count("a") == 2 and sub.log.count("b") == 1
    assert sub.log.by_event_id("b").keys() == {"evt_y"}


def test_fails_first_k_requests_then_succeeds(sub: Sub) -> None:
    """Behaviour.fail(503, times=2) answers 503 twice and then 200, recording each answer."""
    sub.log.program(Behaviour.fail(503, times=2), name="a")
    codes = [sub.client.post("/hooks/a", content=b"{}").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert [d.status for d in sub.log.deliveries("a")] == [503, 503, 200]


def test_named_behaviour_overrides_the_global_one(sub: Sub) -> None:
    """A per-name behaviour wins over the global one, which applies to every other name."""
    sub.log.program(Behaviour.gone())
    sub.log.program(Behaviour.fail(500, times=None), name="special")
    assert sub.client.post("/hooks/any", content=b"{}").status_code == 410
    assert sub.client.post("/hooks/special", content=b"{}").status_code == 500
    sub.log.reset_behaviour()
    assert sub.client.post("/hooks/any", content=b"{}").status_code == 200


def test_rate_limit_and_redirect(sub: Sub) -> None:
    """rate_limited answers 429 with Retry-After once; redirect answers 301 with Location every time."""
    sub.log.program(Behaviour.rate_limited(retry_after=7), name="r")
    first = sub.client.post("/hooks/r", content=b"{}")
    assert (first.status_code, first.headers["retry-after"]) == (429, "7")
    assert sub.client.post("/hooks/r", content=b"{}").status_code == 200
    sub.log.program(Behaviour.redirect("/hooks/elsewhere"), name="m")
    moved = sub.client.post("/hooks/m", content=b"{}")
    assert (moved.status_code, moved.headers["location"]) == (301, "/hooks/elsewhere")
    assert sub.log.count("elsewhere") == 0


def test_hang_outlasts_a_client_timeout_but_is_recorded(sub: Sub) -> None:
    """A hanging hook makes a short-timeout client give up, while the attempt is recorded on arrival."""
    sub.log.program(Behaviour.hang_for(0.5, times=1), name="h")
    with pytest.raises(httpx.ReadTimeout):
        sub.client.post("/hooks/h", content=b"{}", timeout=0.1)
    assert sub.log.count("h") == 1
    assert sub.client.post("/hooks/h", content=b"{}", timeout=2).status_code == 200


def test_wait_for_and_listing_endpoint(sub: Sub) -> None:
    """wait_for returns once deliveries arrive, and GET /_subscriber/deliveries lists them as JSON."""
    sub.client.post("/hooks/z", content=b'{"id": "evt_z"}')
    [delivery] = sub.log.wait_for(1, name="z", timeout=2)
    assert delivery.event_id == "evt_z"
    rows = sub.client.get("/_subscriber/deliveries", params={"name": "z"}).json()
    assert [(r["name"], r["event_id"], r["body"]) for r in rows] == [("z", "evt_z", '{"id": "evt_z"}')]
    with pytest.raises(AssertionError, match="expected 2 deliveries to z"):
        sub.log.wait_for(2, name="z", timeout=0.05)
    sub.log.clear()
    wait_until(lambda: sub.log.count() == 0, timeout=1)
