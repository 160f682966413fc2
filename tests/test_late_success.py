"""A late success is delivered (issue 20, finding 1): the relay asks the vendor once more before failing
a job at its deadline, and a job the relay failed itself is not final for the vendor: its success, on
the callback URL or found by the relay's slow late polls, moves it to ``succeeded`` and delivers
``job.succeeded`` once, with ``data.after_relay_timeout: true``. A vendor's own failure stays final.
Real relay, fake vendors and subscriber on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch.model import EVENT_TYPES, JobState, JobUpdate, event_id
from dispatch.state import failed_by_relay, transition
from fixtures.harness import wait_until
from receiver.fakes import FakeConfig, apiframe_signature
from tests.databases import query
from tests.relay_env import RelayEnv, relay_env
from tests.test_polling import ASYNC_VENDORS, HOOK, deliveries_for, fake_job, params_for, received

NEVER = FakeConfig(callback_delay=30.0, apixo_retry_scale=0.001, apixo_allow_http=True)
"""A vendor whose jobs stay running for the whole test."""


def polls(every: float, after: float | None = None) -> dict[str, Any]:
    """RELAY_POLL_AFTER and RELAY_POLL_EVERY for every polled vendor (seconds)."""
    return {
        "poll_after": dict.fromkeys(ASYNC_VENDORS, every if after is None else after),
        "poll_every": dict.fromkeys(ASYNC_VENDORS, every),
    }


def success_callback(env: RelayEnv, vendor: str, vendor_job_id: str) -> tuple[bytes, dict[str, str]]:
    """The vendor's documented success callback (VENDORS.md) for ``vendor_job_id``, signed for Apiframe."""
    if vendor == "apixo":
        result = json.dumps({"resultUrls": ["https://file.apixo.ai/late.jpg"]})
        body: dict[str, Any] = {
            "code": 200,
            "message": "success",
            "data": {"taskId": vendor_job_id, "state": "success", "resultJson": result},
        }
    elif vendor == "apiframe":
        body = {
            "event": "completed",
            "jobId": vendor_job_id,
            "status": "COMPLETED",
            "progress": 100,
            "result": "https://cdn.apiframe.ai/results/late.png",
        }
    elif vendor == "dreamina":
        image = {"imageUrl": "https://p9-sign.douyinpic.com/late", "width": 3840, "height": 2160}
        body = {
            "jobid": vendor_job_id,
            "type": "upscale",
            "status": "completed",
            "response": {"images": [image]},
        }
    else:
        asset = {"type": "artifact", "fileId": "asset:1-type:image/png", "mimeType": "image/png"}
        artifact = {
            "assetUrl": "https://storage.googleapis.com/late.png",
            "expirationDateString": "4102444800000",
        }
        body = {
            "jobId": vendor_job_id,
            "status": {"type": "completed", "artifact": artifact | {"asset": asset}},
        }
    raw = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if vendor == "apiframe":
        headers["X-Webhook-Signature"] = apiframe_signature(env.fake.config.apiframe_api_key, raw)
    return raw, headers


def submitted(env: RelayEnv, vendor: str, marker: str) -> dict[str, Any]:
    job = env.submit(vendor, params_for(vendor, marker))
    assert job["vendor_job_id"], job
    return job


