"""Durable submits (issue 9): the job and its pending submit are committed before the vendor is called,
retries are stored decisions taken by the worker, an ambiguous answer waits for the vendor instead of
charging twice, transient vendor failures resubmit, and a killed process loses no job. A small APIXO
or Apiframe stand-in on loopback answers as each test needs; the relay is real."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatch.model import event_id
from fixtures import payload
from fixtures.harness import RunningServer, free_port, serve_in_thread, wait_until
from receiver.fakes import FakeConfig, dreamina_source_job, ltx_source_job, source_image
from receiver.settings import Settings
from receiver.submit import callback_url_warnings, check_callback_url, submit_backoff
from receiver.transient import resubmit_delay
from receiver.vendors import ADAPTERS
from tests.databases import query
from tests.procs import RelayProcess, open_test_store, relay_environ, wait_http_ok
from tests.relay_env import API_TOKEN, relay_env

APIXO_PARAMS = {"input": {"image_urls": [source_image()]}}
APIFRAME_PARAMS = {"model": "topaz-image-upscale", "topazUpscaleParams": {"image": source_image()}}


@dataclass
class Vendor:
    """A programmable APIXO + Apiframe stand-in: ``answers`` are popped per submit (``"429"``,
    ``"500"``, ``"hang"``, ``"ok"``); when empty every submit is accepted."""

    answers: list[str] = field(default_factory=list)
    submits: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self, body: dict[str, Any]) -> tuple[str, int]:
        with self.lock:
            self.submits.append(body)
            return (self.answers.pop(0) if self.answers else "ok"), len(self.submits)

    def app(self) -> Starlette:
        async def submit(request: Request) -> Response:
            answer, n = self.next_answer(await request.json())
            if answer == "hang":
                await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
            if answer.isdigit():
                return JSONResponse(
                    {"code": int(answer), "message": "busy", "data": None}, status_code=int(answer)
                )
            if request.url.path.startswith("/v2/"):  # Apiframe: the same job for the same Idempotency-Key
                key = request.headers.get("idempotency-key", "")
                return JSONResponse({"jobId": f"0f0e0d0c-0b0a-4908-8706-{abs(hash(key)) % 10**12:012d}"})
            return JSONResponse({"code": 200, "message": "success", "data": {"taskId": f"task_{n}"}})

        return Starlette(
            routes=[
                Route("/api/v1/generateTask/image-upscaler", submit, methods=["POST"]),
                Route("/v2/images/upscale", submit, methods=["POST"]),
            ]
        )


@pytest.fixture
def vendor() -> Iterator[tuple[Vendor, RunningServer]]:
    stand_in = Vendor()
    with serve_in_thread(stand_in.app()) as server:
        yield stand_in, server
        stand_in.release.set()


def relay_at(tmp_path: Path, server: RunningServer, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "apixo_base_url": server.url,
        "apiframe_base_url": server.url,
        "submit_backoff": 0.01,
        "resubmit_backoff": 0.01,
        **overrides,
    }
    return relay_env(tmp_path, **values)


def apixo_callback(stand_in: Vendor, task: str, state: str, code: str = "") -> httpx.Response:
    """POST an APIXO callback for ``task`` to the callback URL the vendor was given."""
    url = str(stand_in.submits[-1]["callback_url"])
    data: dict[str, Any] = json.loads(
        payload("apixo", "callback_success" if state == "success" else "callback_failed")
    )
    data["data"]["taskId"] = task
    if code:
        data["data"]["failCode"] = code
    return httpx.post(url, content=json.dumps(data).encode())


# -- durable, retried submits ---------------------------------------------------------------------
def test_an_answer_slower_than_the_inline_wait_is_202_pending_then_lands(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer]
) -> None:
    """POST /v1/jobs waits RELAY_SUBMIT_INLINE_WAIT, answers queued + submit_pending, and the submit lands."""
    stand_in, server = vendor
    stand_in.answers = ["hang"]
    with relay_at(tmp_path, server, submit_inline_wait=0.2) as env:
        job = env.submit("apixo", APIXO_PARAMS)
        assert (job["status"], job["submit_pending"], job["vendor_job_id"]) == ("queued", True, None)
        stand_in.release.set()
        wait_until(lambda: env.job(job["id"])["vendor_job_id"] == "task_1")
        after = env.job(job["id"])
        assert after["submit_pending"] is False and [e["type"] for e in after["events"]] == ["job.queued"]
        assert len(stand_in.submits) == 1


def test_a_vendor_at_429_for_many_rounds_is_submitted_once_it_clears(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer]
) -> None:
    """Without Retry-After, 429s are retried with backoff from the outbox until the vendor takes the job:
    nine 429s in a row, with backoff scaled 1:200 (0.01 s base instead of 2 s), about 17 minutes of real
    backoff."""
    stand_in, server = vendor
    stand_in.answers = ["429"] * 9
    with relay_at(tmp_path, server, submit_inline_wait=0.5) as env:
        job = env.submit("apixo", APIXO_PARAMS)
        wait_until(lambda: env.job(job["id"])["vendor_job_id"] is not None, timeout=30)
        after = env.job(job["id"])
        assert after["vendor_job_id"] == "task_10" and after["status"] == "queued"
        assert len(stand_in.submits) == 10 and after["submit_attempts"] == 10


def test_429_past_the_retry_window_fails_rate_limited(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer]
) -> None:
    """A vendor that never clears within RELAY_SUBMIT_RETRY_FOR fails the job with its code."""
    stand_in, server = vendor
    stand_in.answers = ["429"] * 10_000
    with relay_at(tmp_path, server, submit_retry_for=0.3) as env:
        job = env.submit("apixo", APIXO_PARAMS)
        wait_until(lambda: env.job(job["id"])["status"] == "failed", timeout=30)
        after = env.job(job["id"])
        assert after["error"]["code"] == "rate_limited" and "of retries" in after["error"]["message"]
        assert after["submit_pending"] is False


def test_apiframe_5xx_is_resent_with_the_same_idempotency_key(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer]
) -> None:
    """Apiframe has an idempotency key: a 500 is an ambiguous answer that is safe to send again."""
    stand_in, server = vendor
    stand_in.answers = ["500", "503"]
    with relay_at(tmp_path, server) as env:
        job = env.submit("apiframe", APIFRAME_PARAMS)
        wait_until(lambda: env.job(job["id"])["vendor_job_id"] is not None)
        assert len(stand_in.submits) == 3
        assert "submit_outcome_unknown" not in env.job(job["id"])["flags"]


@pytest.mark.parametrize("answer", ["503", "hang"])
def test_ambiguous_apixo_submit_is_never_resent_and_its_callback_is_applied(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer], answer: str
) -> None:
    """A 5xx its page gives no retry advice for (503, from the older error page) or no answer at all:
    APIXO has no idempotency key, so the job waits, flagged, and the vendor's later callback on the
    job's URL (the token is proof) is applied."""
    stand_in, server = vendor
    stand_in.answers = [answer]
    with relay_at(tmp_path, server, vendor_timeout=0.3) as env:
        env.subscribe()
        job = env.submit("apixo", APIXO_PARAMS)
        assert job["status"] == "queued" and "submit_outcome_unknown" in job["flags"]
        assert job["error"] is None and job["submit_pending"] is False
        response = apixo_callback(stand_in, "task_1", "success")
        assert response.status_code == 200 and response.json()["verdict"] == "applied"
        after = env.job(job["id"])
        assert (after["status"], after["vendor_job_id"]) == ("succeeded", "task_1")
        wait_until(lambda: event_id(job["id"], "job.succeeded") in env.sub_log.by_event_id())
        stand_in.release.set()
        assert len(stand_in.submits) == 1


