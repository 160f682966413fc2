"""End to end on loopback: real relay (uvicorn), fake vendors, a real subscriber verifying with the
``standardwebhooks`` reference library."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch.model import event_id
from fixtures.harness import wait_until
from receiver.fakes import (
    DREAMINA_SOURCE_JOB,
    LTX_SOURCE_JOB,
    SOURCE_IMAGE,
    source_image,
)
from receiver.fakes.subscriber import Behaviour
from tests.relay_env import RelayEnv, relay_env

NORMAL_JOBS: dict[str, dict[str, Any]] = {
    "ltxstudio": {"jobId": LTX_SOURCE_JOB},
    "dreamina": {"jobid": DREAMINA_SOURCE_JOB},
    "apiframe": {"model": "topaz-image-upscale", "topazUpscaleParams": {"image": SOURCE_IMAGE}},
    "apixo": {"input": {"image_urls": [SOURCE_IMAGE]}},
    "artnex": {"image": SOURCE_IMAGE},
}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[RelayEnv]:
    with relay_env(tmp_path) as running:
        yield running


@pytest.mark.parametrize("vendor", sorted(NORMAL_JOBS))
def test_each_vendor_end_to_end_delivers_a_verified_success(env: RelayEnv, vendor: str) -> None:
    """A job at each vendor succeeds and the subscriber gets one verified job.succeeded with its output."""
    env.subscribe()
    job = env.submit(vendor, NORMAL_JOBS[vendor], reference="order-42")
    job = env.wait_status(job["id"], "succeeded")
    expected_id = event_id(job["id"], "job.succeeded")
    wait_until(lambda: expected_id in env.sub_log.by_event_id(), message="job.succeeded not delivered")
    (delivery,) = env.sub_log.by_event_id()[expected_id]
    assert delivery.verified is True, delivery.verify_error
    assert delivery.headers["webhook-id"] == delivery.headers["idempotency-key"] == expected_id
    assert delivery.headers["user-agent"].startswith("upscale-relay/")
    body = delivery.json
    assert body["type"] == "job.succeeded" and body["id"] == expected_id
    assert body["data"]["vendor"] == vendor and body["data"]["reference"] == "order-42"
    assert body["data"]["outputs"] and body["data"]["outputs"][0]["url"].startswith("https://")
    assert body["data"]["vendor_job_id"] == job["vendor_job_id"] is not None
    if vendor != "artnex":
        assert any(i["kind"] == "callback" and i["verdict"] == "applied" for i in job["inbound"])


def test_failing_job_delivers_job_failed_with_vendor_code(env: RelayEnv) -> None:
    """An APIXO task that fails ends failed, with the vendor's failCode, delivered as job.failed."""
    env.subscribe()
    job = env.submit("apixo", {"input": {"image_urls": [source_image("fail")]}})
    job = env.wait_status(job["id"], "failed")
    assert job["error"]["code"] and job["error"]["message"]
    wait_until(lambda: event_id(job["id"], "job.failed") in env.sub_log.by_event_id())


def test_duplicate_callbacks_give_one_event(env: RelayEnv) -> None:
    """A vendor sending the terminal callback twice yields one stored event and one delivery."""
    env.subscribe()
    job = env.submit("apixo", {"input": {"image_urls": [source_image("dup")]}})
    wait_until(lambda: len([i for i in env.job(job["id"])["inbound"] if i["kind"] == "callback"]) == 2)
    full = env.job(job["id"])
    assert sorted(i["verdict"] for i in full["inbound"]) == ["applied", "duplicate"]
    assert [e["type"] for e in full["events"]] == ["job.queued", "job.succeeded"]
    eid = event_id(job["id"], "job.succeeded")
    wait_until(lambda: eid in env.sub_log.by_event_id())
    assert len(env.sub_log.by_event_id()[eid]) == 1


