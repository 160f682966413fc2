"""The polling fallback and callback confirmation, end to end on loopback.

A job whose callback never comes is found at the vendor's status endpoint with the same event id a
callback would have produced; a job that never finishes fails with ``timeout``; a job the vendor does
not know fails with ``vendor_not_found``; stored poll times survive a relay restart; and with
``confirm_unsigned`` a terminal callback of an unsigned vendor is checked at the vendor first.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from dispatch.model import EVENT_TYPES, event_id
from fixtures.harness import serve_factory, serve_in_thread, wait_until
from receiver.app import create_app
from receiver.fakes import (
    FakeConfig,
    apiframe_signature,
    create_fake_vendors,
    dreamina_source_job,
    fake_state_of,
    ltx_source_job,
    source_image,
)
from receiver.fakes.subscriber import Delivery, SubscriberLog, create_subscriber
from receiver.poller import first_poll_at, next_interval
from receiver.settings import Settings
from tests.databases import database_url_for, query
from tests.relay_env import API_TOKEN, RelayEnv, relay_env, relay_settings

ASYNC_VENDORS = ("ltxstudio", "dreamina", "apiframe", "apixo")
FAKE_NAME = {"ltxstudio": "ltx"}
HOOK = "all"
FAKE = FakeConfig(callback_delay=0.05, apixo_retry_scale=0.001, apixo_allow_http=True)


def fast_polls(after: float, every: float = 0.1) -> dict[str, dict[str, float]]:
    return {
        "poll_after": dict.fromkeys(ASYNC_VENDORS, after),
        "poll_every": dict.fromkeys(ASYNC_VENDORS, every),
    }


def params_for(vendor: str, marker: str) -> dict[str, Any]:
    """Unique upscale params for ``vendor`` whose input carries ``marker``."""
    if vendor == "ltxstudio":
        return {"jobId": ltx_source_job(marker)}
    if vendor == "dreamina":
        return {"jobid": dreamina_source_job(marker)}
    image = source_image(f"{marker} {uuid.uuid4().hex[:8]}")
    if vendor == "apiframe":
        return {"model": "topaz-image-upscale", "topazUpscaleParams": {"image": image}}
    return {"input": {"image_urls": [image]}}


def deliveries_for(env: RelayEnv | SubscriberLog, job_id: str) -> list[Delivery]:
    log = env if isinstance(env, SubscriberLog) else env.sub_log
    return [
        d
        for d in log.deliveries(HOOK)
        if isinstance(d.json, dict) and d.json.get("data", {}).get("job_id") == job_id
    ]


def received(env: RelayEnv | SubscriberLog, job_id: str, count: int) -> list[str]:
    """Wait for ``count`` deliveries of the job; assert each is verified and unique; return the event
    types ordered by sequence (``job.progress@N`` for progress)."""
    wait_until(lambda: len(deliveries_for(env, job_id)) >= count, message=f"{job_id}: fewer than {count}")
    got = deliveries_for(env, job_id)
    assert len({d.event_id for d in got}) == len(got), "an event was delivered twice"
    assert all(d.verified is True for d in got), [d.verify_error for d in got]
    got.sort(key=lambda d: d.json["data"]["sequence"])
    assert [d.json["data"]["sequence"] for d in got] == list(range(1, len(got) + 1))
    return [
        f"job.progress@{d.json['data']['progress']}" if d.json["type"] == "job.progress" else d.json["type"]
        for d in got
    ]


def fake_job(env: RelayEnv, vendor: str, vendor_job_id: str) -> dict[str, Any]:
    (found,) = [j for j in env.fake.jobs(FAKE_NAME.get(vendor, vendor)) if j["job_id"] == vendor_job_id]
    return found


def terminal_callback(env: RelayEnv, vendor: str, record: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The callback the vendor would have sent for the terminal ``record`` of its status endpoint."""
    if vendor == "apixo":
        body = {"code": 200, "message": "success", "data": record}
    elif vendor == "apiframe":
        body = {
            "event": "completed",
            "jobId": record["id"],
            "status": record["status"],
            "progress": 100,
            "result": record["result"],
            "model": record["model"],
            "completedAt": record["completedAt"],
        }
    else:  # useapi posts the job record itself
        body = record
    raw = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if vendor == "apiframe":
        headers["X-Webhook-Signature"] = apiframe_signature(env.fake.config.apiframe_api_key, raw)
    return raw, headers


@pytest.fixture(scope="module")
def poll_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """First poll 0.2 s after submit, then every 0.1 s."""
    with relay_env(tmp_path_factory.mktemp("poll"), fake=FAKE, **fast_polls(0.2)) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        yield env