def test_unknown_outcome_without_a_callback_fails_at_the_deadline(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer]
) -> None:
    """Only RELAY_JOB_TIMEOUT ends a job whose submit outcome is unknown: vendor_timeout."""
    stand_in, server = vendor
    stand_in.answers = ["503"]
    with relay_at(tmp_path, server, job_timeout=0.5) as env:
        job = env.submit("apixo", APIXO_PARAMS)
        assert job["status"] == "queued"
        wait_until(lambda: env.job(job["id"])["status"] == "failed")
        assert env.job(job["id"])["error"]["code"] == "vendor_timeout"
        assert len(stand_in.submits) == 1


def test_a_success_after_an_unknown_outcome_timed_out_is_delivered(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer]
) -> None:
    """A submit whose answer never came fails vendor_timeout at the deadline, yet the vendor may have
    the job: its success callback afterwards is applied and delivered once, flagged after_relay_timeout."""
    stand_in, server = vendor
    stand_in.answers = ["hang"]
    with relay_at(tmp_path, server, vendor_timeout=0.3, job_timeout=0.6) as env:
        env.subscribe()
        job = env.submit("apixo", APIXO_PARAMS)
        failed = env.wait_status(job["id"], "failed")
        assert failed["error"]["code"] == "vendor_timeout" and failed["vendor_job_id"] is None
        response = apixo_callback(stand_in, "task_1", "success")
        assert response.status_code == 200 and response.json()["verdict"] == "applied"
        after = env.job(job["id"])
        assert (after["status"], after["vendor_job_id"], after["error"]) == ("succeeded", "task_1", None)
        assert "after_relay_timeout" in after["flags"]
        succeeded = event_id(job["id"], "job.succeeded")
        wait_until(lambda: succeeded in env.sub_log.by_event_id())
        assert env.sub_log.by_event_id()[succeeded][0].json["data"]["after_relay_timeout"] is True
        stand_in.release.set()
        assert len(stand_in.submits) == 1