def late_callback(env: RelayEnv, vendor: str, job: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    """The job's callback URL (as the vendor was given it) and the vendor's success callback for it."""
    url = str(fake_job(env, vendor, job["vendor_job_id"])["callback_url"])
    return url, *success_callback(env, vendor, job["vendor_job_id"])


# -- the last question at the deadline ----------------------------------------------------------
@pytest.fixture(scope="module")
def deadline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """Jobs time out after 1 s and are first polled at that very deadline (no poll before it)."""
    settings = polls(60.0, after=1.0)
    with relay_env(tmp_path_factory.mktemp("deadline"), job_timeout=1.0, **settings) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        yield env


@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_the_vendor_is_asked_once_more_before_the_deadline_fails_a_job(
    deadline_env: RelayEnv, vendor: str
) -> None:
    """A job whose vendor finished without calling back is not failed at its deadline: the relay asks
    first, and applies the success it hears."""
    env = deadline_env
    job = submitted(env, vendor, "lost")
    done = env.wait_status(job["id"], "succeeded")
    assert done["error"] is None and done["outcome_via"] == "poll" and done["outputs"]
    assert "after_relay_timeout" not in done["flags"]
    assert [e["type"] for e in done["events"] if e["type"] == "job.failed"] == []
    assert received(env, job["id"], len(done["events"]))[-1] == "job.succeeded"


# -- a late success on the callback URL ---------------------------------------------------------
@pytest.fixture(scope="module")
def timeout_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """Jobs that never finish at the vendor fail ``timeout`` after 0.5 s; no late poll within the test."""
    settings = polls(0.1)
    with relay_env(
        tmp_path_factory.mktemp("late"), fake=NEVER, job_timeout=0.5, late_poll_every=3600.0, **settings
    ) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        yield env


@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_a_success_after_the_relay_timeout_is_delivered_once(timeout_env: RelayEnv, vendor: str) -> None:
    """The vendor's success callback after the relay failed the job ``timeout`` moves it to succeeded
    and delivers job.succeeded once, with data.after_relay_timeout: true; a repeat is a duplicate."""
    env = timeout_env
    job = submitted(env, vendor, "lost")
    env.wait_status(job["id"], "failed")
    wait_until(lambda: env.job(job["id"])["next_poll_at"] is not None, message="no late poll planned")
    failed = env.job(job["id"])
    assert failed["error"]["code"] == "timeout"
    assert received(env, job["id"], len(failed["events"]))[-1] == "job.failed"

    url, body, headers = late_callback(env, vendor, job)
    answer = httpx.post(url, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    succeeded = event_id(job["id"], "job.succeeded")
    assert (answer.json()["verdict"], answer.json()["event_ids"]) == ("applied", [succeeded])
    again = httpx.post(url, content=body, headers=headers)
    assert (again.json()["verdict"], again.json()["event_ids"]) == ("duplicate", [])

    done = env.job(job["id"])
    assert (done["status"], done["error"], done["outcome_via"]) == ("succeeded", None, "callback")
    assert "after_relay_timeout" in done["flags"] and done["outputs"] and done["next_poll_at"] is None
    assert done["completed_at"] > failed["completed_at"]
    assert received(env, job["id"], len(done["events"]))[-2:] == ["job.failed", "job.succeeded"]
    got = deliveries_for(env, job["id"])
    (late,) = [d for d in got if d.json["type"] == "job.succeeded"]
    assert late.event_id == succeeded and late.json["data"]["after_relay_timeout"] is True
    assert late.json["data"]["outputs"][0]["url"].startswith("https://")
    assert all("after_relay_timeout" not in d.json["data"] for d in got if d is not late)


def test_a_vendor_failure_stays_final(tmp_path: Path) -> None:
    """A job the vendor itself failed is not reopened by a later success: conflict, nothing delivered."""
    fake = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True)
    with relay_env(tmp_path, fake=fake, **polls(0.1)) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        job = submitted(env, "apixo", "fail")
        failed = env.wait_status(job["id"], "failed")
        assert failed["error"]["code"] == "ImageFormatIncorrect"
        url, body, headers = late_callback(env, "apixo", job)
        answer = httpx.post(url, content=body, headers=headers)
        assert (answer.json()["verdict"], answer.json()["event_ids"]) == ("conflict", [])
        after = env.job(job["id"])
        assert (after["status"], after["error"]["code"]) == ("failed", "ImageFormatIncorrect")
        assert "after_relay_timeout" not in after["flags"] and after["next_poll_at"] is None
        assert received(env, job["id"], len(after["events"]))[-1] == "job.failed"


# -- late polls -----------------------------------------------------------------------------------
def test_a_late_poll_finds_the_success_after_the_relay_timeout(tmp_path: Path) -> None:
    """A vendor that finishes after the deadline without calling back: the relay's late polls find the
    success and deliver it, flagged after_relay_timeout."""
    slow = FakeConfig(callback_delay=0.8, apixo_retry_scale=0.001, apixo_allow_http=True)
    settings = polls(0.1)
    with relay_env(
        tmp_path, fake=slow, job_timeout=0.4, late_poll_every=0.1, late_poll_for=60.0, **settings
    ) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        jobs = {vendor: submitted(env, vendor, "lost")["id"] for vendor in ("apixo", "dreamina")}
        for vendor, job_id in jobs.items():
            assert env.wait_status(job_id, "failed")["error"]["code"] == "timeout", vendor
        for vendor, job_id in jobs.items():
            done = env.wait_status(job_id, "succeeded")
            assert done["outcome_via"] == "poll" and "after_relay_timeout" in done["flags"], vendor
            seen = received(env, job_id, len(done["events"]))
            assert seen[-2:] == ["job.failed", "job.succeeded"], vendor
            assert deliveries_for(env, job_id)[-1].json["data"]["after_relay_timeout"] is True


def test_late_polls_stop_at_the_end_of_the_late_window(tmp_path: Path) -> None:
    """After the deadline the relay keeps asking, slowly, until RELAY_LATE_POLL_FOR after it, then stops."""
    with relay_env(
        tmp_path, fake=NEVER, job_timeout=0.3, late_poll_every=0.1, late_poll_for=0.8, **polls(0.1)
    ) as env:
        job = submitted(env, "apixo", "lost")
        failed = env.wait_status(job["id"], "failed")
        wait_until(lambda: env.job(job["id"])["next_poll_at"] is None, timeout=10, message="late polls go on")
        done = env.job(job["id"])
        late = [
            i for i in done["inbound"] if i["kind"] == "poll" and i["received_at"] > failed["completed_at"]
        ]
        # the vendor still says "processing": stale after failed; about 6 polls in 0.8 s, slowing down
        assert 2 <= len(late) <= 12 and {i["verdict"] for i in late} == {"stale"}
        assert (done["status"], done["error"]["code"]) == ("failed", "timeout")


def test_a_late_vendor_failure_ends_the_late_polls(tmp_path: Path) -> None:
    """A vendor that fails the job after the relay's deadline: its failure is final, late polls stop,
    and the job keeps the relay's code (nothing more is delivered)."""
    slow = FakeConfig(callback_delay=0.5, apixo_retry_scale=0.001, apixo_allow_http=True)
    with relay_env(
        tmp_path, fake=slow, job_timeout=0.3, late_poll_every=0.1, late_poll_for=60.0, **polls(0.1)
    ) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        job = submitted(env, "apixo", "lost fail")
        env.wait_status(job["id"], "failed")
        wait_until(lambda: env.job(job["id"])["next_poll_at"] is None, timeout=10, message="late polls go on")
        done = env.job(job["id"])
        assert (done["status"], done["error"]["code"]) == ("failed", "timeout")
        newest = next(i for i in done["inbound"] if i["kind"] == "poll")  # newest first
        assert newest["verdict"] == "duplicate" and '"failCode"' in newest["body"]
        assert received(env, job["id"], len(done["events"]))[-1] == "job.failed"


# -- no output at the deadline -----------------------------------------------------------------------
def test_a_success_without_output_fails_no_output_at_the_deadline(tmp_path: Path) -> None:
    """A job flagged success_without_output (the vendor said success but gave no URL) fails with
    no_output, not timeout, when its deadline passes."""
    with relay_env(tmp_path, fake=NEVER, job_timeout=1.5, **polls(0.1)) as env:
        job = submitted(env, "apixo", "lost")
        query(
            env.database_url,
            "UPDATE jobs SET flags = ? WHERE id = ?",
            ('["success_without_output"]', job["id"]),
        )
        done = env.wait_status(job["id"], "failed")
        assert done["error"]["code"] == "no_output" and "no output URL" in done["error"]["message"]


# -- the state machine ---------------------------------------------------------------------------
def test_only_a_relay_failure_is_reopened_by_a_success() -> None:
    """failed → succeeded only for a job the relay failed itself (its deadline or an unknown submit
    outcome); the vendor's own failure, even one whose code reads "timeout", stays final."""
    F, S = JobState.FAILED, JobState.SUCCEEDED
    for code, via in (
        ("timeout", "timeout"),
        ("vendor_timeout", "timeout"),
        ("no_output", "timeout"),
        ("outcome_unknown", "submit"),
    ):
        assert failed_by_relay(F, code, via), code
        step = transition(F, None, JobUpdate(S), reopenable=True)
        assert (step.verdict, step.status, step.progress, step.events) == (
            "applied",
            S,
            100,
            (("job.succeeded", None),),
        )
    for code, via in (
        ("Timeout", "callback"),
        ("timeout", "callback"),
        ("vendor_rejected", "submit"),
        ("timeout", "poll"),
    ):
        assert not failed_by_relay(F, code, via), (code, via)
    assert not failed_by_relay(S, "timeout", "timeout")
    assert transition(F, None, JobUpdate(S)).verdict == "conflict"
    for other in (JobState.RUNNING, F):  # only a success reopens; nothing else moves a failed job
        assert transition(F, None, JobUpdate(other), reopenable=True).events == ()
