"""Issue 19, finding 6: at most ``RELAY_MAX_OUTPUTS_PER_JOB`` outputs per job. A callback listing more is
a 422 naming the limit and is stored with verdict ``invalid``; a poll answer listing more is stored
``invalid`` too; the job is not changed, nothing is mirrored, no event is built. Runs on Postgres
too under ``RELAY_TEST_DATABASE``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fixtures.harness import serve_in_thread, wait_until
from receiver.fakes import FakeConfig, source_image
from tests.output_host import plant_outputs, post_apixo_result
from tests.relay_env import RelayEnv, relay_env
from tests.test_hardening import polled_apixo, polling_relay

FAKE = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True, serve_assets=True)


def _inbound(env: RelayEnv, job_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = env.ok(env.client.get("/v1/inbound", params={"job_id": job_id}), 200)["data"]
    return rows


def _lost_job(env: RelayEnv) -> dict[str, Any]:
    return env.submit("apixo", {"input": {"image_urls": [source_image("lost")]}})


def test_a_callback_over_the_output_cap_is_a_422_and_applies_nothing(tmp_path: Path) -> None:
    """A 2 KB callback listing 120 URLs and a 1 MiB-class one listing 20,000 are 422s naming
    RELAY_MAX_OUTPUTS_PER_JOB and its value, stored with verdict invalid; the jobs stay queued with no
    outputs and no job.succeeded, and nothing reaches the mirror. Exactly 16 outputs is accepted."""
    mirror = tmp_path / "mirror"
    with relay_env(tmp_path, FAKE, mirror_url=f"file://{mirror}", mirror_backoff=0.05) as env:
        env.subscribe()
        small = [f"http://127.0.0.1:9/{n}" for n in range(120)]
        huge = [f"http://127.0.0.1:9/{n}.png" for n in range(20_000)]
        for urls in (small, huge):
            job = _lost_job(env)
            answer = post_apixo_result(env.fake, job, urls)
            assert answer.status_code == 422, answer.text
            message = answer.json()["error"]["message"]
            assert "RELAY_MAX_OUTPUTS_PER_JOB" in message and "16" in message and str(len(urls)) in message
            (stored,) = [i for i in _inbound(env, job["id"]) if i["kind"] == "callback"]
            assert stored["verdict"] == "invalid" and "RELAY_MAX_OUTPUTS_PER_JOB" in stored["error"]
            after = env.job(job["id"])
            assert after["status"] == "queued" and after["outputs"] == []
            events = env.ok(env.client.get("/v1/events", params={"job_id": job["id"]}), 200)["data"]
            assert [e["type"] for e in events] == ["job.queued"]
        assert not mirror.exists() or list(mirror.iterdir()) == []

        asset = f"{env.vendors.url}/_fake/assets/99999999999999/cdn.example.com/a.png"
        at_cap = plant_outputs(env.relay.url, env.client.headers, env.fake, [asset] * 16)
        done = env.wait_status(at_cap["id"], "succeeded")
        assert len(done["outputs"]) == 16


def test_a_poll_answer_over_the_output_cap_is_stored_invalid(tmp_path: Path) -> None:
    """A status answer listing 40 result URLs is kept with verdict invalid and its body; the job is
    not changed (still queued, no outputs)."""

    urls = [f"https://cdn.example.com/{n}.png" for n in range(40)]
    vendor = polled_apixo(
        "task_many", {"taskId": "task_many", "resultJson": json.dumps({"resultUrls": urls})}
    )
    with serve_in_thread(vendor) as mini, polling_relay(tmp_path, mini.url) as env:
        job = env.submit("apixo", {"input": {"image_urls": [source_image()]}})
        wait_until(lambda: any(i["kind"] == "poll" for i in _inbound(env, job["id"])), timeout=15)
        polls = [i for i in _inbound(env, job["id"]) if i["kind"] == "poll"]
        assert {i["verdict"] for i in polls} == {"invalid"}
        assert "RELAY_MAX_OUTPUTS_PER_JOB" in polls[0]["error"]
        assert env.client.get(polls[0]["body_url"]).json()["data"]["taskId"] == "task_many"  # kept whole
        after = env.job(job["id"])
        assert after["status"] == "queued" and after["outputs"] == []


def test_the_output_cap_is_a_setting(tmp_path: Path) -> None:
    """RELAY_MAX_OUTPUTS_PER_JOB=2: a callback with 3 outputs is refused, naming 2."""
    with relay_env(tmp_path, FAKE, max_outputs_per_job=2) as env:
        job = _lost_job(env)
        answer = post_apixo_result(env.fake, job, ["https://cdn.example.com/a.png"] * 3)
        assert answer.status_code == 422 and "at most 2" in answer.json()["error"]["message"]
