"""Vendor fidelity matrix: every async vendor x every fake scenario, end to end on loopback.

Each case submits one job through ``POST /v1/jobs`` and checks exactly what a subscriber to all five
event types received (verified with ``standardwebhooks``, once per ``webhook-id``, sequences 1..n,
nothing after the terminal event), plus what reached the fake vendor. One row per case is collected
into ``TABLE`` and printed at the end of the module (run with ``-s`` to see it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatch.model import EVENT_TYPES, event_id
from fixtures.harness import wait_until
from receiver.fakes import (
    FakeConfig,
    SubmitRecord,
    ltx_source_job,
)
from receiver.fakes.subscriber import Delivery
from tests.relay_env import RelayEnv, relay_env
from tests.vendor_inputs import FAKE_NAME, make_params, submits_for

ASYNC_VENDORS = ("ltxstudio", "dreamina", "apiframe", "apixo")
HOOK = "all"

Q, R, S, F = "job.queued", "job.running", "job.succeeded", "job.failed"


def P(percent: int) -> str:
    return f"job.progress@{percent}"


# What a subscriber to every type sees when every vendor message is applied in order.
NORMAL: dict[str, list[str]] = {
    "ltxstudio": [Q, S],  # one completion callback (seed 000); the active one only with altshape
    "dreamina": [Q, R, S],  # the submit response is the "created" (running) record
    "apiframe": [Q, R, P(30), P(70), S],  # progress 30 and 70 webhooks, then completed
    "apixo": [Q, S],  # APIXO calls back once, at the end
}
# When the terminal message is the first (or only) one applied after the submit.
TERMINAL_FIRST: dict[str, list[str]] = {
    "ltxstudio": [Q, S],
    "dreamina": [Q, R, S],
    "apiframe": [Q, S],
    "apixo": [Q, S],
}
FAIL_CODES = {
    "ltxstudio": "vendor_failed",
    "dreamina": "fail_code: 2043",
    "apiframe": "vendor_failed",
    "apixo": "ImageFormatIncorrect",
}

SCENARIOS = ("normal", "fail", "dup", "ooo", "lost", "lateprogress", "submit429", "submit500", "slow")
CASES = [(v, s) for v in ASYNC_VENDORS for s in SCENARIOS] + [
    ("apiframe", "forged"),
    ("apiframe", "unsigned"),
]

TABLE: list[tuple[str, ...]] = []
HEADER = ("vendor", "scenario", "job", "subscriber received (by sequence)", "vendor submits", "relay inbound")


# -- environments (one relay per configuration, shared by the module) ---------------------------------
FAKE = FakeConfig(callback_delay=0.05, apixo_retry_scale=0.001, apixo_allow_http=True)
POLL_FAST = {"poll_after": dict.fromkeys(ASYNC_VENDORS, 0.3), "poll_every": dict.fromkeys(ASYNC_VENDORS, 0.1)}


def _started(tmp: Path, fake: FakeConfig, **overrides: Any) -> Iterator[RelayEnv]:
    with relay_env(tmp, fake=fake, **overrides) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        yield env


@pytest.fixture(scope="module")
def main_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """First poll after a minute: every outcome here comes from callbacks. A retried submit waits 0.2 s."""
    late = {"poll_after": dict.fromkeys(ASYNC_VENDORS, 60.0)}
    yield from _started(tmp_path_factory.mktemp("main"), FAKE, submit_backoff=0.2, **late)


@pytest.fixture(scope="module")
def poll_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """First poll 0.3 s after submit, then every 0.1 s."""
    yield from _started(tmp_path_factory.mktemp("poll"), FAKE, **POLL_FAST)


@pytest.fixture(scope="module")
def slow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """The fake answers ``slow`` submits after 1.5 s; the relay gives up on a vendor after 0.5 s."""
    fake = FakeConfig(callback_delay=0.05, apixo_retry_scale=0.001, slow_seconds=1.5, apixo_allow_http=True)
    yield from _started(tmp_path_factory.mktemp("slow"), fake, vendor_timeout=0.5, submit_backoff=0.2)


@pytest.fixture(scope="module", autouse=True)
def _print_table() -> Iterator[None]:
    yield
    if TABLE:
        print("\n\n" + render_table(TABLE))


def render_table(rows: list[tuple[str, ...]]) -> str:
    """A Markdown table of the collected rows, sorted by vendor and scenario order."""
    order = {s: i for i, s in enumerate((*SCENARIOS, "forged", "unsigned", "quota"))}
    rows = sorted(rows, key=lambda r: (r[0], order.get(r[1], 99)))
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- helpers -------------------------------------------------------------------------------------


def fake_jobs_for(env: RelayEnv, vendor: str, src: str) -> list[dict[str, Any]]:
    return [j for j in env.fake.jobs(FAKE_NAME.get(vendor, vendor)) if j["input"] == src]


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


def settle(env: RelayEnv, vendor: str, job_id: str, src: str, status: str) -> dict[str, Any]:
    """Wait until the job is ``status``, the fake sent every callback of it, and the subscriber got
    every stored event of it; returns the job (with inbound and events)."""
    env.wait_status(job_id, status, timeout=15)
    wait_until(
        lambda: all(j["finished"] for j in fake_jobs_for(env, vendor, src)),
        timeout=15,
        message=f"fake {vendor} job for {src} never finished",
    )
    job = env.job(job_id)
    stored = {e["id"] for e in job["events"]}
    wait_until(
        lambda: stored <= {d.event_id for d in deliveries_for(env, job_id)},
        timeout=15,
        message=f"not every stored event of {job_id} was delivered",
    )
    return env.job(job_id)


def check_received(env: RelayEnv, job: dict[str, Any], expected: list[str]) -> list[Delivery]:
    """Assert the subscriber got exactly ``expected`` for ``job``: once each, verified, sequences
    1..n in state-machine order, the terminal id deterministic. Returns the deliveries."""
    got = deliveries_for(env, job["id"])
    ids = [d.event_id or "" for d in got]
    assert all(ids), f"a delivery without webhook-id: {ids}"
    assert len(ids) == len(set(ids)), f"an event was delivered twice: {ids}"
    for d in got:
        assert d.verified is True, d.verify_error
        assert d.headers["webhook-id"] == d.json["id"] == d.headers["idempotency-key"]
    by_seq = sorted(got, key=lambda d: d.json["data"]["sequence"])
    assert [label(d.json) for d in by_seq] == expected
    assert [d.json["data"]["sequence"] for d in by_seq] == list(range(1, len(expected) + 1))
    assert sorted(ids) == sorted(e["id"] for e in job["events"])
    terminal = expected[-1]
    if terminal in (S, F):
        assert by_seq[-1].event_id == event_id(job["id"], terminal)
        assert by_seq[-1].json["data"]["status"] == job["status"] == terminal.removeprefix("job.")
    return got


def polled_view(env: RelayEnv, job: dict[str, Any], normal: list[str], least: list[str]) -> list[str]:
    """What a subscriber may see of a job the relay learned about by polling: ``least`` (submit and
    outcome), plus whichever of the vendor's intermediate steps a poll happened to catch, in order.
    Returns what it got when that holds (asserts otherwise)."""
    seen = [
        label(d.json)
        for d in sorted(deliveries_for(env, job["id"]), key=lambda d: d.json["data"]["sequence"])
    ]
    steps = iter(normal)
    assert all(step in steps for step in seen), f"{seen} is not in the order of {normal}"
    assert set(least) <= set(seen) and seen[:1] == least[:1] and seen[-1:] == least[-1:], (seen, least)
    return seen


def record_row(
    vendor: str, scenario: str, job: dict[str, Any], got: list[Delivery], submits: list[SubmitRecord]
) -> None:
    status = job["status"] + (f" ({job['error']['code']})" if job["error"] else "")
    events = " ".join(label(d.json) for d in sorted(got, key=lambda d: d.json["data"]["sequence"]))
    arrival = [label(d.json) for d in got]
    if arrival != [label(d.json) for d in sorted(got, key=lambda d: d.json["data"]["sequence"])]:
        events += f" [arrived: {' '.join(arrival)}]"
    inbound = " ".join(f"{i['kind']}:{i['verdict']}" for i in sorted(job["inbound"], key=lambda i: i["id"]))
    sent = f"{len(submits)}: " + ",".join(str(s.status) for s in submits)
    TABLE.append((vendor, scenario, status, events.replace("job.", ""), sent, inbound))


# -- the matrix ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("vendor", "scenario"), CASES, ids=[f"{v}-{s}" for v, s in CASES])
def test_vendor_scenario(request: pytest.FixtureRequest, vendor: str, scenario: str) -> None:
    """The subscriber sees exactly the events the vendor's behaviour implies, once each, in state order."""
    in_poll_env = scenario in ("lost", "forged", "unsigned")
    env: RelayEnv = request.getfixturevalue(
        "poll_env" if in_poll_env else "slow_env" if scenario == "slow" else "main_env"
    )
    marker = "" if scenario == "normal" else scenario
    params, src = make_params(vendor, marker)
    submitted = env.submit(vendor, params)
    job_id = submitted["id"]

    # A submit whose answer never came (slow) or was a 5xx, at a vendor without an idempotency key whose
    # page does not say to retry (APIXO's does: seed 003), is never sent again: the job waits for its
    # callback, which the per-job token proves is this job's.
    timed_out = scenario == "slow" and vendor != "apiframe"
    resent_500 = ("apiframe", "apixo")
    if scenario == "submit500" and vendor not in resent_500:  # the fake did not take the job: nothing comes
        job = env.job(job_id)
        assert (job["status"], job["submit_pending"]) == ("queued", False)
        assert "submit_outcome_unknown" in job["flags"]
        assert [i["verdict"] for i in job["inbound"]] == ["outcome_unknown"]
        submits = submits_for(env, vendor, src)
        assert len(submits) == 1 and submits[0].status == 500, "a 5xx submit was sent again"
        record_row(vendor, scenario, job, [], submits)
        return
    failed = scenario == "fail"
    expected = {
        "fail": [*NORMAL[vendor][:-1], F],
        "ooo": TERMINAL_FIRST[vendor],
        "lost": TERMINAL_FIRST[vendor],
        "forged": [Q, S],
        "unsigned": [Q, S],
    }.get(scenario, NORMAL[vendor])
    if timed_out:  # no submit answer, so no job.queued: the first thing known comes from the callbacks
        expected = [e for e in NORMAL[vendor] if e != Q]
        if vendor == "dreamina":  # its running state came from the lost submit answer ("created")
            expected = [S]

    job = settle(env, vendor, job_id, src, "failed" if failed else "succeeded")
    if in_poll_env:  # learned by polling: a poll may catch the job mid-way, before its end
        expected = polled_view(env, job, NORMAL[vendor], expected)
    got = check_received(env, job, expected)
    submits = submits_for(env, vendor, src)
    callbacks = sorted((i for i in job["inbound"] if i["kind"] == "callback"), key=lambda i: i["id"])
    verdicts = [i["verdict"] for i in callbacks]
    sent = env.fake.callbacks(job_id=job["vendor_job_id"]) if job["vendor_job_id"] else []

    if scenario == "fail":
        assert job["error"]["code"] == FAIL_CODES[vendor] and job["error"]["message"]
    elif scenario == "dup":
        assert [c.kind for c in sent].count("terminal") == 2
        assert verdicts.count("duplicate") == 1 and "stale" not in verdicts
    elif scenario == "ooo":  # terminal first, then every earlier step: all stale, nothing emitted
        assert sent[0].kind == "terminal" and len(sent) >= 2
        assert verdicts == ["applied"] + ["stale"] * (len(sent) - 1)
    elif scenario == "lateprogress":  # one more running/progress message after the terminal one
        assert sent[-1].kind != "terminal" and verdicts[-1] == "stale"
        assert verdicts[:-1] == ["applied"] * (len(sent) - 1)
    elif scenario == "lost":
        assert verdicts == [] and sent == []
        assert any(i["kind"] == "poll" and i["verdict"] == "applied" for i in job["inbound"])
    elif scenario in ("forged", "unsigned"):
        assert verdicts and set(verdicts) == {"rejected"}
        assert len(sent) == 3 and {c.status_code for c in sent} == {401}
        listed = env.ok(env.client.get("/v1/inbound", params={"job_id": job_id}), 200)["data"]
        assert {i["verdict"] for i in listed if i["kind"] == "callback"} == {"rejected"}
        assert any(i["kind"] == "poll" and i["verdict"] == "applied" for i in job["inbound"])

    if scenario == "submit429" or (scenario == "submit500" and vendor in resent_500):
        assert len(submits) == 2 and submits[0].status == int(scenario[-3:])
        assert 200 <= submits[1].status < 300
        if scenario == "submit429":  # Retry-After: 1 was honoured
            assert submits[1].received_at - submits[0].received_at >= 0.9
    elif scenario == "slow" and vendor == "apiframe":
        assert len(submits) == 2  # timed out, re-sent under the same key, answered with the same job
        assert submitted["status"] == "queued"
        assert submits[0].job_id == submits[1].job_id == job["vendor_job_id"]
    elif timed_out:
        assert len(submits) == 1, "a non-idempotent vendor was sent the job twice"
        assert (submitted["status"], submitted["error"]) == ("queued", None)
        assert "submit_outcome_unknown" in job["flags"] and "conflict" not in job["flags"]
        # the vendor did run it: its callbacks are applied, and the vendor job id is learnt from them
        assert verdicts[-1] == "applied" and job["vendor_job_id"] == submits[0].job_id
    else:
        assert len(submits) == 1
    if vendor == "apiframe":
        assert {s.headers.get("idempotency-key") for s in submits} == {job_id}
    record_row(vendor, scenario, job, got, submits)


