"""Issue 8's hostile-probe findings, each closed: cross-job callbacks and polls (``mismatch``), vendor
job ids in status paths, source job caps, poison bodies, tokens at rest, unbounded stored data, reads
behind the write lock, and null or non-ASCII-digit API values. Everything runs on loopback against a
real relay, the fake vendors and a real subscriber."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fixtures import payload
from fixtures.harness import serve_in_thread, wait_until
from receiver.fakes import (
    apiframe_signature,
    dreamina_source_job,
    ltx_source_job,
    source_image,
)
from receiver.vendors import ADAPTERS
from tests.databases import query, sqlite_only
from tests.relay_env import RelayEnv, relay_env

ASYNC_VENDORS = ("ltxstudio", "dreamina", "apiframe", "apixo")
LOST_JOBS: dict[str, dict[str, Any]] = {  # the fake never calls these back
    "ltxstudio": {"jobId": ltx_source_job("lost")},
    "dreamina": {"jobid": dreamina_source_job("lost")},
    "apiframe": {"model": "topaz-image-upscale", "topazUpscaleParams": {"image": source_image("lost")}},
    "apixo": {"input": {"image_urls": [source_image("lost")]}},
}
COMPLETED = {
    "apixo": "callback_success",
    "ltxstudio": "callback_completed",
    "dreamina": "callback_upscale_completed",
    "apiframe": "callback_completed_images",
}
OTHER_JOB_IDS = {  # valid shapes, but never this test's job
    "apixo": "task_someoneelse",
    "ltxstudio": "email:other@example.com-job:11111111-2222-4333-8444-555555555555-type:image",
    "dreamina": "j0302140530111111111i-u99999-US:other@example.com-bot:dreamina",
    "apiframe": "0f0e0d0c-0b0a-4908-8706-050403020100",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    with relay_env(tmp_path_factory.mktemp("hardening"), max_inbound_per_job=150) as running:
        yield running


def body_for(vendor: str, vendor_job_id: str, name: str | None = None) -> bytes:
    """The vendor's completed callback payload, about ``vendor_job_id``."""
    data = json.loads(payload(vendor, name or COMPLETED[vendor]))
    if vendor == "apixo":
        data["data"]["taskId"] = vendor_job_id
    else:
        data["jobid" if vendor == "dreamina" else "jobId"] = vendor_job_id
    return json.dumps(data).encode()


