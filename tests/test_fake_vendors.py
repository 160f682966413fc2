"""Tests for receiver.fakes: each vendor's documented submit, status and callback sequence."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from fixtures.harness import serve_in_thread, wait_until
from receiver.fakes import (
    DREAMINA_SOURCE_JOB,
    DREAMINA_SOURCE_JOB_FAIL,
    DREAMINA_SOURCE_JOB_PENDING,
    LTX_SOURCE_JOB,
    LTX_SOURCE_JOB_FAIL,
    LTX_SOURCE_JOB_PENDING,
    SOURCE_IMAGE,
    SOURCE_IMAGE_FAIL,
    FakeConfig,
    FakeState,
    apiframe_signature,
    create_fake_vendors,
    dreamina_source_job,
    fake_state_of,
    ltx_source_job,
    scenarios_in,
    source_image,
)
from receiver.fakes.subscriber import Behaviour, Delivery, SubscriberLog, create_subscriber

CONFIG = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, slow_seconds=0.5, apixo_allow_http=True)
USEAPI = {"Authorization": f"Bearer {CONFIG.useapi_token}"}
APIFRAME = {"X-API-Key": CONFIG.apiframe_api_key}
APIXO = {"Authorization": f"Bearer {CONFIG.apixo_api_key}"}
ARTNEX = {"Authorization": f"Bearer {CONFIG.artnex_api_key}"}


@dataclass
class Env:
    """The fake vendor server, a recording receiver for its callbacks, and a client for the fake."""

    fake: httpx.Client
    state: FakeState
    receiver_url: str
    log: SubscriberLog

    def hook(self, label: str) -> tuple[str, str]:
        """A fresh ``(name, url)`` on the receiver, so tests never see each other's callbacks."""
        name = f"{label}-{uuid.uuid4().hex[:8]}"
        return name, f"{self.receiver_url}/hooks/{name}"

    def finished(self, vendor: str, job_id: str) -> None:
        """Wait until the fake has sent every callback of the job."""
        wait_until(
            lambda: any(j["finished"] for j in self.state.jobs(vendor) if j["job_id"] == job_id),
            timeout=5,
            message=f"{vendor} job {job_id} did not finish",
        )