# -- Artnex (synchronous) ------------------------------------------------------------------------
def test_artnex_success_is_queued_then_succeeded(main_env: RelayEnv) -> None:
    """An Artnex upscale succeeds within POST /v1/jobs and the subscriber gets queued then succeeded."""
    params, src = make_params("artnex", "")
    job = main_env.submit("artnex", params)
    assert job["status"] == "succeeded" and job["vendor_job_id"].startswith("req_ups_")
    job = settle(main_env, "artnex", job["id"], src, "succeeded")
    got = check_received(main_env, job, [Q, S])
    submits = submits_for(main_env, "artnex", src)
    assert len(submits) == 1
    record_row("artnex", "normal", job, got, submits)


def test_artnex_failure_keeps_the_vendor_code(main_env: RelayEnv) -> None:
    """An Artnex 400 makes POST /v1/jobs answer 202 failed with Artnex's own code, delivered as job.failed."""
    params, src = make_params("artnex", "fail")
    job = main_env.submit("artnex", params)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_image_format" and job["error"]["message"]
    job = settle(main_env, "artnex", job["id"], src, "failed")
    got = check_received(main_env, job, [F])
    assert got[0].json["data"]["error"] == job["error"]
    submits = submits_for(main_env, "artnex", src)
    assert len(submits) == 1
    record_row("artnex", "fail", job, got, submits)