def post(env: RelayEnv, url: str, vendor: str, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if vendor == "apiframe":
        headers["X-Webhook-Signature"] = apiframe_signature(env.fake.config.apiframe_api_key, body)
    return httpx.post(url, content=body, headers=headers)


def lost_job(env: RelayEnv, vendor: str) -> tuple[dict[str, Any], str]:
    """A submitted job the fake never calls back, and its callback URL."""
    job = env.submit(vendor, LOST_JOBS[vendor])
    assert job["vendor_job_id"], job
    for record in reversed(env.fake.submits()):
        if isinstance(record.body, dict):
            for key in ("replyUrl", "webhookUrl", "callback_url"):
                if key in record.body:
                    return job, str(record.body[key])
    raise AssertionError("no callback URL submitted")


def inbound_of(env: RelayEnv, job_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = env.ok(
        env.client.get("/v1/inbound", params={"job_id": job_id, "limit": 500}), 200
    )["data"]
    return rows


# -- 2. a callback about another vendor job ------------------------------------------------------
@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_callback_about_another_vendor_job_is_a_mismatch(env: RelayEnv, vendor: str) -> None:
    """Job A's body (Apiframe's validly signed) on job B's URL: 422, stored as mismatch, B unchanged."""
    job, url = lost_job(env, vendor)
    before = env.job(job["id"])
    response = post(env, url, vendor, body_for(vendor, OTHER_JOB_IDS[vendor]))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "vendor_job_mismatch"
    (stored,) = [i for i in inbound_of(env, job["id"]) if i["kind"] == "callback"]
    assert stored["verdict"] == "mismatch" and OTHER_JOB_IDS[vendor] in stored["error"]
    after = env.job(job["id"])
    assert after["status"] == before["status"] != "succeeded" and after["outputs"] == []
    assert after["events"] == before["events"]
    own = post(env, url, vendor, body_for(vendor, job["vendor_job_id"]))
    assert own.status_code == 200 and own.json()["verdict"] == "applied"


def polled_apixo(task_id: str, status_data: dict[str, Any], polled: list[str] | None = None) -> Starlette:
    """A minimal APIXO (seed 003): every submit gets ``task_id``, every status poll (its query kept in
    ``polled``) answers the documented success shape with ``status_data`` merged into ``data``."""

    async def submit(request: Request) -> JSONResponse:
        return JSONResponse({"code": 200, "message": "success", "data": {"taskId": task_id}})

    async def status(request: Request) -> JSONResponse:
        if polled is not None:
            polled.append(request.url.query)
        answer: dict[str, Any] = json.loads(payload("apixo", "status_success"))
        answer["data"].update(status_data)
        return JSONResponse(answer)

    return Starlette(
        routes=[
            Route("/api/v1/generateTask/image-upscaler", submit, methods=["POST"]),
            Route("/api/v1/statusTask/image-upscaler", status, methods=["GET"]),
        ]
    )


def polling_relay(tmp_path: Path, vendor_url: str) -> AbstractContextManager[RelayEnv]:
    """A relay polling APIXO at ``vendor_url`` 0.05 s after a submit, then every 0.05 s."""
    return relay_env(
        tmp_path, poll_after={"apixo": 0.05}, poll_every={"apixo": 0.05}, apixo_base_url=vendor_url
    )


def test_poll_answer_about_another_job_is_a_mismatch(tmp_path: Path) -> None:
    """A status answer naming another taskId is stored as mismatch and never applied."""
    polled: list[str] = []
    vendor = polled_apixo("task_mine", {"taskId": "task_notmine"}, polled)
    with serve_in_thread(vendor) as mini, polling_relay(tmp_path, mini.url) as env:
        job = env.submit("apixo", {"input": {"image_urls": [source_image()]}})
        assert job["vendor_job_id"] == "task_mine"
        wait_until(lambda: any(i["verdict"] == "mismatch" for i in inbound_of(env, job["id"])))
        assert polled and all(q == "taskId=task_mine" for q in polled)
        after = env.job(job["id"])
        assert after["status"] == "queued" and after["outputs"] == []
        assert {i["verdict"] for i in after["inbound"] if i["kind"] == "poll"} == {"mismatch"}


# -- 3. vendor job ids never leave the documented status path ------------------------------------
STATUS_PREFIXES = {
    "ltxstudio": "/v1/ltxstudio/assets/",
    "dreamina": "/v1/dreamina/images/",
    "apiframe": "/v2/jobs/",
    "apixo": "/api/v1/statusTask/image-upscaler",
}


@settings(max_examples=300, deadline=None)
@given(vendor=st.sampled_from(ASYNC_VENDORS), job_id=st.text(min_size=1, max_size=80))
def test_status_requests_stay_on_the_documented_path(vendor: str, job_id: str) -> None:
    """Whatever the id, a status request is one path segment (or one query value) under the documented path."""
    request = ADAPTERS[vendor].status_request(job_id)
    assert request is not None and request.method == "GET"
    url = httpx.URL("https://vendor.example" + request.path, params=request.query)
    assert url.host == "vendor.example"
    prefix = STATUS_PREFIXES[vendor]
    if vendor == "apixo":
        assert url.path == prefix and list(url.params.multi_items()) == [("taskId", job_id)]
    else:
        assert url.path.startswith(prefix) and not url.query
        segment = url.raw_path.decode("ascii").removeprefix(prefix)
        assert segment and "/" not in segment and "?" not in segment and "#" not in segment
        assert httpx.URL("https://x/" + segment).path == "/" + job_id


@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_source_callback_with_a_path_in_its_job_id_is_opaque(env: RelayEnv, vendor: str) -> None:
    """A vendor job id shaped like a path is an opaque id (issue 20): the source's job is created with
    it, verbatim, and its status request stays one segment (or query value) of the documented path; an
    id with a control character is a 422 that creates nothing."""
    source = env.ok(env.client.post("/v1/sources", json={"vendor": vendor}), 201)
    hostile = f"../../../x{vendor}?probe=1#f"
    response = post(env, source["callback_url"], vendor, body_for(vendor, hostile))
    assert response.status_code == 200, response.text
    jobs = env.ok(env.client.get("/v1/jobs", params={"limit": 500}), 200)["data"]
    assert [j["vendor_job_id"] for j in jobs if j["source_id"] == source["id"]] == [hostile]
    request = ADAPTERS[vendor].status_request(hostile)
    assert request is not None
    url = httpx.URL("https://vendor.example" + request.path, params=request.query)
    raw_path = url.raw_path.decode("ascii").partition("?")[0]
    prefix = STATUS_PREFIXES[vendor]
    assert raw_path.startswith(prefix) and raw_path.count("/") == prefix.count("/")
    refused = post(env, source["callback_url"], vendor, body_for(vendor, "x\ny"))
    assert refused.status_code == 422 and "control character" in refused.json()["error"]["message"]
    jobs = env.ok(env.client.get("/v1/jobs", params={"limit": 500}), 200)["data"]
    assert len([j for j in jobs if j["source_id"] == source["id"]]) == 1


def test_a_source_creates_at_most_the_hourly_cap_of_jobs(tmp_path: Path) -> None:
    """Past RELAY_SOURCE_MAX_JOBS_PER_HOUR new jobs, a source callback gets 429 and creates nothing."""
    with relay_env(tmp_path, source_max_jobs_per_hour=2) as env:
        source = env.ok(env.client.post("/v1/sources", json={"vendor": "apixo"}), 201)
        codes = [
            post(env, source["callback_url"], "apixo", body_for("apixo", f"task_cap{n}")).status_code
            for n in range(3)
        ]
        assert codes == [200, 200, 429]
        again = post(env, source["callback_url"], "apixo", body_for("apixo", "task_cap0"))
        assert again.status_code == 200 and again.json()["verdict"] == "duplicate"
        jobs = env.ok(env.client.get("/v1/jobs"), 200)["data"]
        assert sorted(j["vendor_job_id"] for j in jobs) == ["task_cap0", "task_cap1"]


# -- 4. any bytes: stored, never a 500 -------------------------------------------------------------
def test_lone_surrogate_callback_is_applied_not_a_500(env: RelayEnv) -> None:
    """`"failMsg": "\\ud800"` is valid JSON; the job fails with U+FFFD in its place."""
    job, url = lost_job(env, "apixo")
    body = (
        b'{"code": 200, "data": {"taskId": "' + job["vendor_job_id"].encode() + b'", "state": "failed",'
        b' "failCode": "SensitiveContent", "failMsg": "\\ud800 broke"}}'
    )
    response = post(env, url, "apixo", body)
    assert response.status_code == 200 and response.json()["verdict"] == "applied"
    after = env.job(job["id"])
    assert after["status"] == "failed" and after["error"]["message"] == "\ufffd broke"
    (stored,) = [i for i in inbound_of(env, job["id"]) if i["kind"] == "callback"]
    raw = env.client.get(stored["body_url"])
    assert raw.status_code == 200 and raw.content == body


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
HOSTILE_BYTES = st.one_of(
    st.binary(max_size=300),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b'"\\ud800"', b'{"jobId": "\\udfff"}', b'{"data": {"taskId": "\\ud800"}}', b"\xff\xfe"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40).map(
        lambda t: json.dumps({"data": {"taskId": t, "state": "failed", "failMsg": t}, "jobId": t}).encode()
    ),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vendor=st.sampled_from(ASYNC_VENDORS), body=HOSTILE_BYTES)
def test_any_bytes_on_a_callback_url_are_stored_and_never_a_5xx(
    env: RelayEnv, vendor: str, body: bytes
) -> None:
    """Arbitrary bytes (lone surrogate escapes included) on every vendor's callback URL: 200 or 4xx, one
    stored row per request, kept as received."""
    job_id, url = _FUZZ.setdefault(vendor, _fresh(env, vendor))
    before = len(inbound_of(env, job_id))
    response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    assert response.status_code == 200 or 400 <= response.status_code < 500
    rows = inbound_of(env, job_id)
    assert len(rows) == before + 1
    assert env.client.get(rows[0]["body_url"]).content == body


_FUZZ: dict[str, tuple[str, str]] = {}


def _fresh(env: RelayEnv, vendor: str) -> tuple[str, str]:
    job, url = lost_job(env, vendor)
    return str(job["id"]), url


# -- 5. callback tokens at rest --------------------------------------------------------------------
def test_echoed_reply_url_is_stored_without_its_token(env: RelayEnv) -> None:
    """LTX echoes replyUrl; the stored body, headers and API answers carry a marker, never the token."""
    job, url = lost_job(env, "ltxstudio")
    token = url.rsplit("/", 1)[1]
    data = json.loads(body_for("ltxstudio", job["vendor_job_id"]))
    data["replyUrl"] = url
    body = json.dumps(data).replace("/", "\\/").encode()  # JSON may escape the slashes
    response = httpx.post(url, content=body, headers={"Content-Type": "application/json", "Referer": url})
    assert response.status_code == 200, response.text
    for path in (f"/v1/jobs/{job['id']}", f"/v1/inbound?job_id={job['id']}"):
        text = env.client.get(path).text
        assert token not in text and "[redacted]" in text
    (stored,) = [i for i in inbound_of(env, job["id"]) if i["kind"] == "callback"]
    assert stored["headers"]["referer"].endswith("/v1/callbacks/ltxstudio/[redacted]")
    rows = query(env.database_url, "SELECT body, headers FROM inbound")
    assert all(token.encode() not in bytes(b) and token not in h for b, h in rows)


@sqlite_only("checks the modes of the SQLite file and its -wal and -shm files")
def test_database_files_are_owner_only(env: RelayEnv) -> None:
    """The database and its -wal and -shm files are mode 0600."""
    for suffix in ("", "-wal", "-shm"):
        path = env.db.with_name(env.db.name + suffix)
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))