def test_out_of_order_callbacks_never_move_state_backwards(env: RelayEnv) -> None:
    """A running callback after the terminal one is recorded as stale and emits nothing."""
    env.subscribe(event_types=["job.running", "job.progress", "job.succeeded"])
    job = env.submit("ltxstudio", {"jobId": LTX_SOURCE_JOB.replace("demo@", "demo+ooo@")})
    wait_until(
        lambda: any(i["verdict"] == "stale" for i in env.job(job["id"])["inbound"]),
        message="no stale callback",
    )
    full = env.job(job["id"])
    assert full["status"] == "succeeded"
    assert [e["type"] for e in full["events"]] == ["job.queued", "job.succeeded"]


def test_unknown_token_is_404_and_stores_nothing(env: RelayEnv) -> None:
    """A callback to an unknown token is refused with 404 and leaves no inbound record."""
    response = httpx.post(f"{env.relay.url}/v1/callbacks/apixo/not-a-token", content=b'{"code":200}')
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert env.ok(env.client.get("/v1/inbound"), 200)["data"] == []


def test_unparseable_callback_is_stored_and_answered_422(env: RelayEnv) -> None:
    """Garbage on a valid callback URL is kept with its error and answered 422; the job is untouched."""
    job = env.submit("apixo", {"input": {"image_urls": [source_image("lost")]}})
    url = env.callback_url("generateTask")
    response = httpx.post(url, content=b'{"code": 200, "data": {"taskId": "task_1", "state": ["success"]}}')
    assert response.status_code == 422
    assert "data.state" in response.json()["error"]["message"]
    stored = env.ok(env.client.get("/v1/inbound", params={"job_id": job["id"]}), 200)["data"]
    assert stored[0]["verdict"] == "invalid" and "data.state" in stored[0]["error"]
    assert env.job(job["id"])["status"] == "queued"


def test_oversized_callback_is_413(env: RelayEnv) -> None:
    """A callback body over the configured limit is refused with 413."""
    env.submit("apixo", {"input": {"image_urls": [source_image("lost")]}})
    response = httpx.post(env.callback_url("generateTask"), content=b"x" * (1_048_576 + 1))
    assert response.status_code == 413


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dGVzdA==", "bearer test-admin-token"])
def test_admin_api_requires_the_token(env: RelayEnv, header: str | None) -> None:
    """Missing, wrong or malformed admin credentials get 401 on every admin path."""
    headers = {"Authorization": header} if header else {}
    for path in ("/v1/jobs", "/v1/subscribers", "/v1/events", "/v1/deliveries"):
        response = httpx.get(f"{env.relay.url}{path}", headers=headers)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"


def test_reserved_callback_field_is_refused_naming_it(env: RelayEnv) -> None:
    """A client sending the relay's own callback field gets 422 naming it, and no vendor is called."""
    before = len(env.fake.submits())
    response = env.client.post(
        "/v1/jobs",
        json={"vendor": "dreamina", "params": {"jobid": DREAMINA_SOURCE_JOB, "replyUrl": "https://x"}},
    )
    assert response.status_code == 422
    assert "params.replyUrl" in response.json()["error"]["message"]
    assert len(env.fake.submits()) == before


def test_bad_params_and_unknown_vendor(env: RelayEnv) -> None:
    """Out-of-range params are a 422 naming the field; an unknown vendor is a 404."""
    bad = env.client.post("/v1/jobs", json={"vendor": "dreamina", "params": {"jobid": "j1", "imageIndex": 4}})
    assert bad.status_code == 422 and "imageIndex" in bad.json()["error"]["message"]
    unknown = env.client.post("/v1/jobs", json={"vendor": "nope", "params": {}})
    assert unknown.status_code == 404
    malformed = env.client.post("/v1/jobs", content=b"{not json")
    assert malformed.status_code == 422