@pytest.mark.parametrize("status", ["500", "502", "504"])
def test_apixo_5xx_its_page_says_to_retry_is_sent_again_from_the_outbox(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer], status: str
) -> None:
    """Seed 003: 500 and 502 "Retry with backoff", 504 "Retry or use callback mode": APIXO's submit is
    sent again with backoff until it is taken, every attempt counted, and the job is not left waiting
    as an unknown outcome."""
    stand_in, server = vendor
    stand_in.answers = [status, status]
    with relay_at(tmp_path, server, submit_inline_wait=0.5) as env:
        job = env.submit("apixo", APIXO_PARAMS)
        wait_until(lambda: env.job(job["id"])["vendor_job_id"] is not None, timeout=30)
        after = env.job(job["id"])
        assert (after["vendor_job_id"], after["status"], after["submit_attempts"]) == ("task_3", "queued", 3)
        assert "submit_outcome_unknown" not in after["flags"] and len(stand_in.submits) == 3


# -- transient vendor failures resubmit ----------------------------------------------------------
def test_transient_apixo_failure_resubmits_and_only_the_final_outcome_is_emitted(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer]
) -> None:
    """failCode Timeout (seed 003: "Retry or use callback mode") submits the job anew; the old task's
    late callback is superseded; subscribers see queued and succeeded only."""
    stand_in, server = vendor
    with relay_at(tmp_path, server) as env:
        env.subscribe(event_types=["job.queued", "job.succeeded", "job.failed"])
        job = env.submit("apixo", APIXO_PARAMS)
        assert job["vendor_job_id"] == "task_1"
        failed = apixo_callback(stand_in, "task_1", "failed", "Timeout")
        assert failed.status_code == 200 and failed.json()["verdict"] == "resubmitted"
        wait_until(lambda: env.job(job["id"])["vendor_job_id"] == "task_2")
        late = apixo_callback(stand_in, "task_1", "failed", "Timeout")
        assert late.status_code == 200 and late.json()["verdict"] == "superseded"
        done = apixo_callback(stand_in, "task_2", "success")
        assert done.json()["verdict"] == "applied"
        after = env.job(job["id"])
        assert after["status"] == "succeeded" and after["previous_vendor_job_ids"] == ["task_1"]
        assert [e["type"] for e in after["events"]] == ["job.queued", "job.succeeded"]
        assert len(stand_in.submits) == 2