# -- 7. bounded stored and returned data --------------------------------------------------------
def test_callbacks_per_job_are_capped_and_bodies_are_cut_with_a_link(tmp_path: Path) -> None:
    """Past RELAY_MAX_INBOUND_PER_JOB callbacks: 429, nothing stored; lists cut bodies at 8 KiB and
    body_url streams the whole one."""
    with relay_env(tmp_path, max_inbound_per_job=3) as env:
        job, url = lost_job(env, "apixo")
        big = json.dumps({"code": 200, "data": {"taskId": job["vendor_job_id"], "pad": "x" * 300_000}})
        codes = [httpx.post(url, content=big.encode()).status_code for _ in range(4)]
        assert codes[3] == 429 and all(c < 500 for c in codes[:3])
        rows = inbound_of(env, job["id"])
        assert len([r for r in rows if r["kind"] == "callback"]) == 3
        detail = env.job(job["id"])
        assert all(len(i["body"]) <= 8192 for i in detail["inbound"])
        cut = next(i for i in detail["inbound"] if i["kind"] == "callback")
        assert cut["body_truncated"] is True and cut["size"] == len(big)
        whole = env.client.get(cut["body_url"])
        assert whole.status_code == 200 and whole.content == big.encode()
        assert whole.headers["content-type"] == "application/octet-stream"
        assert env.client.get("/v1/inbound/in_nope/body").status_code == 404