@contextmanager
def fakes_running(config: FakeConfig) -> Iterator[Env]:
    """The fake vendors with ``config`` and a recording receiver, each on a loopback port."""
    app = create_fake_vendors(config)
    receiver_app, log = create_subscriber()
    with (
        serve_in_thread(app) as server,
        serve_in_thread(receiver_app) as receiver,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        yield Env(client, fake_state_of(app), receiver.url, log)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with fakes_running(CONFIG) as started:
        yield started


def _bodies(deliveries: list[Delivery]) -> list[Any]:
    return [d.json for d in deliveries]


# -- useapi LTX Studio ---------------------------------------------------------------------------
def test_ltx_calls_back_once_with_the_completed_model(env: Env) -> None:
    """LTX answers {jobId, generationId} and posts only the completed artifact ("job completion
    notifications", seed 000), echoing replyRef and replyUrl."""
    name, url = env.hook("ltx")
    body = {"jobId": LTX_SOURCE_JOB, "replyUrl": url, "replyRef": "ref-1"}
    submitted = env.fake.post("/v1/ltxstudio/images/upscale", json=body, headers=USEAPI)
    assert submitted.status_code == 200
    job_id = submitted.json()["jobId"]
    assert submitted.json()["generationId"].startswith("gen_")
    assert job_id.startswith("email:demo@example.com-job:") and job_id.endswith("-type:image")
    env.finished("ltx", job_id)
    [second] = _bodies(env.log.deliveries(name))
    assert (second["jobId"], second["replyRef"], second["replyUrl"]) == (job_id, "ref-1", url)
    assert second["status"]["type"] == "completed" and second["status"]["progress"] == 100
    artifact = second["status"]["artifact"]
    assert artifact["asset"]["mimeType"] == "image/png" and artifact["asset"]["type"] == "artifact"
    hours_left = (int(artifact["expirationDateString"]) / 1000 - time.time()) / 3600
    assert 23.9 < hours_left <= 24
    polled = env.fake.get(f"/v1/ltxstudio/assets/{job_id}", headers=USEAPI)
    assert polled.json() == second


def test_ltx_failure_and_errors(env: Env) -> None:
    """A 'fail' source ends failed with a message; bad sources, tokens and ids get useapi's error bodies."""
    name, url = env.hook("ltx-fail")
    env.fake.post(
        "/v1/ltxstudio/images/upscale", json={"jobId": LTX_SOURCE_JOB_FAIL, "replyUrl": url}, headers=USEAPI
    )
    [terminal] = _bodies(env.log.wait_for(1, name))
    assert terminal["status"]["type"] == "failed" and terminal["status"]["message"]
    unknown = env.fake.post("/v1/ltxstudio/images/upscale", json={"jobId": "nope"}, headers=USEAPI)
    assert unknown.status_code == 400 and unknown.json()["code"] == 400 and unknown.json()["error"]
    pending = env.fake.post(
        "/v1/ltxstudio/images/upscale", json={"jobId": LTX_SOURCE_JOB_PENDING}, headers=USEAPI
    )
    assert pending.status_code == 400
    denied = env.fake.post("/v1/ltxstudio/images/upscale", json={"jobId": LTX_SOURCE_JOB})
    assert (denied.status_code, denied.json()) == (401, {"error": "Unauthorized", "code": 401})
    missing = env.fake.get("/v1/ltxstudio/assets/email:x@example.com-job:1-type:image", headers=USEAPI)
    assert missing.json() == {"error": "Job not found or has expired", "code": 404}


def test_ltx_altshape_also_calls_back_the_active_model(env: Env) -> None:
    """Only an 'altshape' source gets the undocumented active (50) callback, before the completed ones."""
    name, url = env.hook("ltx-alt")
    body = {"jobId": ltx_source_job("altshape"), "replyUrl": url}
    job_id = env.fake.post("/v1/ltxstudio/images/upscale", json=body, headers=USEAPI).json()["jobId"]
    env.finished("ltx", job_id)
    statuses = [d["status"] for d in _bodies(env.log.deliveries(name))]
    assert statuses[0] == {"type": "active", "progress": 50}
    assert [s["type"] for s in statuses] == ["active", "completed", "completed"]


def test_ltx_poll_for_result_returns_the_full_model(env: Env) -> None:
    """With pollForResult the submit waits and answers the completed job model with code 200."""
    body = {"jobId": LTX_SOURCE_JOB, "pollForResult": 1}
    answered = env.fake.post("/v1/ltxstudio/images/upscale", json=body, headers=USEAPI).json()
    assert answered["code"] == 200 and answered["status"]["type"] == "completed"


def test_ltx_poll_for_result_waits_3_s_per_attempt_scaled() -> None:
    """A job slower than pollForResult x 3 s (x time_scale) is answered with {jobId, generationId}
    once that time is up; a job done within it is answered with the completed model."""
    config = FakeConfig(callback_delay=0.5, time_scale=0.05)  # 3 s x 2 attempts x 0.05 = 0.3 s
    with serve_in_thread(create_fake_vendors(config)) as server, httpx.Client(base_url=server.url) as fake:
        started = time.monotonic()
        body = {"jobId": LTX_SOURCE_JOB, "pollForResult": 2}
        early = fake.post("/v1/ltxstudio/images/upscale", json=body, headers=USEAPI)
        waited = time.monotonic() - started
        assert early.status_code == 200 and set(early.json()) == {"jobId", "generationId"}
        assert 0.3 <= waited < 1.0  # the job itself completes at about 1 s
        body["pollForResult"] = 20  # up to 3 s
        done = fake.post("/v1/ltxstudio/images/upscale", json=body, headers=USEAPI).json()
        assert (done["code"], done["status"]["type"]) == (200, "completed")
        assert done["status"]["artifact"]["assetUrl"].startswith("https://")


# -- useapi Dreamina -----------------------------------------------------------------------------
def test_dreamina_record_then_one_completed_callback(env: Env) -> None:
    """Dreamina answers the created upscale record and posts one completed record with one image."""
    name, url = env.hook("dreamina")
    body = {"jobid": DREAMINA_SOURCE_JOB, "imageIndex": 2, "upscaleResolution": "2k", "replyUrl": url}
    record = env.fake.post("/v1/dreamina/images/upscale", json=body, headers=USEAPI).json()
    # seed 001's upscale id form: "j0302140630123456789I-u12345-US:<email>:dreamina"
    assert re.fullmatch(r"j\d{19}I-u12345-US:demo@example\.com:dreamina", record["jobid"]), record["jobid"]
    assert (record["type"], record["status"], record["code"]) == ("upscale", "created", 200)
    assert record["request"] == {"jobid": DREAMINA_SOURCE_JOB, "imageIndex": 2, "resolution": "2k"}
    assert record["response"] == {"forecastCost": 0}
    env.finished("dreamina", record["jobid"])
    [done] = _bodies(env.log.deliveries(name))
    assert done["status"] == "completed" and done["updated"].endswith("Z")
    [image] = done["response"]["images"]
    assert set(image) == {
        "imageUrl",
        "imageUri",
        "width",
        "height",
        "format",
        "assetId",
        "assetRef",
        "itemId",
    }
    assert (image["width"], image["height"], image["format"]) == (2560, 1440, "jpeg")
    assert env.fake.get(f"/v1/dreamina/images/{record['jobid']}", headers=USEAPI).json() == done


def test_dreamina_failure_and_errors(env: Env) -> None:
    """A 'fail' source ends failed with fail_code; bad sources get the documented errors."""
    name, url = env.hook("dreamina-fail")
    env.fake.post(
        "/v1/dreamina/images/upscale",
        json={"jobid": DREAMINA_SOURCE_JOB_FAIL, "replyUrl": url},
        headers=USEAPI,
    )
    [failed] = _bodies(env.log.wait_for(1, name))
    assert (failed["status"], failed["error"]) == ("failed", "fail_code: 2043") and failed["errorDetails"]
    post = env.fake.post
    assert post("/v1/dreamina/images/upscale", json={}, headers=USEAPI).json() == {
        "error": "Parameter jobid is required"
    }
    unknown = post("/v1/dreamina/images/upscale", json={"jobid": "j1i-u1-US:x@y-bot:other"}, headers=USEAPI)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Source image job not found"})
    pending = post("/v1/dreamina/images/upscale", json={"jobid": DREAMINA_SOURCE_JOB_PENDING}, headers=USEAPI)
    assert pending.status_code == 400 and "must be completed" in pending.json()["error"]
    assert post("/v1/dreamina/images/upscale", json={"jobid": DREAMINA_SOURCE_JOB}).status_code == 401


# -- Apiframe ------------------------------------------------------------------------------------
def test_apiframe_signature_known_answer() -> None:
    """The fake's signer reproduces the Apiframe SDK test vector from VENDORS.md."""
    body = b'{"jobId":"abc","status":"COMPLETED"}'
    expected = "sha256=58e6d7af820911d918b1b43ade255ec260002ca8b24ba46dd057a99d192c89f4"
    assert apiframe_signature("afk_" + "0" * 40, body) == expected


def _apiframe_body(image: str, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "clarity-upscale",
        "clarityUpscaleParams": {"image": image, "scale_factor": 2},
    }
    body |= {"webhookUrl": url, "webhookEvents": events or ["progress", "completed", "failed"]}
    return body


def _expected_signature(raw: bytes) -> str:
    key = hashlib.sha256(CONFIG.apiframe_api_key.encode()).digest()
    return "sha256=" + hmac.new(key, raw, hashlib.sha256).hexdigest()


def test_apiframe_progress_then_completed_signed(env: Env) -> None:
    """Apiframe answers 202 QUEUED and posts progress 30, 70, completed, each signed over the raw bytes."""
    name, url = env.hook("apiframe")
    accepted = env.fake.post("/v2/images/upscale", json=_apiframe_body(SOURCE_IMAGE, url), headers=APIFRAME)
    assert accepted.status_code == 202 and accepted.json()["status"] == "QUEUED"
    job_id = accepted.json()["jobId"]
    assert uuid.UUID(job_id).version == 4
    deliveries = env.log.wait_for(3, name)
    assert [(d.json["event"], d.json["status"], d.json["progress"]) for d in deliveries] == [
        ("progress", "PROCESSING", 30),
        ("progress", "PROCESSING", 70),
        ("completed", "COMPLETED", 100),
    ]
    for delivery in deliveries:
        assert delivery.headers["x-webhook-event"] == delivery.json["event"]
        assert delivery.headers["x-webhook-signature"] == _expected_signature(delivery.body)
    done = deliveries[-1].json
    assert done["result"]["images"][0].startswith("https://cdn2.apiframe.ai/images/")
    assert {"jobId", "model", "creditCost", "completedAt"} <= done.keys()
    env.finished("apiframe", job_id)
    job = env.fake.get(f"/v2/jobs/{job_id}", headers=APIFRAME).json()
    assert (job["id"], job["status"], job["progress"], job["webhookStatus"]) == (
        job_id,
        "COMPLETED",
        100,
        "delivered",
    )
    assert job["result"] == done["result"] and job["expired"] is False and job["error"] is None


def test_apiframe_failure_only_subscribed_events_and_webhook_status(env: Env) -> None:
    """A 'fail' image sends only the subscribed failed event; a 500 answer marks webhookStatus failed."""
    name, url = env.hook("apiframe-fail")
    env.log.program(Behaviour.fail(500, times=None), name=name)
    body = _apiframe_body(SOURCE_IMAGE_FAIL, url, events=["completed", "failed"])
    job_id = env.fake.post("/v2/images/upscale", json=body, headers=APIFRAME).json()["jobId"]
    env.finished("apiframe", job_id)
    [failed] = _bodies(env.log.deliveries(name))
    assert (failed["event"], failed["status"], failed["jobId"]) == ("failed", "FAILED", job_id) and failed[
        "error"
    ]
    job = env.fake.get(f"/v2/jobs/{job_id}", headers=APIFRAME).json()
    assert (job["status"], job["webhookStatus"], job["creditCost"]) == ("FAILED", "failed", 0)


def test_apiframe_idempotency_key_returns_the_original_job(env: Env) -> None:
    """Resubmitting with the same Idempotency-Key returns the first job and creates no second one."""
    name, url = env.hook("apiframe-idem")
    image = source_image(f"idem-{uuid.uuid4().hex}")
    headers = APIFRAME | {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = env.fake.post("/v2/images/upscale", json=_apiframe_body(image, url), headers=headers).json()
    env.finished("apiframe", first["jobId"])
    again = env.fake.post("/v2/images/upscale", json=_apiframe_body(image, url), headers=headers).json()
    assert again == {"jobId": first["jobId"], "status": "COMPLETED"}
    assert [j["job_id"] for j in env.state.jobs("apiframe") if j["input"] == image] == [first["jobId"]]
    assert env.log.count(name) == 3


def test_apiframe_validation_and_auth(env: Env) -> None:
    """Unknown fields get a 400 with details per JSON path; missing and wrong keys get the two 401 bodies."""
    body = _apiframe_body(SOURCE_IMAGE, "https://example.com/h") | {"reference": "mine"}
    body["clarityUpscaleParams"]["scale_factor"] = 3
    rejected = env.fake.post("/v2/images/upscale", json=body, headers=APIFRAME)
    assert rejected.status_code == 400
    assert set(rejected.json()["details"]) == {"reference", "clarityUpscaleParams.scale_factor"}
    assert env.fake.post("/v2/images/upscale", json=body).json() == {"error": "API key is required"}
    wrong = env.fake.post("/v2/images/upscale", json=body, headers={"X-API-Key": "afk_wrong"})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "Invalid API key"})
    assert env.fake.get("/v2/jobs/not-a-uuid", headers=APIFRAME).status_code == 400
    assert env.fake.get(f"/v2/jobs/{uuid.uuid4()}", headers=APIFRAME).status_code == 404