def test_transient_failures_past_the_resubmit_cap_fail_the_job(
    tmp_path: Path, vendor: tuple[Vendor, RunningServer]
) -> None:
    """With RELAY_RESUBMIT_MAX=1 the second transient failure is final."""
    stand_in, server = vendor
    with relay_at(tmp_path, server, resubmit_max=1) as env:
        job = env.submit("apixo", APIXO_PARAMS)
        assert apixo_callback(stand_in, "task_1", "failed", "RateLimited").json()["verdict"] == "resubmitted"
        wait_until(lambda: env.job(job["id"])["vendor_job_id"] == "task_2")
        assert apixo_callback(stand_in, "task_2", "failed", "RateLimited").json()["verdict"] == "applied"
        after = env.job(job["id"])
        assert after["status"] == "failed" and after["error"]["code"] == "RateLimited"


# -- LTX pollForResult --------------------------------------------------------------------------
def test_ltx_poll_for_result_answer_is_awaited_past_the_vendor_timeout(tmp_path: Path) -> None:
    """useapi holds a pollForResult answer up to 3 s x n: the relay waits for it (3 n + 15 s), so the
    completed job it carries is not lost, with one submit."""
    fake = FakeConfig(callback_delay=0.02, apixo_allow_http=True, time_scale=0.1)
    with relay_env(tmp_path, fake=fake, vendor_timeout=0.3) as env:
        job = env.submit("ltxstudio", {"jobId": ltx_source_job(), "pollForResult": 5})
        env.wait_status(job["id"], "succeeded")
        assert len(env.fake.submits("ltx")) == 1
        assert "submit_outcome_unknown" not in env.job(job["id"])["flags"]
    assert (
        ADAPTERS["ltxstudio"]
        .submit_request(
            ADAPTERS["ltxstudio"].params_model.model_validate(
                {"jobId": ltx_source_job(), "pollForResult": 20}
            ),
            callback_url=None,
            job_id="job_1",
        )
        .timeout
        == 75.0
    )


# -- crash safety ---------------------------------------------------------------------------------
def test_a_job_committed_but_never_sent_is_submitted_after_a_restart(
    tmp_path: Path, relay_database: str, vendor: tuple[Vendor, RunningServer]
) -> None:
    """The state a kill -9 leaves between commit and first attempt: a worker submits the job."""
    _stand_in, server = vendor
    db = relay_database
    store = open_test_store(db)
    try:
        job = store.create_job(
            "apixo", APIXO_PARAMS, reference=None, token_hash="0" * 64, token="tok", submit=True
        )
    finally:
        store.close()
    env = relay_environ(
        db, apixo_api_key="k", apixo_base_url=server.url, allow_private_targets=True, poll_interval=0.02
    )
    with RelayProcess.start("worker", ["worker"], env, tmp_path) as worker:
        wait_until(lambda: _job(db, job.id)["vendor_job_id"] == "task_1", timeout=20, message=worker.stderr())


def test_kill_9_mid_submit_never_resends_a_non_idempotent_job(
    tmp_path: Path, relay_database: str, vendor: tuple[Vendor, RunningServer]
) -> None:
    """serve is killed while APIXO holds the submit; after a restart the lease expires and the job is
    flagged outcome-unknown (the vendor may have it), not sent a second time."""
    stand_in, server = vendor
    stand_in.answers = ["hang"]
    db = relay_database
    env = relay_environ(
        db,
        api_token=API_TOKEN,
        apixo_api_key="k",
        apixo_base_url=server.url,
        allow_private_targets=True,
        poll_interval=0.02,
        submit_inline_wait=0.2,
        vendor_timeout=0.5,
        lease_seconds=1,
    )
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    port = free_port()
    with RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as serve:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(serve, f"{url}/healthz")
        job = httpx.post(f"{url}/v1/jobs", json={"vendor": "apixo", "params": APIXO_PARAMS}, headers=headers)
        assert job.status_code == 202 and job.json()["submit_pending"] is True
        serve.send_signal(signal.SIGKILL)
        serve.wait_exit(10)
    assert len(stand_in.submits) == 1
    with RelayProcess.start("worker", ["worker"], env, tmp_path) as worker:
        wait_until(
            lambda: "submit_outcome_unknown" in _job(db, job.json()["id"])["flags"],
            timeout=30,
            message=worker.stderr(),
        )
    assert len(stand_in.submits) == 1


