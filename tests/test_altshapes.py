"""The relay against each vendor's undocumented-but-plausible shapes (fake marker ``altshape``).

VENDORS.md lists, per vendor, shapes the documentation leaves open; the fake sends them for an input
carrying ``altshape`` (see ``receiver.fakes``). Each case submits one job through ``POST
/v1/jobs`` and checks that it succeeds with the vendor's output URL and that a subscriber to all five
event types gets exactly the expected events, once each, in sequence order. The callback cases run with
the default first poll (a minute away), so every outcome comes from callbacks; the status cases add
``lost`` (no callbacks) and a first poll while the job is still running, so it comes from status answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from dispatch.model import EVENT_TYPES, event_id
from fixtures.harness import wait_until
from receiver.fakes import FakeConfig
from receiver.fakes.subscriber import Delivery
from tests.relay_env import RelayEnv, relay_env
from tests.vendor_inputs import FAKE_NAME, make_params

ASYNC_VENDORS = ("ltxstudio", "dreamina", "apiframe", "apixo")
HOOK = "all"

Q, R, S = "job.queued", "job.running", "job.succeeded"


def P(percent: int) -> str:
    return f"job.progress@{percent}"


# What a subscriber to every type sees when the altshape callbacks are applied in order.
EXPECTED: dict[str, list[str]] = {
    "ltxstudio": [Q, R, P(50), P(100), S],  # active 50, completed 100 without asset, completed with it
    "dreamina": [Q, R, S],  # the submit answer is already "created": its callback changes nothing
    "apiframe": [Q, R, P(30), P(70), S],
    "apixo": [Q, S],
}

# -- environments --------------------------------------------------------------------------------
# Status cases: one step every 0.5 s (terminal at ~1 s, or ~1.5 s for three steps); the first poll at
# 1.25 s lands while a three-step job shows its middle step, then polls follow every 0.05 s x1.5.
POLL_FAKE = FakeConfig(callback_delay=0.5, apixo_retry_scale=0.001, apixo_allow_http=True)
POLL_SOON = {
    "poll_after": dict.fromkeys(ASYNC_VENDORS, 1.25),
    "poll_every": dict.fromkeys(ASYNC_VENDORS, 0.05),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """Default polling: outcomes come from callbacks."""
    fake = FakeConfig(callback_delay=0.05, apixo_retry_scale=0.001, apixo_allow_http=True)
    with relay_env(tmp_path_factory.mktemp("altshape"), fake=fake) as started:
        started.subscribe(HOOK, event_types=list(EVENT_TYPES))
        yield started


@pytest.fixture(scope="module")
def poll_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """First poll 1.25 s after submit, then every 0.05 s (growing x1.5)."""
    with relay_env(tmp_path_factory.mktemp("altshape-poll"), fake=POLL_FAKE, **POLL_SOON) as started:
        started.subscribe(HOOK, event_types=list(EVENT_TYPES))
        yield started


# -- helpers -------------------------------------------------------------------------------------


def fake_record(env: RelayEnv, vendor: str, vendor_job_id: str) -> dict[str, Any]:
    """What the fake's status endpoint shows for the job now."""
    job = env.fake.job(FAKE_NAME.get(vendor, vendor), vendor_job_id)
    assert job is not None, f"the fake has no {vendor} job {vendor_job_id}"
    return job.record


def vendor_url(vendor: str, record: dict[str, Any]) -> str:
    """The output URL inside the vendor's terminal status record."""
    if vendor == "ltxstudio":
        return str(record["status"]["artifact"]["assetUrl"])
    if vendor == "dreamina":
        return str(record["response"]["images"][0]["imageUrl"])
    if vendor == "apiframe":
        assert isinstance(record["result"], str), record["result"]  # the altshape: a bare URL
        return record["result"]
    return str(json.loads(record["resultJson"])["resultUrls"][0])


def deliveries_for(env: RelayEnv, job_id: str) -> list[Delivery]:
    return [
        d
        for d in env.sub_log.deliveries(HOOK)
        if isinstance(d.json, dict) and d.json.get("data", {}).get("job_id") == job_id
    ]


def label(body: dict[str, Any]) -> str:
    if body["type"] == "job.progress":
        return P(body["data"]["progress"])
    return str(body["type"])