def test_apiframe_forged_and_unsigned(env: Env) -> None:
    """'forged' callbacks carry a signature that does not verify; 'unsigned' ones carry none."""
    for marker in ("forged", "unsigned"):
        name, url = env.hook(f"apiframe-{marker}")
        body = _apiframe_body(source_image(marker), url, events=["completed"])
        env.fake.post("/v2/images/upscale", json=body, headers=APIFRAME)
        [delivery] = env.log.wait_for(1, name)
        signature = delivery.headers.get("x-webhook-signature")
        if marker == "forged":
            assert signature is not None and signature != _expected_signature(delivery.body)
        else:
            assert signature is None


# -- APIXO ---------------------------------------------------------------------------------------
def _apixo_body(image: str, url: str | None, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"input": {"image_urls": [image], **params}}
    return body | ({"request_type": "callback", "callback_url": url} if url else {"request_type": "async"})


def test_apixo_one_terminal_envelope_matching_status(env: Env) -> None:
    """APIXO answers a task id and posts one success envelope whose resultJson is a JSON string."""
    name, url = env.hook("apixo")
    submitted = env.fake.post(
        "/api/v1/generateTask/image-upscaler", json=_apixo_body(SOURCE_IMAGE, url), headers=APIXO
    )
    assert submitted.json()["code"] == 200 and submitted.json()["message"] == "success"
    task_id = submitted.json()["data"]["taskId"]
    assert task_id.startswith("task_")
    env.finished("apixo", task_id)
    [envelope] = _bodies(env.log.deliveries(name))
    data = envelope["data"]
    assert (envelope["code"], data["taskId"], data["state"]) == (200, task_id, "success")
    assert json.loads(data["resultJson"])["resultUrls"][0].startswith("https://")
    assert data["completeTime"] - data["createTime"] == data["costTime"]
    status = env.fake.get("/api/v1/statusTask/image-upscaler", params={"taskId": task_id}, headers=APIXO)
    assert status.json() == envelope