def test_artnex_daily_quota_is_reported_not_retried(main_env: RelayEnv) -> None:
    """Artnex's 429 (a daily quota) fails the job as rate_limit_exceeded naming the quota, without a re-send."""
    params, src = make_params("artnex", "submit429")
    job = main_env.submit("artnex", params)
    job = settle(main_env, "artnex", job["id"], src, job["status"])
    submits = submits_for(main_env, "artnex", src)
    record_row("artnex", "quota", job, deliveries_for(main_env, job["id"]), submits)  # what happens today
    assert job["status"] == "failed"
    assert job["error"]["code"] == "rate_limit_exceeded"
    assert "daily quota" in job["error"]["message"]
    assert len(submits) == 1
    check_received(main_env, job, [F])


def test_artnex_timeout_is_not_resent(slow_env: RelayEnv) -> None:
    """Artnex answers after the relay's vendor timeout: it has no idempotency key, so the relay does not
    send again (a second paid upscale), and being synchronous it has no callback to wait for: the job
    fails at once as outcome_unknown saying the credits may have been spent."""
    params, src = make_params("artnex", "slow")
    job = slow_env.submit("artnex", params)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "outcome_unknown" and "credits" in job["error"]["message"]
    job = settle(slow_env, "artnex", job["id"], src, "failed")
    got = check_received(slow_env, job, [F])
    # the fake records a submit when it answers, 1.5 s in: wait for that answer, then count
    wait_until(
        lambda: submits_for(slow_env, "artnex", src), timeout=10, message="the slow submit never ended"
    )
    submits = submits_for(slow_env, "artnex", src)
    assert len(submits) == 1 and submits[0].status == 200, "Artnex was sent the job twice"
    assert "may have started" in job["error"]["message"] and job["vendor_job_id"] is None
    record_row("artnex", "slow", job, got, submits)