def settle(env: RelayEnv, vendor: str, job_id: str) -> dict[str, Any]:
    """Wait until the job succeeded, the fake sent all its callbacks and every stored event of the job
    reached the subscriber; returns the job (with ``inbound`` and ``events``)."""
    job = env.wait_status(job_id, "succeeded", timeout=15)
    fake = env.fake.job(FAKE_NAME.get(vendor, vendor), job["vendor_job_id"])
    wait_until(
        lambda: fake is not None and fake.finished, timeout=15, message=f"fake {vendor} job never finished"
    )
    stored = {e["id"] for e in env.job(job_id)["events"]}
    wait_until(
        lambda: stored <= {d.event_id for d in deliveries_for(env, job_id)},
        timeout=15,
        message=f"not every stored event of {job_id} was delivered",
    )
    return env.job(job_id)


def received(env: RelayEnv, job: dict[str, Any]) -> list[Delivery]:
    """The job's deliveries by sequence, after asserting: verified, once each, sequences 1..n, exactly
    the stored events, the last one ``job.succeeded`` with the job's deterministic id."""
    got = deliveries_for(env, job["id"])
    ids = [d.event_id for d in got]
    assert len(ids) == len(set(ids)), f"an event was delivered twice: {ids}"
    for d in got:
        assert d.verified is True, d.verify_error
        assert d.headers["webhook-id"] == d.json["id"] == d.event_id
    by_seq = sorted(got, key=lambda d: d.json["data"]["sequence"])
    assert [d.json["data"]["sequence"] for d in by_seq] == list(range(1, len(got) + 1))
    assert sorted(map(str, ids)) == sorted(e["id"] for e in job["events"])
    assert label(by_seq[-1].json) == S and by_seq[-1].event_id == event_id(job["id"], S)
    return by_seq