def test_apixo_failure_and_validation(env: Env) -> None:
    """A 'fail' image ends failed with failCode/failMsg; bad bodies get HTTP 400 with verbatim messages."""
    submit = env.fake.post
    task = submit(
        "/api/v1/generateTask/image-upscaler", json=_apixo_body(SOURCE_IMAGE_FAIL, None), headers=APIXO
    )
    task_id = task.json()["data"]["taskId"]
    env.finished("apixo", task_id)
    data = env.fake.get(
        "/api/v1/statusTask/image-upscaler", params={"taskId": task_id}, headers=APIXO
    ).json()["data"]
    assert data["state"] == "failed" and data["failCode"] and data["failMsg"] and "resultJson" not in data
    two = _apixo_body(SOURCE_IMAGE, None)
    two["input"]["image_urls"] *= 2
    rejected = submit("/api/v1/generateTask/image-upscaler", json=two, headers=APIXO)
    assert (rejected.status_code, rejected.json()) == (
        400,
        {"code": 400, "message": "The parameter {{image_urls}} must contain exactly 1 image.", "data": None},
    )
    bad = submit(
        "/api/v1/generateTask/image-upscaler",
        json=_apixo_body(SOURCE_IMAGE, None, resolution="16k"),
        headers=APIXO,
    )
    assert bad.json()["message"] == "The parameter {{resolution}} must be either '2k', '4k' or '8k'."
    assert submit("/api/v1/generateTask/image-upscaler", json=two).status_code == 401
    unknown = env.fake.get("/api/v1/statusTask/image-upscaler", params={"taskId": "task_0"}, headers=APIXO)
    assert unknown.status_code == 404