def _job(db: str, job_id: str) -> dict[str, Any]:
    store = open_test_store(db)
    try:
        return store.get_job(job_id).to_json()
    finally:
        store.close()


# -- APIXO callback URL -------------------------------------------------------------------------
def test_apixo_with_its_real_base_url_refuses_an_http_public_url() -> None:
    """APIXO takes only https callback_url (seed 003): with its real base URL the submit is refused at
    once; with another base URL it is a start-up warning only."""
    adapter = ADAPTERS["apixo"]
    real = Settings(apixo_api_key=SecretStr("k"), public_url="http://127.0.0.1:8000")
    with pytest.raises(Exception) as refused:
        check_callback_url(real, adapter)
    assert getattr(refused.value, "code", None) == "callback_url_not_https"
    assert "every APIXO submit will fail" in callback_url_warnings(real)[0]
    proxy = Settings(
        apixo_api_key=SecretStr("k"), public_url="http://127.0.0.1:8000", apixo_base_url="http://127.0.0.1:9"
    )
    check_callback_url(proxy, adapter)
    assert "sent anyway" in callback_url_warnings(proxy)[0]
    assert (
        callback_url_warnings(Settings(apixo_api_key=SecretStr("k"), public_url="https://relay.example.com"))
        == []
    )
    check_callback_url(real, ADAPTERS["apiframe"])


def test_apixo_http_refusal_through_the_api_stores_nothing(tmp_path: Path) -> None:
    """POST /v1/jobs for APIXO at its real base URL with an http public URL: 422 callback_url_not_https."""
    with relay_env(tmp_path, apixo_base_url="https://api.apixo.ai") as env:
        response = env.client.post("/v1/jobs", json={"vendor": "apixo", "params": APIXO_PARAMS})
        assert response.status_code == 422 and response.json()["error"]["code"] == "callback_url_not_https"
        assert env.ok(env.client.get("/v1/jobs"), 200)["data"] == []


def test_submit_backoff_honours_retry_after_and_grows() -> None:
    """Retry-After wins (capped at 300 s); otherwise base x 2^(n-1), jittered x1-1.5, capped."""
    assert submit_backoff(2.0, 5, 30.0) == 30.0
    assert submit_backoff(2.0, 1, 9999.0) == 300.0
    assert 8.0 <= submit_backoff(2.0, 3, None) <= 12.0
    assert submit_backoff(2.0, 40, None) <= 300.0


def test_default_backoffs_follow_seed_003() -> None:
    """By default a retried submit waits at least 10 s, doubling ("Retry with exponential backoff"),
    and a resubmit after a transient failCode at least 30 s, doubling: never at once."""
    settings = Settings()
    firsts = [submit_backoff(settings.submit_backoff, 1, None) for _ in range(200)]
    assert min(firsts) >= 10 and max(firsts) < 15
    assert min(submit_backoff(settings.submit_backoff, 2, None) for _ in range(200)) >= 20
    resubmits = [[resubmit_delay(settings, done) for _ in range(200)] for done in (0, 1, 2)]
    assert [min(delays) >= 30 * 2**done for done, delays in enumerate(resubmits)] == [True, True, True]
    assert max(resubmits[0]) < 45 and max(resubmit_delay(settings, 40) for _ in range(20)) <= 3600