def inbound(job: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The job's inbound messages of ``kind`` (``callback``, ``poll``), oldest first."""
    return sorted((i for i in job["inbound"] if i["kind"] == kind), key=lambda i: (i["received_at"], i["id"]))


def ltx_without_asset(message: dict[str, Any]) -> bool:
    """An LTX job model saying ``completed`` with no ``status.artifact``."""
    status = json.loads(message["body"])["status"]
    return bool(status["type"] == "completed" and "artifact" not in status)


# -- callbacks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_altshape_callbacks_succeed_with_the_vendor_url(env: RelayEnv, vendor: str) -> None:
    """Callbacks in each vendor's alternative shape bring the job to succeeded with the vendor's URL and
    the expected events, once each, in sequence order."""
    params, _src = make_params(vendor, "altshape")
    job = settle(env, vendor, env.submit(vendor, params)["id"])
    url = vendor_url(vendor, fake_record(env, vendor, job["vendor_job_id"]))

    got = received(env, job)
    assert [label(d.json) for d in got] == EXPECTED[vendor]
    assert [o["url"] for o in job["outputs"]] == [url]
    assert [o["url"] for o in got[-1].json["data"]["outputs"]] == [url]
    callbacks = inbound(job, "callback")
    assert not {i["verdict"] for i in callbacks} & {"invalid", "rejected", "unknown_state", "conflict"}
    sent = env.fake.callbacks(job_id=job["vendor_job_id"])
    assert len(callbacks) == len(sent) and {c.status_code for c in sent} == {200}


def test_ltx_completed_without_asset_keeps_the_job_running(env: RelayEnv) -> None:
    """An LTX ``completed`` callback without ``assetUrl`` is applied as progress 100, not as success."""
    params, _src = make_params("ltxstudio", "altshape")
    job = settle(env, "ltxstudio", env.submit("ltxstudio", params)["id"])
    callbacks = inbound(job, "callback")
    assert [ltx_without_asset(i) for i in callbacks] == [False, True, False]
    _active, early, final = callbacks
    succeeded = event_id(job["id"], S)
    # applied: running with progress 100 (a new percentage), which emits job.progress@100 and no success
    assert early["verdict"] == "applied"
    assert early["event_ids"] == [event_id(job["id"], "job.progress", 100)]
    assert final["verdict"] == "applied" and final["event_ids"] == [succeeded]
    assert "assetUrl" in final["body"]


def test_dreamina_created_callback_and_echoed_reply_fields(env: RelayEnv) -> None:
    """Dreamina's extra ``created`` callback is a duplicate and the echoed ``replyRef``/``replyUrl`` are
    accepted; the status record itself does not carry them."""
    params, _src = make_params("dreamina", "altshape")
    submitted = env.submit("dreamina", params)
    job = settle(env, "dreamina", submitted["id"])
    sent = env.fake.callbacks(job_id=job["vendor_job_id"])
    assert [c.kind for c in sent] == ["running", "terminal"]
    for callback in sent:
        body = json.loads(callback.body)
        assert body["replyRef"] == job["id"] and body["replyUrl"] == env.callback_url("/dreamina/")
    record = fake_record(env, "dreamina", job["vendor_job_id"])
    assert "replyRef" not in record and "replyUrl" not in record
    assert [i["verdict"] for i in inbound(job, "callback")] == ["duplicate", "applied"]


def test_apiframe_bare_string_result_is_the_delivered_output(env: RelayEnv) -> None:
    """Apiframe's bare-string ``result`` (webhooks also carrying ``type``) is the output URL the relay
    stores and delivers."""
    params, _src = make_params("apiframe", "altshape")
    job = settle(env, "apiframe", env.submit("apiframe", params)["id"])
    sent = env.fake.callbacks(job_id=job["vendor_job_id"])
    bodies = [json.loads(c.body) for c in sent]
    assert (
        [b["type"] for b in bodies] == [b["event"] for b in bodies] == ["progress", "progress", "completed"]
    )
    result = bodies[-1]["result"]
    assert isinstance(result, str) and result == fake_record(env, "apiframe", job["vendor_job_id"])["result"]

    succeeded = next(e for e in job["events"] if e["type"] == S)
    assert [o["url"] for o in succeeded["payload"]["data"]["outputs"]] == [result]
    assert [o["url"] for o in job["outputs"]] == [result]
    assert job["outputs"][0]["mime_type"] == "image/png"
    listed = env.ok(env.client.get("/v1/deliveries", params={"event_id": succeeded["id"]}), 200)["data"]
    assert [d["status"] for d in listed] == ["succeeded"]
    (delivery,) = [d for d in deliveries_for(env, job["id"]) if d.event_id == succeeded["id"]]
    assert [o["url"] for o in delivery.json["data"]["outputs"]] == [result]


def test_apixo_extra_result_keys_and_no_cost_time(env: RelayEnv) -> None:
    """APIXO's ``resultJson`` with a key beside ``resultUrls`` and no ``costTime`` still gives the URL."""
    params, _src = make_params("apixo", "altshape")
    job = settle(env, "apixo", env.submit("apixo", params)["id"])
    (sent,) = env.fake.callbacks(job_id=job["vendor_job_id"])
    data = json.loads(sent.body)["data"]
    assert "costTime" not in data and json.loads(data["resultJson"])["seed"] == 1
    assert [o["url"] for o in job["outputs"]] == [vendor_url("apixo", data)]
    assert [i["verdict"] for i in inbound(job, "callback")] == ["applied"]


# -- status answers --------------------------------------------------------------------------------
@pytest.mark.parametrize("vendor", ASYNC_VENDORS)
def test_altshape_status_answers_succeed_with_the_vendor_url(poll_env: RelayEnv, vendor: str) -> None:
    """With no callbacks (``lost``), status answers in each vendor's alternative shape bring the job to
    succeeded with the vendor's URL, every poll parsed."""
    params, _src = make_params(vendor, "altshape lost")
    job = settle(poll_env, vendor, poll_env.submit(vendor, params)["id"])
    url = vendor_url(vendor, fake_record(poll_env, vendor, job["vendor_job_id"]))

    got = received(poll_env, job)
    assert label(got[0].json) == Q
    assert [o["url"] for o in job["outputs"]] == [url]
    polls = inbound(job, "poll")
    assert inbound(job, "callback") == [] and polls[-1]["event_ids"] == [event_id(job["id"], S)]
    assert not {i["verdict"] for i in polls} & {"invalid", "unknown_state", "conflict"}
    if vendor == "ltxstudio":  # the first poll (1.25 s) finds the asset-less completed (shown 1-1.5 s)
        early = [i for i in polls if ltx_without_asset(i)]
        assert early and early[0]["verdict"] == "applied"
        assert early[0]["event_ids"] == [event_id(job["id"], R), event_id(job["id"], "job.progress", 100)]


def test_apiframe_webhook_status_sent_is_read_on_poll(poll_env: RelayEnv) -> None:
    """A poll of a running Apiframe job showing ``webhookStatus: "sent"`` is parsed, not rejected."""
    params, _src = make_params("apiframe", "altshape")
    job = settle(poll_env, "apiframe", poll_env.submit("apiframe", params)["id"])
    polls = inbound(job, "poll")
    sent = [i for i in polls if json.loads(i["body"]).get("webhookStatus") == "sent"]
    assert sent, f"no poll saw webhookStatus 'sent': {[i['body'] for i in polls]}"
    assert {i["verdict"] for i in sent} <= {"applied", "duplicate"}
    assert [label(d.json) for d in received(poll_env, job)] == EXPECTED["apiframe"]