def test_apixo_retries_on_scaled_schedule_then_gives_up(env: Env) -> None:
    """When the receiver never answers 200, APIXO retries after 30 s, 2 min, 10 min (scaled), then stops."""
    name, url = env.hook("apixo-retry")
    env.log.program(Behaviour.fail(500, times=None), name=name)
    body = _apixo_body(source_image(uuid.uuid4().hex[:6]), url)
    task_id = env.fake.post("/api/v1/generateTask/image-upscaler", json=body, headers=APIXO).json()["data"][
        "taskId"
    ]
    env.finished("apixo", task_id)
    attempts = env.log.deliveries(name)
    assert len(attempts) == 4 and len({json.dumps(d.json) for d in attempts}) == 1
    gaps = [b.monotonic - a.monotonic for a, b in itertools.pairwise(attempts)]
    for gap, scheduled in zip(gaps, (30, 120, 600), strict=True):
        assert gap >= scheduled * CONFIG.apixo_retry_scale * 0.9
    assert [(c.attempt, c.status_code) for c in env.state.callbacks("apixo", task_id)] == [
        (1, 500),
        (2, 500),
        (3, 500),
        (4, 500),
    ]


def test_apixo_retries_a_non_200_success(env: Env) -> None:
    """A 204 is not 'exactly 200', so APIXO retries once and stops at the first 200."""
    name, url = env.hook("apixo-204")
    env.log.program(Behaviour.fail(204, times=1), name=name)
    body = _apixo_body(SOURCE_IMAGE, url)
    task_id = env.fake.post("/api/v1/generateTask/image-upscaler", json=body, headers=APIXO).json()["data"][
        "taskId"
    ]
    env.finished("apixo", task_id)
    assert [d.status for d in env.log.deliveries(name)] == [204, 200]