def test_subscriber_500_twice_then_200_is_retried(env: RelayEnv) -> None:
    """A subscriber answering 500 twice then 200 gets the event on the third attempt, all recorded."""
    sub = env.subscribe()
    env.sub_log.program(Behaviour.fail(500, times=2), name="main")
    job = env.submit("artnex", {"image": SOURCE_IMAGE})
    eid = event_id(job["id"], "job.succeeded")

    def delivered() -> list[dict[str, Any]]:
        rows = env.ok(env.client.get("/v1/deliveries", params={"event_id": eid}), 200)["data"]
        return [r for r in rows if r["status"] == "succeeded"]

    wait_until(lambda: delivered(), message="never succeeded")
    detail = env.ok(env.client.get(f"/v1/deliveries/{delivered()[0]['id']}"), 200)
    assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 200]
    assert detail["subscriber_id"] == sub["id"] and detail["attempts"] == 3
    assert [d.status for d in env.sub_log.by_event_id()[eid]] == [500, 500, 200]


def test_dead_subscriber_ends_dead_and_retry_revives(env: RelayEnv) -> None:
    """After the whole schedule fails the delivery is dead; retry after recovery delivers it."""
    env.subscribe()
    env.sub_log.program(Behaviour.fail(503, times=None), name="main")
    job = env.submit("artnex", {"image": SOURCE_IMAGE})
    eid = event_id(job["id"], "job.succeeded")

    def rows(status: str) -> list[dict[str, Any]]:
        found = env.ok(env.client.get("/v1/deliveries", params={"event_id": eid, "status": status}), 200)[
            "data"
        ]
        return list(found)

    wait_until(lambda: rows("dead"), message="delivery never went dead")
    dead = rows("dead")[0]
    assert dead["attempts"] == 4  # first try + 3 retries
    env.sub_log.reset_behaviour("main")
    env.ok(env.client.post(f"/v1/deliveries/{dead['id']}/retry"), 202)
    wait_until(lambda: rows("succeeded"), message="retry did not deliver")
    assert env.sub_log.by_event_id()[eid][-1].status == 200


def test_replay_delivers_the_same_event_id_again(env: RelayEnv) -> None:
    """Replaying an event sends the identical body with the same webhook-id."""
    env.subscribe()
    job = env.submit("artnex", {"image": SOURCE_IMAGE})
    eid = event_id(job["id"], "job.succeeded")
    wait_until(lambda: eid in env.sub_log.by_event_id())
    replay = env.ok(env.client.post(f"/v1/events/{eid}/replay", json={}), 202)
    assert [d["generation"] for d in replay["data"]] == [1]
    wait_until(lambda: len(env.sub_log.by_event_id()[eid]) == 2)
    first, second = env.sub_log.by_event_id()[eid]
    assert first.body == second.body and second.verified is True
    assert second.headers["webhook-id"] == eid


def test_subscriber_crud_and_secret_shown_once(env: RelayEnv) -> None:
    """The secret appears only at creation; patch and delete work; bad input is refused clearly."""
    created = env.subscribe(description="crm")
    assert created["secret"].startswith("whsec_")
    got = env.ok(env.client.get(f"/v1/subscribers/{created['id']}"), 200)
    assert "secret" not in got and got["event_types"] == ["job.succeeded", "job.failed"]
    patched = env.ok(env.client.patch(f"/v1/subscribers/{created['id']}", json={"enabled": False}), 200)
    assert patched["enabled"] is False
    listed = env.ok(env.client.get("/v1/subscribers"), 200)["data"]
    assert all("secret" not in s for s in listed)
    bad_type = env.client.post(
        "/v1/subscribers", json={"url": "https://example.com/h", "event_types": ["job.x"]}
    )
    assert bad_type.status_code == 422
    bad_scheme = env.client.post("/v1/subscribers", json={"url": "ftp://example.com/h"})
    assert bad_scheme.status_code == 422
    assert env.client.delete(f"/v1/subscribers/{created['id']}").status_code == 204
    assert env.client.get(f"/v1/subscribers/{created['id']}").status_code == 404