# -- cadence -------------------------------------------------------------------------------------
def poll_times(settings: Settings, vendor: str, count: int) -> list[float]:
    """Seconds after the submit of a job's first ``count`` polls when no answer ends it."""
    at = (first_poll_at(settings, vendor, 0.0) or 0) / 1000
    times = [at]
    for done in range(1, count):
        at += next_interval(settings, vendor, done)
        times.append(round(at, 3))
    return times


def test_apixo_is_polled_at_its_seeds_cadence() -> None:
    """APIXO (seed 003): first poll 10-15 s after task creation, then every 5-10 s (10 s or longer for
    8k) while the job runs its typical time, then backing off, never beyond a minute apart."""
    times = poll_times(Settings(), "apixo", 14)
    assert 10 <= times[0] <= 15
    steps = [b - a for a, b in itertools.pairwise(times)]
    running = [step for at, step in zip(times, steps, strict=False) if at < 60]
    assert len(running) >= 4 and all(step == 10 for step in running)  # 5-10 s, and >= 10 s for 8k
    assert steps[len(running)] > 10 and max(steps) == 60 and steps == sorted(steps)


def test_dreamina_is_polled_every_ten_seconds_as_its_seed_does() -> None:
    """Dreamina (seed 001's example: ``setTimeout(r, 10000)``): polled 10 s after the submit and every
    10 s while the job runs its typical time, then backing off up to a minute."""
    times = poll_times(Settings(), "dreamina", 12)
    assert times[:6] == [10, 20, 30, 40, 50, 60]
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert steps[5] > 10 and max(steps) == 60


def test_poll_cadence_is_overridable_per_vendor() -> None:
    """RELAY_POLL_AFTER / RELAY_POLL_EVERY replace one vendor's first poll and interval, not another's."""
    settings = Settings(poll_after={"apixo": 30}, poll_every={"apixo": 20})
    times = poll_times(settings, "apixo", 3)
    assert times == [30, 50, 70]
    assert poll_times(settings, "dreamina", 2) == [10, 20]


# -- lost callbacks ------------------------------------------------------------------------------
@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_lost_callback_is_found_by_polling_with_the_callback_event_id(
    poll_env: RelayEnv, vendor: str
) -> None:
    """Polling finds a job whose callbacks never come, and its late callback is then a no-op duplicate."""
    env = poll_env
    job = env.submit(vendor, params_for(vendor, "lost"))
    env.wait_status(job["id"], "succeeded")
    wait_until(lambda: env.job(job["id"])["polls"] >= 1)  # the poll is counted just after its outcome
    done = env.job(job["id"])
    succeeded = event_id(job["id"], "job.succeeded")
    polls = [i for i in done["inbound"] if i["kind"] == "poll"]
    assert polls[0]["verdict"] == "applied" and succeeded in polls[0]["event_ids"]
    assert not [i for i in done["inbound"] if i["kind"] == "callback"]
    assert done["polls"] >= 1 and done["next_poll_at"] is None
    assert done["outputs"] and done["outputs"][0]["url"].startswith("https://")

    record = fake_job(env, vendor, done["vendor_job_id"])
    assert record["terminal"] and env.fake.callbacks(job_id=done["vendor_job_id"]) == []
    body, headers = terminal_callback(env, vendor, record["record"])
    late = httpx.post(record["callback_url"], content=body, headers=headers)
    assert late.status_code == 200, late.text
    assert (late.json()["verdict"], late.json()["event_ids"]) == ("duplicate", [])

    least = {"dreamina": ["job.queued", "job.running", "job.succeeded"]}.get(
        vendor, ["job.queued", "job.succeeded"]
    )
    wait_until(
        lambda: succeeded in {d.event_id for d in deliveries_for(env, job["id"])},
        message=f"{job['id']}: job.succeeded was not delivered",
    )
    seen = received(env, job["id"], len(least))
    # the submit and the outcome, plus whichever of the vendor's steps a poll happened to catch on
    # the way (a poll that lands while the fake's job still runs finds it running), in their order
    assert seen[:1] == least[:1] and seen[-1:] == least[-1:] and set(least) <= set(seen), seen
    assert all(s == "job.running" or s.startswith("job.progress@") for s in seen[1:-1]), seen
    assert [d.event_id for d in deliveries_for(env, job["id"]) if d.json["type"] == "job.succeeded"] == [
        succeeded
    ]
    assert [e["id"] for e in env.job(job["id"])["events"] if e["type"] == "job.succeeded"] == [succeeded]