# -- Artnex --------------------------------------------------------------------------------------
def test_artnex_synchronous_result_and_errors(env: Env) -> None:
    """Artnex answers the result in the response; 'fail' or missing images and bad keys get error codes."""
    done = env.fake.post("/v1/upscale", json={"image": SOURCE_IMAGE, "scale": 4}, headers=ARTNEX).json()
    request_id = done["request_id"]
    assert request_id.startswith("req_ups_") and done["success"] is True and done["credits_used"] == 100
    assert done["image_url"] == f"https://cdn.artnex.ai/upscale/{request_id}/upscaled.jpg"
    failed = env.fake.post("/v1/upscale", json={"image": SOURCE_IMAGE_FAIL}, headers=ARTNEX)
    assert failed.status_code == 400 and failed.json()["error"] == "invalid_image_format"
    assert failed.json()["success"] is False and failed.json()["message"]
    assert env.fake.post("/v1/upscale", json={}, headers=ARTNEX).json()["error"] == "missing_image"
    denied = env.fake.post("/v1/upscale", json={"image": SOURCE_IMAGE}, headers={"Authorization": "Bearer x"})
    assert (denied.status_code, denied.json()["error"]) == (401, "invalid_api_key")


# -- scenarios -----------------------------------------------------------------------------------
def test_scenario_markers_are_found_in_inputs() -> None:
    """Markers are plain substrings of the input, and the ready-made inputs carry exactly theirs."""
    assert scenarios_in(source_image("dup-ooo")) == {"dup", "ooo"}
    assert scenarios_in(ltx_source_job("lateprogress")) == {"lateprogress"}
    assert scenarios_in(dreamina_source_job("fail")) == {"fail"}
    assert (
        scenarios_in(LTX_SOURCE_JOB)
        == scenarios_in(DREAMINA_SOURCE_JOB)
        == scenarios_in(SOURCE_IMAGE)
        == set()
    )


def test_dup_sends_the_terminal_callback_twice(env: Env) -> None:
    """'dup' repeats the APIXO terminal envelope byte for byte."""
    name, url = env.hook("dup")
    body = _apixo_body(source_image("dup"), url)
    task_id = env.fake.post("/api/v1/generateTask/image-upscaler", json=body, headers=APIXO).json()["data"][
        "taskId"
    ]
    env.finished("apixo", task_id)
    first, second = env.log.deliveries(name)
    assert first.body == second.body and first.json["data"]["state"] == "success"


def test_ooo_sends_terminal_before_progress(env: Env) -> None:
    """'ooo' posts Apiframe's completed event first, then the progress events, while GET stays COMPLETED."""
    name, url = env.hook("ooo")
    job_id = env.fake.post(
        "/v2/images/upscale", json=_apiframe_body(source_image("ooo"), url), headers=APIFRAME
    ).json()["jobId"]
    env.finished("apiframe", job_id)
    assert [(d.json["event"], d.json["progress"]) for d in env.log.deliveries(name)] == [
        ("completed", 100),
        ("progress", 30),
        ("progress", 70),
    ]
    assert env.fake.get(f"/v2/jobs/{job_id}", headers=APIFRAME).json()["status"] == "COMPLETED"


def test_lateprogress_and_lost(env: Env) -> None:
    """'lateprogress' adds an LTX active callback after the completed one; 'lost' sends none but GET
    completes."""
    name, url = env.hook("late")
    late = {"jobId": ltx_source_job("lateprogress"), "replyUrl": url}
    job_id = env.fake.post("/v1/ltxstudio/images/upscale", json=late, headers=USEAPI).json()["jobId"]
    env.finished("ltx", job_id)
    assert [d.json["status"]["type"] for d in env.log.deliveries(name)] == ["completed", "active"]
    assert (
        env.fake.get(f"/v1/ltxstudio/assets/{job_id}", headers=USEAPI).json()["status"]["type"] == "completed"
    )
    name, url = env.hook("lost")
    lost = {"jobid": dreamina_source_job("lost"), "replyUrl": url}
    jobid = env.fake.post("/v1/dreamina/images/upscale", json=lost, headers=USEAPI).json()["jobid"]
    env.finished("dreamina", jobid)
    assert env.fake.get(f"/v1/dreamina/images/{jobid}", headers=USEAPI).json()["status"] == "completed"
    assert env.log.count(name) == 0 and env.state.callbacks("dreamina", jobid) == []


def test_submit_faults_happen_once_per_input(env: Env) -> None:
    """'submit429' answers 429 with Retry-After: 1 once and 'submit500' answers 500 once; retries succeed."""
    image = source_image(f"submit429-{uuid.uuid4().hex[:6]}")
    first = env.fake.post("/v1/upscale", json={"image": image}, headers=ARTNEX)
    assert (first.status_code, first.headers["retry-after"], first.json()["error"]) == (
        429,
        "1",
        "rate_limit_exceeded",
    )
    assert env.fake.post("/v1/upscale", json={"image": image}, headers=ARTNEX).status_code == 200
    source = dreamina_source_job(f"submit500-{uuid.uuid4().hex[:6]}")
    codes = [
        env.fake.post("/v1/dreamina/images/upscale", json={"jobid": source}, headers=USEAPI).status_code
        for _ in "12"
    ]
    assert codes == [500, 200]