def test_events_api_filters_and_reprocess(env: RelayEnv) -> None:
    """Events list by job and type; reprocessing a stored callback re-runs it as a duplicate."""
    job = env.submit("apixo", {"input": {"image_urls": [SOURCE_IMAGE]}})
    env.wait_status(job["id"], "succeeded")
    events = env.ok(env.client.get("/v1/events", params={"job_id": job["id"], "type": "job.succeeded"}), 200)[
        "data"
    ]
    assert [e["id"] for e in events] == [event_id(job["id"], "job.succeeded")]
    assert (
        env.ok(env.client.get(f"/v1/events/{events[0]['id']}"), 200)["payload"]["data"]["job_id"] == job["id"]
    )
    callback = next(i for i in env.job(job["id"])["inbound"] if i["kind"] == "callback")
    again = env.ok(env.client.post(f"/v1/inbound/{callback['id']}/reprocess"), 200)
    assert again["kind"] == "reprocess" and again["verdict"] == "duplicate"
    assert json.loads(again["body"]) == json.loads(callback["body"])
    assert env.client.get("/v1/events", params={"since": "yesterday"}).status_code == 422


@pytest.mark.parametrize(
    "headers",
    [{"x-big": "a" * 40_000}, {f"x-h{i}": "a" for i in range(150)}],
    ids=["oversized", "too-many"],
)
def test_oversized_or_too_many_headers_get_431(env: RelayEnv, headers: dict[str, str]) -> None:
    """Header floods are refused with 431 before any handler (callbacks included) runs."""
    response = httpx.post(f"{env.relay.url}/v1/callbacks/apixo/whatever", headers=headers, content=b"{}")
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"
    assert env.client.get("/healthz").status_code == 200


def test_artnex_data_uri_of_several_mb_is_accepted(env: RelayEnv) -> None:
    """Artnex takes images up to 10 MB as base64 data URIs: a 4 MB one (a ~5.6 MB request) goes through
    the admin API to the vendor and the job succeeds, though it is far over the 1 MiB callback limit."""
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\x00" * 4_000_000).decode()
    job = env.submit("artnex", {"image": image, "scale": 2})
    assert job["status"] == "succeeded", (job, env.job(job["id"]))
    (submit,) = env.fake.submits("artnex")
    assert submit.body["image"] == image and submit.status == 200


def _chunks(total: int, size: int = 65_536) -> Iterator[bytes]:
    yield b'{"vendor": "artnex", "params": {"image": "'
    for _ in range(total // size):
        yield b"A" * size


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_admin_body_over_the_limit_is_413_and_creates_nothing(env: RelayEnv, streamed: bool) -> None:
    """A job request over RELAY_MAX_API_BODY_BYTES (16 MiB) is refused with 413, whether its
    Content-Length says so up front or it streams without one, and no job or vendor call results."""
    before = len(env.fake.submits())
    total = 17 * 1_048_576
    content: bytes | Iterator[bytes] = _chunks(total) if streamed else b"".join(_chunks(total))
    response = env.client.post("/v1/jobs", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert env.ok(env.client.get("/v1/jobs"), 200)["data"] == []
    assert len(env.fake.submits()) == before


@pytest.mark.parametrize("other", ["dreamina", "apiframe", "artnex", "APIXO", "nope"])
def test_a_token_only_works_under_its_own_vendor(env: RelayEnv, other: str) -> None:
    """A job's callback token posted under another vendor's path (or Artnex's, which has no callbacks,
    or an unknown or differently-cased vendor) is a 404 that stores nothing and leaves the job as is."""
    job = env.submit("apixo", {"input": {"image_urls": [source_image("lost")]}})
    token = env.callback_url("generateTask").rsplit("/", 1)[1]
    before = env.ok(env.client.get("/v1/inbound"), 200)["data"]
    response = httpx.post(f"{env.relay.url}/v1/callbacks/{other}/{token}", content=b'{"code": 200}')
    assert response.status_code == 404, response.text
    assert env.ok(env.client.get("/v1/inbound"), 200)["data"] == before
    assert env.job(job["id"])["status"] == "queued"