def test_vendor_not_found_when_polled_fails_the_job(poll_env: RelayEnv) -> None:
    """A source job whose vendor id the vendor does not know fails with vendor_not_found at the first poll."""
    env = poll_env
    source = env.ok(env.client.post("/v1/sources", json={"vendor": "apixo"}), 201)
    task = f"task_unknown{uuid.uuid4().hex[:8]}"
    body = {"code": 200, "message": "success", "data": {"taskId": task, "state": "processing"}}
    answer = httpx.post(source["callback_url"], json=body)
    assert answer.status_code == 200 and answer.json()["verdict"] == "applied"
    (job,) = [j for j in env.ok(env.client.get("/v1/jobs"), 200)["data"] if j["vendor_job_id"] == task]
    done = env.wait_status(job["id"], "failed")
    assert done["error"]["code"] == "vendor_not_found"
    assert [i["kind"] for i in done["inbound"] if i["verdict"] == "applied"] == ["poll", "callback"]
    # created on first sight by a running callback: no job.queued, the vendor's "gone" ends it
    assert received(env, job["id"], 2) == ["job.running", "job.failed"]


# -- job timeout -------------------------------------------------------------------------------
def test_job_that_never_finishes_fails_with_timeout(tmp_path: Path) -> None:
    """A job still running at the vendor when job_timeout passes fails with code timeout after polling."""
    # steps far beyond the test
    slow_vendor = FakeConfig(callback_delay=30.0, apixo_retry_scale=0.001, apixo_allow_http=True)
    with relay_env(tmp_path, fake=slow_vendor, job_timeout=1.0, **fast_polls(0.2)) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        started = time.monotonic()
        jobs = {v: env.submit(v, params_for(v, "lost"))["id"] for v in ASYNC_VENDORS}
        for vendor, job_id in jobs.items():
            done = env.wait_status(job_id, "failed")
            assert done["error"] == {"code": "timeout", "message": "no result within 1 s"}, vendor
            assert done["polls"] >= 2, vendor  # polled until the deadline, not just once
            assert not fake_job(env, vendor, done["vendor_job_id"])["terminal"]
            (ended,) = [i for i in done["inbound"] if event_id(job_id, "job.failed") in i["event_ids"]]
            assert (ended["kind"], ended["verdict"]) == ("poll", "applied")
        assert time.monotonic() - started >= 1.0
        expected = {
            "ltxstudio": ["job.queued", "job.running", "job.progress@0", "job.failed"],  # active, progress 0
            "dreamina": ["job.queued", "job.running", "job.failed"],  # created (running) record
            "apiframe": ["job.queued", "job.failed"],  # QUEUED throughout
            "apixo": ["job.queued", "job.running", "job.failed"],  # processing record
        }
        for vendor, job_id in jobs.items():
            assert received(env, job_id, len(expected[vendor])) == expected[vendor], vendor
            assert deliveries_for(env, job_id)[-1].event_id == event_id(job_id, "job.failed")


# -- restart -------------------------------------------------------------------------------------
def _stored_poll(database_url: str, job_id: str) -> tuple[str, int | None, int]:
    (row,) = query(database_url, "SELECT status, poll_at, poll_attempts FROM jobs WHERE id = ?", (job_id,))
    return row[0], row[1], row[2]


def test_polling_survives_a_restart(tmp_path: Path) -> None:
    """A poll time stored by relay A is honoured by relay B on the same database after A stopped."""
    fake = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True)
    sub_app, sub_log = create_subscriber()
    vendors_app = create_fake_vendors(fake)
    db = tmp_path / "relay.db"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}

    def ok(response: httpx.Response, status: int) -> Any:
        assert response.status_code == status, response.text
        return response.json()

    with (
        database_url_for(tmp_path) as database_url,
        serve_in_thread(vendors_app) as vendors,
        serve_in_thread(sub_app) as subscriber,
    ):

        def relay(**overrides: Any) -> Any:
            return serve_factory(
                lambda url: create_app(
                    relay_settings(db, url, vendors.url, fake, database_url=database_url, **overrides)
                )
            )

        relay_a = relay(poll_after={"apixo": 2.0})
        with relay_a, httpx.Client(base_url=relay_a.url, headers=auth, timeout=30) as client:
            hook = {"url": f"{subscriber.url}/hooks/{HOOK}", "event_types": list(EVENT_TYPES)}
            webhook = Webhook(ok(client.post("/v1/subscribers", json=hook), 201)["secret"])
            sub_log.set_verifier(lambda raw, headers: webhook.verify(raw, dict(headers)), name=HOOK)
            body = {"vendor": "apixo", "params": params_for("apixo", "lost")}
            job = ok(client.post("/v1/jobs", json=body), 202)
            assert received(sub_log, job["id"], 1) == ["job.queued"]
        stopped_at = time.time()
        status, poll_at, polls = _stored_poll(database_url, job["id"])
        assert (status, polls) == ("queued", 0) and poll_at is not None
        assert poll_at / 1000 > stopped_at, "relay A stopped too late to prove anything"
        assert fake_state_of(vendors_app).job("apixo", job["vendor_job_id"]) is not None

        relay_b = relay(poll_after={"apixo": 0.05}, poll_every={"apixo": 0.05})
        with relay_b, httpx.Client(base_url=relay_b.url, headers=auth, timeout=30) as client:
            wait_until(lambda: ok(client.get(f"/v1/jobs/{job['id']}"), 200)["status"] == "succeeded")
            done = ok(client.get(f"/v1/jobs/{job['id']}"), 200)
            (poll,) = [i for i in done["inbound"] if i["kind"] == "poll"]
            polled_at = datetime.fromisoformat(poll["received_at"].replace("Z", "+00:00")).timestamp()
            assert polled_at >= max(stopped_at, poll_at / 1000 - 0.01)  # B, at A's stored time
            assert received(sub_log, job["id"], 2) == ["job.queued", "job.succeeded"]
            assert deliveries_for(sub_log, job["id"])[-1].event_id == event_id(job["id"], "job.succeeded")