def test_slow_submit_times_out_a_short_client_but_creates_the_job(env: Env) -> None:
    """'slow' delays the APIXO submit answer past a short client timeout while the task already exists."""
    image = source_image(f"slow-{uuid.uuid4().hex[:6]}")
    with pytest.raises(httpx.ReadTimeout):
        env.fake.post(
            "/api/v1/generateTask/image-upscaler", json=_apixo_body(image, None), headers=APIXO, timeout=0.1
        )
    [job] = [j for j in env.state.jobs("apixo") if j["input"] == image]
    env.finished("apixo", job["job_id"])


def test_inspection_endpoints_list_submits_callbacks_and_jobs(env: Env) -> None:
    """GET /_fake/submits, /_fake/callbacks and /_fake/jobs expose the logs as JSON, filterable by vendor."""
    _, url = env.hook("inspect")
    body = {"jobId": LTX_SOURCE_JOB, "replyUrl": url}
    job_id = env.fake.post("/v1/ltxstudio/images/upscale", json=body, headers=USEAPI).json()["jobId"]
    env.finished("ltx", job_id)
    submits = env.fake.get("/_fake/submits", params={"vendor": "ltx"}).json()
    assert any(s["job_id"] == job_id and s["status"] == 200 and s["body"] == body for s in submits)
    callbacks = [c for c in env.fake.get("/_fake/callbacks").json() if c["job_id"] == job_id]
    assert [(c["kind"], c["status_code"], c["url"]) for c in callbacks] == [("terminal", 200, url)]
    jobs = env.fake.get("/_fake/jobs", params={"vendor": "ltx"}).json()
    assert {j["vendor"] for j in jobs} == {"ltx"} and any(
        j["job_id"] == job_id and j["terminal"] for j in jobs
    )


def test_terminal_state_is_visible_when_the_terminal_callback_arrives(env: Env) -> None:
    """A receiver polling the status endpoint while handling an APIXO callback sees the final state."""
    seen: list[str] = []

    async def handler(request: Request) -> Response:
        task_id = (await request.json())["data"]["taskId"]
        async with httpx.AsyncClient(base_url=str(env.fake.base_url)) as client:
            status = await client.get(
                "/api/v1/statusTask/image-upscaler", params={"taskId": task_id}, headers=APIXO
            )
        seen.append(status.json()["data"]["state"])
        return PlainTextResponse("ok")

    with serve_in_thread(Starlette(routes=[Route("/cb", handler, methods=["POST"])])) as receiver:
        body = _apixo_body(source_image("dup"), f"{receiver.url}/cb")
        env.fake.post("/api/v1/generateTask/image-upscaler", json=body, headers=APIXO)
        wait_until(lambda: len(seen) == 2, timeout=5, message="callbacks did not arrive")
    assert seen == ["success", "success"]


# -- documented submit errors on demand ----------------------------------------------------------
def _submit(env: Env, vendor: str, marker: str) -> httpx.Response:
    """Submit a valid job to ``vendor`` whose input carries ``marker``."""
    post = env.fake.post
    if vendor == "ltx":
        return post("/v1/ltxstudio/images/upscale", json={"jobId": ltx_source_job(marker)}, headers=USEAPI)
    if vendor == "dreamina":
        body = {"jobid": dreamina_source_job(marker)}
        return post("/v1/dreamina/images/upscale", json=body, headers=USEAPI)
    image = source_image(f"{marker}-{uuid.uuid4().hex[:6]}")
    if vendor == "apiframe":
        return post(
            "/v2/images/upscale", json=_apiframe_body(image, "https://example.com/h"), headers=APIFRAME
        )
    if vendor == "apixo":
        return post("/api/v1/generateTask/image-upscaler", json=_apixo_body(image, None), headers=APIXO)
    return post("/v1/upscale", json={"image": image}, headers=ARTNEX)