def test_stored_response_headers_are_capped(tmp_path: Path) -> None:
    """A subscriber answering 100 headers of 8 KB leaves at most 4 KiB of them in the attempt."""

    async def hook(request: Request) -> JSONResponse:
        return JSONResponse({}, headers={f"x-pad-{n}": "y" * 8000 for n in range(100)})

    sink = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with serve_in_thread(sink) as server, relay_env(tmp_path) as env:
        env.ok(env.client.post("/v1/subscribers", json={"url": f"{server.url}/hook"}), 201)
        job = env.submit("apixo", {"input": {"image_urls": [source_image()]}})
        env.wait_status(job["id"], "succeeded")

        def attempts() -> list[dict[str, Any]]:
            rows = env.ok(env.client.get("/v1/deliveries"), 200)["data"]
            return [
                a for d in rows for a in env.client.get(f"/v1/deliveries/{d['id']}").json()["attempt_log"]
            ]

        wait_until(lambda: any(a["status_code"] == 200 for a in attempts()))
        for attempt in attempts():
            headers = attempt["response_headers"]
            assert sum(len(k) + len(v) for k, v in headers.items()) <= 4096 + 32
            assert headers.get("x-relay-truncated") == "true"


# -- 8. reads never wait behind the write lock -------------------------------------------------
@sqlite_only("holds SQLite's database-wide write lock from another connection")
def test_reads_answer_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """With the write lock held elsewhere: readiness and admin reads answer 200, a callback gets 503
    within RELAY_DB_BUSY_TIMEOUT, and its retry lands once the lock is gone."""
    with relay_env(tmp_path, db_busy_timeout=0.5) as env:
        job, url = lost_job(env, "apixo")
        body = body_for("apixo", job["vendor_job_id"])
        holder = sqlite3.connect(env.db, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            assert env.client.get("/readyz").status_code == 200
            assert env.client.get(f"/v1/jobs/{job['id']}").status_code == 200
            assert env.client.get("/v1/inbound").status_code == 200
            blocked = httpx.post(url, content=body)
            assert blocked.status_code == 503 and blocked.json()["error"]["code"] == "store_unavailable"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        retried = httpx.post(url, content=body)
        assert retried.status_code == 200 and retried.json()["verdict"] == "applied"


# -- 9. null and non-ASCII digits --------------------------------------------------------------
@pytest.mark.parametrize("limit", ["\u00b2", "\uff15", "\u0663", "", "-1", "1.0", " 5"])
def test_non_ascii_or_odd_limits_are_422(env: RelayEnv, limit: str) -> None:
    """?limit= takes ASCII digits only; anything else is a 422 with the error envelope."""
    for path in ("/v1/jobs", "/v1/events", "/v1/inbound", "/v1/deliveries"):
        response = env.client.get(path, params={"limit": limit})
        assert response.status_code == 422, (path, limit, response.text)
        assert response.json()["error"]["code"] == "validation_failed"


@pytest.mark.parametrize("field", ["url", "event_types", "enabled"])
def test_null_in_a_subscriber_patch_is_422(env: RelayEnv, field: str) -> None:
    """PATCH with {"url": null} (or another non-nullable field) is a 422 naming it; nothing changes."""
    created = env.ok(env.client.post("/v1/subscribers", json={"url": "https://hooks.example.com/x"}), 201)
    response = env.client.patch(f"/v1/subscribers/{created['id']}", json={field: None})
    assert response.status_code == 422 and field in response.json()["error"]["message"]
    after = env.ok(env.client.get(f"/v1/subscribers/{created['id']}"), 200)
    assert after["url"] == created["url"] and after["enabled"] is True


def test_non_ascii_digits_in_time_filters_are_422(env: RelayEnv) -> None:
    """since/until with fullwidth digits are refused, not read as times."""
    response = env.client.get("/v1/events", params={"since": "\uff12\uff10\uff12\uff16-01-01T00:00:00Z"})
    assert response.status_code == 422