# -- APIXO retried as its page says, against the fake vendors (issue 20) -------------------------
@pytest.mark.parametrize("marker", ["submit429", "submit500", "flaky502", "flaky504"])
def test_apixo_submit_error_then_success_ends_with_the_image(tmp_path: Path, marker: str) -> None:
    """The fake APIXO answers the first submit with 429, 500, 502 or 504 and takes the second: the job
    is sent again and succeeds, with two submits counted."""
    with relay_env(tmp_path, submit_backoff=0.01, submit_inline_wait=0.5) as env:
        image = source_image(f"{marker}-{uuid.uuid4().hex[:8]}")
        job = env.submit("apixo", {"input": {"image_urls": [image]}})
        done = env.wait_status(job["id"], "succeeded", timeout=30)
        sent = [r for r in env.fake.submits("apixo") if r.body["input"]["image_urls"] == [image]]
        assert [r.status for r in sent] == [int(marker[-3:]), 200]
        assert done["submit_attempts"] == 2 and done["outputs"]


@pytest.mark.parametrize("vendor", ["ltxstudio", "dreamina"])
def test_other_vendors_never_resend_a_submit_answered_500(tmp_path: Path, vendor: str) -> None:
    """Issue 9's rule stays for vendors without an idempotency key whose page says nothing of retries:
    a 500 may have made the job, so it is not sent again; the job waits for its callback."""
    with relay_env(tmp_path, submit_backoff=0.01) as env:
        source = ltx_source_job("submit500") if vendor == "ltxstudio" else dreamina_source_job("submit500")
        job = env.submit(vendor, {"jobId": source} if vendor == "ltxstudio" else {"jobid": source})
        assert "submit_outcome_unknown" in job["flags"] and job["status"] == "queued"
        assert len(env.fake.submits("ltx" if vendor == "ltxstudio" else "dreamina")) == 1


@pytest.mark.parametrize("marker", ["flakyRateLimited", "flakyTimeout", "flakyUnknown"])
def test_a_transient_failcode_resubmits_and_the_second_task_delivers(tmp_path: Path, marker: str) -> None:
    """The fake APIXO fails the first task with RateLimited, Timeout or "Unknown error" (seed 003: retry)
    and completes the second: the job is resubmitted once, after the backoff, and succeeds."""
    with relay_env(tmp_path, resubmit_backoff=0.05) as env:
        env.subscribe(event_types=["job.queued", "job.succeeded", "job.failed"])
        image = source_image(f"{marker}-{uuid.uuid4().hex[:8]}")
        job = env.submit("apixo", {"input": {"image_urls": [image]}})
        done = env.wait_status(job["id"], "succeeded", timeout=30)
        assert done["resubmits"] == 1 and done["previous_vendor_job_ids"] == [job["vendor_job_id"]]
        resubmitted = [i for i in done["inbound"] if i["verdict"] == "resubmitted"]
        assert len(resubmitted) == 1 and resubmitted[0]["error"].startswith(f"{marker.removeprefix('flaky')}")
        assert [e["type"] for e in done["events"]] == ["job.queued", "job.succeeded"]
        assert len([r for r in env.fake.submits("apixo") if r.body["input"]["image_urls"] == [image]]) == 2


def test_a_resubmit_waits_for_its_backoff(tmp_path: Path) -> None:
    """A transient failCode does not resubmit at once: the new submit is planned RELAY_RESUBMIT_BACKOFF
    later (the stored decision), and nothing is sent meanwhile."""
    with relay_env(tmp_path, resubmit_backoff=3600.0) as env:
        image = source_image(f"flakyTimeout-{uuid.uuid4().hex[:8]}")
        job = env.submit("apixo", {"input": {"image_urls": [image]}})
        wait_until(lambda: env.job(job["id"])["resubmits"] == 1, message="never resubmitted")
        after = env.job(job["id"])
        assert (after["status"], after["submit_pending"], after["vendor_job_id"]) == ("queued", True, None)
        ((submit_at, updated_at),) = query(
            env.database_url, "SELECT submit_at, updated_at FROM jobs WHERE id = ?", (job["id"],)
        )
        assert submit_at is not None, "the new submit was not left waiting"
        assert 3_590_000 <= submit_at - updated_at <= 5_400_000  # the backoff x1-1.5, less a few ms
        assert len(env.fake.submits("apixo")) == 1