SUBMIT_ERRORS: list[tuple[str, int, dict[str, Any]]] = [
    ("ltx", 400, {"error": "Error message", "code": 400}),
    ("ltx", 401, {"error": "Unauthorized", "code": 401}),
    ("ltx", 402, {"error": "Insufficient credits", "code": 402}),
    ("dreamina", 400, {"error": "Source image job is created, must be completed"}),
    ("dreamina", 401, {"error": "Unauthorized"}),
    ("dreamina", 404, {"error": "Source image job not found"}),
    (
        "apiframe",
        400,
        {
            "error": "Validation failed",
            "details": {"clarityUpscaleParams.image": ["The input image could not be read"]},
        },
    ),
    ("apiframe", 401, {"error": "Invalid API key"}),
    ("apiframe", 402, {"error": "Insufficient credits", "creditsRequired": 3, "creditsAvailable": 0}),
    ("apiframe", 403, {"error": "API key is inactive"}),
    ("apiframe", 503, {"error": "Service unavailable"}),
    ("apixo", 400, {"code": 400, "message": "Invalid request", "data": None}),
    ("apixo", 401, {"code": 401, "message": "Unauthorized: invalid API key", "data": None}),
    ("apixo", 402, {"code": 402, "message": "Insufficient balance", "data": None}),
    (
        "apixo",
        403,
        {"code": 403, "message": "This API key cannot access the model image-upscaler", "data": None},
    ),
    ("apixo", 502, {"code": 502, "message": "Upstream service error", "data": None}),
    ("apixo", 503, {"code": 503, "message": "Service unavailable", "data": None}),
    ("apixo", 504, {"code": 504, "message": "Upstream timeout", "data": None}),
    (
        "artnex",
        400,
        {
            "success": False,
            "error": "invalid_image_format",
            "message": "The image format is not supported or the file is corrupt.",
        },
    ),
    (
        "artnex",
        401,
        {"success": False, "error": "invalid_api_key", "message": "The API key provided is not valid."},
    ),
    (
        "artnex",
        402,
        {
            "success": False,
            "error": "insufficient_credits",
            "message": "Your account does not have enough credits.",
        },
    ),
]


@pytest.mark.parametrize(
    ("vendor", "status", "body"), SUBMIT_ERRORS, ids=[f"{v}-{s}" for v, s, _ in SUBMIT_ERRORS]
)
def test_submit_marker_gives_the_documented_error_every_time(
    env: Env, vendor: str, status: int, body: dict[str, Any]
) -> None:
    """A ``submit<status>`` input gets the vendor's documented error body on every submit, and no job."""
    before = len(env.state.jobs(vendor))
    for _ in "12":
        answer = _submit(env, vendor, f"submit{status}")
        assert (answer.status_code, answer.json()) == (status, body)
    assert len(env.state.jobs(vendor)) == before
    assert [s.status for s in env.state.submits(vendor)[-2:]] == [status, status]


@pytest.mark.parametrize(
    ("vendor", "marker"), [("ltx", "submit403"), ("dreamina", "submit402"), ("artnex", "submit503")]
)
def test_submit_marker_of_an_undocumented_status_is_ignored(env: Env, vendor: str, marker: str) -> None:
    """A vendor never answers a status its pages do not document: the job is accepted as usual."""
    assert _submit(env, vendor, marker).status_code == 200


def test_apixo_refuses_an_http_callback_url_unless_allowed() -> None:
    """APIXO wants a public HTTPS callback_url [seed:003]: http:// gets a 400 envelope and no task, unless
    the fake runs with apixo_allow_http."""
    body = _apixo_body(SOURCE_IMAGE, "http://127.0.0.1:9/hook")
    strict = FakeConfig(callback_delay=30.0)  # no callback leaves within the test
    with (
        serve_in_thread(create_fake_vendors(strict)) as server,
        httpx.Client(base_url=server.url) as fake,
    ):
        refused = fake.post("/api/v1/generateTask/image-upscaler", json=body, headers=APIXO)
        assert (refused.status_code, refused.json()) == (
            400,
            {
                "code": 400,
                "message": "The parameter {{callback_url}} must be a public HTTPS URL.",
                "data": None,
            },
        )
        https = _apixo_body(SOURCE_IMAGE, "https://hooks.example.com/apixo")
        accepted = fake.post("/api/v1/generateTask/image-upscaler", json=https, headers=APIXO)
        assert accepted.status_code == 200 and accepted.json()["data"]["taskId"].startswith("task_")
    allowed = FakeConfig(apixo_allow_http=True, callback_delay=30.0)  # no callback within the test
    with serve_in_thread(create_fake_vendors(allowed)) as server, httpx.Client(base_url=server.url) as fake:
        assert fake.post("/api/v1/generateTask/image-upscaler", json=body, headers=APIXO).status_code == 200