# -- confirm unsigned callbacks -----------------------------------------------------------------
@pytest.fixture(scope="module")
def confirm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """``confirm_unsigned=True``; default poll times (a minute), so only callbacks drive jobs."""
    with relay_env(tmp_path_factory.mktemp("confirm"), fake=FAKE, confirm_unsigned=True) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        yield env


@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_confirm_unsigned_checks_terminal_callbacks_at_the_vendor(confirm_env: RelayEnv, vendor: str) -> None:
    """With confirm_unsigned an unsigned terminal callback is confirmed at the vendor; Apiframe's signed one is not."""
    env = confirm_env
    job = env.submit(vendor, params_for(vendor, ""))
    done = env.wait_status(job["id"], "succeeded")
    succeeded = event_id(job["id"], "job.succeeded")
    (terminal,) = [i for i in done["inbound"] if i["kind"] == "callback" and succeeded in i["event_ids"]]
    if vendor == "apiframe":
        assert terminal["error"] is None
    else:
        assert terminal["error"] == f"confirmed at {vendor}: callback said succeeded, vendor says succeeded"
    # every event the job has (2 or 3 by vendor), so the wait cannot end before job.succeeded arrived
    assert received(env, job["id"], len(done["events"]))[-1] == "job.succeeded"


def test_confirm_unsigned_uses_the_vendors_answer(confirm_env: RelayEnv) -> None:
    """A success callback for a task the vendor reports failed makes the job fail with the vendor's code."""
    env = confirm_env
    job = env.submit("apixo", params_for("apixo", "fail lost"))
    task = env.job(job["id"])["vendor_job_id"]
    wait_until(lambda: fake_job(env, "apixo", task)["terminal"], message="fake task never ended")
    result = json.dumps({"resultUrls": ["https://evil.example/x.jpg"]})
    forged = {
        "code": 200,
        "message": "success",
        "data": {"taskId": task, "state": "success", "resultJson": result},
    }
    answer = httpx.post(fake_job(env, "apixo", task)["callback_url"], json=forged)
    assert answer.status_code == 200 and answer.json()["verdict"] == "applied"
    done = env.job(job["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "ImageFormatIncorrect"
    assert done["outputs"] == []
    (callback,) = [i for i in done["inbound"] if i["kind"] == "callback"]
    assert callback["error"] == "confirmed at apixo: callback said succeeded, vendor says failed"
    assert received(env, job["id"], 2) == ["job.queued", "job.failed"]


def test_unconfirmable_callback_is_kept_and_polled(confirm_env: RelayEnv) -> None:
    """A terminal callback the vendor cannot confirm is stored unconfirmed, emits nothing, and a poll follows."""
    env = confirm_env
    source = env.ok(env.client.post("/v1/sources", json={"vendor": "apixo"}), 201)
    task = f"task_unknown{uuid.uuid4().hex[:8]}"
    result = json.dumps({"resultUrls": ["https://file.apixo.ai/x.jpg"]})
    body = {
        "code": 200,
        "message": "success",
        "data": {"taskId": task, "state": "success", "resultJson": result},
    }
    answer = httpx.post(source["callback_url"], json=body)
    assert answer.status_code == 200
    assert (answer.json()["verdict"], answer.json()["event_ids"]) == ("unconfirmed", [])
    (job,) = [j for j in env.ok(env.client.get("/v1/jobs"), 200)["data"] if j["vendor_job_id"] == task]
    done = env.wait_status(job["id"], "failed")  # the poll planned at once hears 404 from APIXO
    assert done["error"]["code"] == "vendor_not_found"
    (callback,) = [i for i in done["inbound"] if i["kind"] == "callback"]
    assert callback["verdict"] == "unconfirmed" and callback["error"].startswith("cannot confirm at apixo")
    assert received(env, job["id"], 1) == ["job.failed"]