# -- vendor refusals at submit -------------------------------------------------------------------
REFUSALS = [
    ("ltxstudio", {"jobId": ltx_source_job(pending=True)}, "vendor_rejected"),  # 400: source not completed
    ("dreamina", {"jobid": "j0302140530000000000i-u12345-US:demo@example.com-bot:gone"}, "vendor_not_found"),
]


@pytest.mark.parametrize(("vendor", "params", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_vendor_refusal_fails_the_job_with_its_code(
    main_env: RelayEnv, vendor: str, params: dict[str, Any], code: str
) -> None:
    """A vendor 400/404 at submit answers 202 failed with the mapped code and the vendor's message, once."""
    src = next(iter(params.values()))
    job = main_env.submit(vendor, params)
    assert job["status"] == "failed" and job["error"]["code"] == code
    assert job["error"]["message"] and job["vendor_job_id"] is None
    job = settle(main_env, vendor, job["id"], src, "failed")
    got = check_received(main_env, job, [F])
    submits = submits_for(main_env, vendor, src)
    assert len(submits) == 1 and submits[0].status in (400, 404)
    record_row(vendor, "refused", job, got, submits)


def test_wrong_credentials_fail_each_vendor_as_unauthorized(tmp_path: Path) -> None:
    """Refused credentials fail every submit at once as vendor_unauthorized (Artnex: its own code)."""
    wrong = {
        "useapi_token": "user:1-wrong",
        "apiframe_api_key": "afk_wrong",
        "apixo_api_key": "wrong",
        "artnex_api_key": "wrong",
    }
    with relay_env(tmp_path, fake=FAKE, **wrong) as env:
        env.subscribe(HOOK, event_types=list(EVENT_TYPES))
        for vendor in (*ASYNC_VENDORS, "artnex"):
            params, src = make_params(vendor, "")
            job = env.submit(vendor, params)
            code = "invalid_api_key" if vendor == "artnex" else "vendor_unauthorized"
            assert (job["status"], job["error"]["code"]) == ("failed", code), vendor
            job = settle(env, vendor, job["id"], src, "failed")
            check_received(env, job, [F])
            assert [s.status for s in submits_for(env, vendor, src)] == [401], vendor
