"""Sources: callback URLs for jobs submitted outside the relay, end to end on loopback.

``POST /v1/sources`` hands out a callback URL with its own token (shown once); each vendor callback on
it creates its job on first sight, keyed by the vendor job id, and from then on the job behaves like
any other (state machine, dedupe, events, verified deliveries).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dispatch.model import EVENT_TYPES, event_id
from fixtures import payload
from fixtures.harness import wait_until
from receiver.fakes import apiframe_signature
from receiver.fakes.subscriber import Delivery
from tests.relay_env import RelayEnv, relay_env

HOOK = "all"
ASYNC_VENDORS = ("ltxstudio", "dreamina", "apiframe", "apixo")
COMPLETED = {
    "apixo": "callback_success",
    "ltxstudio": "callback_completed",
    "dreamina": "callback_upscale_completed",
    "apiframe": "callback_completed_images",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    with relay_env(tmp_path_factory.mktemp("sources")) as running:
        running.subscribe(HOOK, event_types=list(EVENT_TYPES))
        yield running


def new_source(env: RelayEnv, vendor: str) -> dict[str, Any]:
    return env.ok(env.client.post("/v1/sources", json={"vendor": vendor}), 201)


def vendor_job_id(vendor: str, body: dict[str, Any]) -> str:
    if vendor == "apixo":
        return str(body["data"]["taskId"])
    return str(body["jobid" if vendor == "dreamina" else "jobId"])


def with_job_id(vendor: str, name: str, new_id: str | None = None) -> tuple[bytes, str]:
    """The payload file ``name`` of ``vendor`` (its vendor job id replaced by ``new_id``) and that id."""
    body = json.loads(payload(vendor, name))
    if new_id is not None:
        if vendor == "apixo":
            body["data"]["taskId"] = new_id
        else:
            body["jobid" if vendor == "dreamina" else "jobId"] = new_id
    return json.dumps(body).encode(), vendor_job_id(vendor, body)


def post(env: RelayEnv, url: str, vendor: str, body: bytes, *, sign: bool = True) -> httpx.Response:
    """POST a callback body as the vendor would (Apiframe's signed with the relay's Apiframe key)."""
    headers = {"Content-Type": "application/json"}
    if vendor == "apiframe" and sign:
        headers["X-Webhook-Signature"] = apiframe_signature(env.fake.config.apiframe_api_key, body)
    return httpx.post(url, content=body, headers=headers)


def source_jobs(env: RelayEnv, source_id: str) -> list[dict[str, Any]]:
    jobs = env.ok(env.client.get("/v1/jobs", params={"limit": 200}), 200)["data"]
    return [j for j in jobs if j["source_id"] == source_id]


def deliveries_for(env: RelayEnv, job_id: str) -> list[Delivery]:
    return [
        d
        for d in env.sub_log.deliveries(HOOK)
        if isinstance(d.json, dict) and d.json.get("data", {}).get("job_id") == job_id
    ]


def types_received(env: RelayEnv, job_id: str, count: int) -> list[str]:
    """Wait for ``count`` verified deliveries of the job; return their types by sequence."""
    wait_until(lambda: len(deliveries_for(env, job_id)) >= count, message=f"{job_id}: fewer than {count}")
    got = sorted(deliveries_for(env, job_id), key=lambda d: d.json["data"]["sequence"])
    assert all(d.verified is True for d in got), [d.verify_error for d in got]
    assert len({d.event_id for d in got}) == len(got)
    return [d.json["type"] for d in got]


def inbound_with_body(env: RelayEnv, vendor: str, body: bytes) -> list[dict[str, Any]]:
    rows = env.ok(env.client.get("/v1/inbound", params={"vendor": vendor, "limit": 200}), 200)["data"]
    return [r for r in rows if r["body"] == body.decode()]


# -- creating sources ----------------------------------------------------------------------------
@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_source_url_is_shown_once(env: RelayEnv, vendor: str) -> None:
    """POST /v1/sources answers 201 with a callback URL whose token never appears again in GET."""
    created = env.ok(env.client.post("/v1/sources", json={"vendor": vendor, "description": "acct"}), 201)
    prefix = f"{env.relay.url}/v1/callbacks/{vendor}/"
    assert created["callback_url"].startswith(prefix)
    token = created["callback_url"].removeprefix(prefix)
    assert len(token) >= 32 and "/" not in token
    assert (created["vendor"], created["description"]) == (vendor, "acct")
    listed = env.client.get("/v1/sources")
    one = env.client.get(f"/v1/sources/{created['id']}")
    assert listed.status_code == one.status_code == 200
    assert token not in listed.text and token not in one.text
    assert "callback_url" not in one.json()
    assert created["id"] in [s["id"] for s in listed.json()["data"]]
    other = new_source(env, vendor)
    assert other["callback_url"] != created["callback_url"]


def test_source_for_artnex_or_unknown_vendor_is_refused(env: RelayEnv) -> None:
    """Artnex never calls back (422) and an unknown vendor is not found (404)."""
    artnex = env.client.post("/v1/sources", json={"vendor": "artnex"})
    assert artnex.status_code == 422 and "artnex" in artnex.json()["error"]["message"]
    unknown = env.client.post("/v1/sources", json={"vendor": "nope"})
    assert unknown.status_code == 404


# -- callbacks on a source URL -------------------------------------------------------------------
@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_source_callback_creates_job_on_first_sight(env: RelayEnv, vendor: str) -> None:
    """A callback creates its job keyed by vendor job id; the same id reuses it, another id makes a new job."""
    source = new_source(env, vendor)
    url = source["callback_url"]
    body, vjid = with_job_id(vendor, COMPLETED[vendor])
    first = post(env, url, vendor, body)
    assert first.status_code == 200, first.text
    assert first.json()["verdict"] == "applied"
    (job,) = source_jobs(env, source["id"])
    assert (job["vendor"], job["vendor_job_id"], job["status"]) == (vendor, vjid, "succeeded")
    assert first.json()["event_ids"] == [event_id(job["id"], "job.succeeded")]
    # no submit here, so no job.queued: the first thing known is the outcome
    assert types_received(env, job["id"], 1) == ["job.succeeded"]
    assert deliveries_for(env, job["id"])[0].json["data"]["outputs"][0]["url"].startswith("https://")

    again = post(env, url, vendor, body)
    assert again.status_code == 200
    assert (again.json()["verdict"], again.json()["event_ids"]) == ("duplicate", [])
    assert [j["id"] for j in source_jobs(env, source["id"])] == [job["id"]]
    assert [i["verdict"] for i in env.job(job["id"])["inbound"]] == ["duplicate", "applied"]

    other_body, other_id = with_job_id(vendor, COMPLETED[vendor], f"{vjid}-2")
    if vendor == "ltxstudio":  # LTX job ids end in -type:image
        other_body, other_id = with_job_id(vendor, COMPLETED[vendor], vjid.replace("-type:", "-2-type:"))
    if vendor == "apiframe":  # Apiframe job ids are UUIDs
        other_body, other_id = with_job_id(vendor, COMPLETED[vendor], "0f0e0d0c-0b0a-4908-8706-050403020100")
    second = post(env, url, vendor, other_body)
    assert second.status_code == 200 and second.json()["verdict"] == "applied"
    jobs = {j["vendor_job_id"]: j for j in source_jobs(env, source["id"])}
    assert set(jobs) == {vjid, other_id}
    assert types_received(env, jobs[other_id]["id"], 1) == ["job.succeeded"]
    assert len(deliveries_for(env, job["id"])) == 1  # the duplicate emitted nothing


def test_source_job_moves_through_states_like_any_job(env: RelayEnv) -> None:
    """A running LTX callback then its completed one on a source URL give running, progress, succeeded."""
    source = new_source(env, "ltxstudio")
    active, vjid = with_job_id("ltxstudio", "callback_active")
    completed, _ = with_job_id("ltxstudio", "callback_completed", vjid)
    assert post(env, source["callback_url"], "ltxstudio", active).json()["verdict"] == "applied"
    (job,) = source_jobs(env, source["id"])
    assert (job["status"], job["progress"]) == ("running", 45)
    assert post(env, source["callback_url"], "ltxstudio", completed).json()["verdict"] == "applied"
    stale = post(env, source["callback_url"], "ltxstudio", active)
    assert stale.status_code == 200 and stale.json()["verdict"] == "stale"
    assert env.job(job["id"])["status"] == "succeeded"
    assert types_received(env, job["id"], 3) == ["job.running", "job.progress", "job.succeeded"]
    assert deliveries_for(env, job["id"])[-1].json["data"]["progress"] == 100


def test_garbage_on_a_source_url_is_stored_without_a_job(env: RelayEnv) -> None:
    """An unparseable body on a source URL is answered 422 and kept as invalid with no job."""
    source = new_source(env, "apixo")
    garbage = b'{"code": 200, "data": {"state": "success", "resultJson": "{nope"'
    answer = post(env, source["callback_url"], "apixo", garbage)
    assert answer.status_code == 422
    (row,) = inbound_with_body(env, "apixo", garbage)
    assert (row["verdict"], row["job_id"], row["kind"]) == ("invalid", None, "callback")
    assert row["error"]
    no_id = json.dumps({"code": 200, "data": {"state": "processing"}}).encode()
    assert post(env, source["callback_url"], "apixo", no_id).status_code == 422
    assert inbound_with_body(env, "apixo", no_id)[0]["verdict"] == "invalid"
    assert source_jobs(env, source["id"]) == []


@pytest.mark.parametrize("how", ["forged", "unsigned"])
def test_apiframe_source_callback_needs_the_signature(env: RelayEnv, how: str) -> None:
    """An Apiframe source callback with a wrong or missing signature is 401, stored rejected, and makes no job."""
    source = new_source(env, "apiframe")
    body, vjid = with_job_id("apiframe", COMPLETED["apiframe"], str(uuid.uuid4()))
    headers = {"Content-Type": "application/json"}
    if how == "forged":
        headers["X-Webhook-Signature"] = apiframe_signature("afk_not_the_relays_key", body)
    answer = httpx.post(source["callback_url"], content=body, headers=headers)
    assert answer.status_code == 401
    (row,) = inbound_with_body(env, "apiframe", body)
    assert (row["verdict"], row["job_id"], row["kind"]) == ("rejected", None, "callback")
    assert "X-Webhook-Signature" in row["error"]
    assert source_jobs(env, source["id"]) == []
    assert vjid not in [j["vendor_job_id"] for j in env.ok(env.client.get("/v1/jobs"), 200)["data"]]


def test_unknown_source_token_is_404(env: RelayEnv) -> None:
    """A callback to a token that matches no job or source is refused with 404 and nothing is stored."""
    before = len(env.ok(env.client.get("/v1/inbound", params={"limit": 500}), 200)["data"])
    source = new_source(env, "dreamina")
    wrong = source["callback_url"][:-4] + "AAAA"
    body, _ = with_job_id("dreamina", COMPLETED["dreamina"])
    assert post(env, wrong, "dreamina", body).status_code == 404
    other_vendor = source["callback_url"].replace("/dreamina/", "/apixo/")
    assert post(env, other_vendor, "apixo", body).status_code == 404
    assert len(env.ok(env.client.get("/v1/inbound", params={"limit": 500}), 200)["data"]) == before
