"""Vendor analytics (issue 13): the ``vendor_stats`` store verb on both engines (real SQLite files and a
real Postgres), migration 008's backfill, ``GET /v1/stats`` and ``upscale-relay stats``. Jobs are made
through the store's own verbs (create, submit, callbacks, polls, submit responses); only the
turnarounds of the percentile tests are then set to known values, so the expected numbers are exact."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dispatch.model import Anomaly, Cost, JobError, JobState, JobUpdate, Output, now_ms
from dispatch.secretbox import SecretBox
from dispatch.store.records import RawMessage
from dispatch.store.sqlite import SQLiteStore
from fixtures.harness import serve_in_thread
from receiver.api.schemas import StatsReport as StatsAnswer
from receiver.app import create_app
from receiver.cli import cli
from receiver.database import migrate, open_store
from receiver.fakes import source_image
from receiver.poller import Poller
from receiver.settings import Settings
from receiver.vendor_client import VendorClient
from tests.databases import sqlite_migrated_to
from tests.relay_env import API_TOKEN, TEST_SECRET_KEY

RAW = RawMessage({"content-type": "application/json"}, b"{}", "203.0.113.7:443")
HOUR = 3_600_000


def _finished(store: Any, vendor: str, kind: str, update: JobUpdate, *, submit: bool = True) -> str:
    """A job submitted to ``vendor`` (unless ``submit`` is false) whose message of ``kind`` applies ``update``."""
    job = store.create_job(vendor, {}, reference=None, token_hash=None, submit=not submit)
    if submit:
        store.mark_submitted(job.id, f"task_{job.id}")
    assert store.record_message(job.id, kind, RAW, update).verdict == "applied"
    return str(job.id)


def _seed(store: Any) -> dict[str, str]:
    """APIXO: 5 succeeded (4 by callback, 1 by poll), 3 failed (callback, timeout, submit refused), 1
    running, 2 queued (one retrying its submit, one with an unknown submit outcome); 2 duplicate, 1
    stale and 1 rejected callback, and a poll repeating a state; payload anomalies at ``data.costTime``
    (the running job twice, one succeeded job once) and ``data.createTime`` (one job). Artnex: 3 answered
    by the submit."""
    out = (Output("https://file.apixo.ai/a.jpg"),)
    ok = JobUpdate(JobState.SUCCEEDED, "success", outputs=out, cost=Cost(2.5, "usd"))
    ids = {f"ok{n}": _finished(store, "apixo", "callback", ok) for n in range(4)}
    polled = JobUpdate(JobState.SUCCEEDED, "success", outputs=out, cost=Cost(1.5, "usd"))
    ids["polled"] = _finished(store, "apixo", "poll", polled)
    ids["bad"] = _finished(
        store, "apixo", "callback", JobUpdate(JobState.FAILED, "fail", error=JobError("ImageFormatIncorrect"))
    )
    ids["late"] = _finished(
        store, "apixo", "poll", JobUpdate(JobState.FAILED, "timeout", error=JobError("timeout", "no result"))
    )
    refused = JobUpdate(JobState.FAILED, "submit_error", error=JobError("vendor_rejected", "HTTP 400"))
    ids["refused"] = _finished(store, "apixo", "response", refused, submit=False)
    running = store.create_job("apixo", {}, reference=None, token_hash=None)
    store.mark_submitted(running.id, "task_r")
    store.record_message(running.id, "callback", RAW, JobUpdate(JobState.RUNNING, "running"))
    odd = (Anomaly("data.costTime", '"41s"'), Anomaly("data.createTime", '"soon"'))
    store.record_message(running.id, "poll", RAW, JobUpdate(JobState.RUNNING, "running", anomalies=odd))
    again = (Anomaly("data.costTime", '"42s"'),)  # a second costTime deviation of the same job
    store.record_message(running.id, "poll", RAW, JobUpdate(JobState.RUNNING, "running", anomalies=again))
    store.record_message(ids["ok0"], "poll", RAW, replace(ok, anomalies=odd[:1]))
    retrying = store.create_job("apixo", {}, reference=None, token_hash=None, submit=True)
    store.retry_submit_at(retrying.id, now_ms() + HOUR, "rate_limited: HTTP 429 from APIXO")
    unknown = store.create_job("apixo", {}, reference=None, token_hash=None, submit=True)
    note = RawMessage({}, b"vendor_timeout: no answer", "vendor")
    store.record_message(
        unknown.id, "response", note, None, verdict="outcome_unknown", error="vendor_timeout"
    )
    store.end_submit(unknown.id, outcome_unknown=True)
    for key in ("ok0", "ok1"):
        assert store.record_message(ids[key], "callback", RAW, ok).verdict == "duplicate"
    assert (
        store.record_message(ids["polled"], "poll", RAW, polled).verdict == "duplicate"
    )  # a poll: not counted
    stale = JobUpdate(JobState.RUNNING, "running")
    assert store.record_message(ids["ok2"], "callback", RAW, stale).verdict == "stale"
    store.record_message(ids["ok3"], "callback", RAW, None, verdict="rejected", error="bad signature")
    for n, code in enumerate((None, None, "content_policy")):
        state = JobState.FAILED if code else JobState.SUCCEEDED
        cost = None if code else Cost(4.0 + n, "credits")
        got = () if code else (Output("https://cdn.artnex.ai/a.jpg"),)
        update = JobUpdate(state, "x", outputs=got, error=JobError(code) if code else None, cost=cost)
        ids[f"artnex{n}"] = _finished(store, "artnex", "response", update)
    return ids


def _by_vendor(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["vendor"]: v for v in report["vendors"]}


def _percentile_cont(values: list[int], p: float) -> float:
    """Postgres' ``percentile_cont`` in plain Python: linear interpolation at ``p * (n - 1)``."""
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _set_turnarounds(store: Any, job_ids: list[str], millis: list[int]) -> None:
    with store.transaction() as conn:
        for job_id, ms in zip(job_ids, millis, strict=True):
            conn.execute("UPDATE jobs SET turnaround_ms = ? WHERE id = ?", (ms, job_id))


# the store verb ------------------------------------------------------------------------------------


def test_each_vendor_gets_exact_counts_outcome_paths_errors_and_cost(store: Any) -> None:
    """Jobs by state, success rate, failure and submit-error codes, outcome paths, lost-callback share,
    duplicate/stale/rejected callbacks and cost per unit are exactly what the verbs recorded."""
    _seed(store)
    figures = _by_vendor(store.vendor_stats(since=None, until=None, vendor=None).to_json())
    assert set(figures) == {"apixo", "artnex"}
    apixo = figures["apixo"]
    assert apixo["jobs"] == {"queued": 2, "running": 1, "succeeded": 5, "failed": 3, "total": 11}
    assert apixo["success_rate"] == 0.625
    assert apixo["failure_codes"] == [
        {"code": "ImageFormatIncorrect", "count": 1},
        {"code": "timeout", "count": 1},
        {"code": "vendor_rejected", "count": 1},
    ]
    assert apixo["outcome_via"] == {"callback": 5, "poll": 1, "response": 0, "submit": 1, "timeout": 1}
    assert apixo["lost_callback_share"] == round(1 / 6, 4)
    assert (apixo["duplicate_callbacks"], apixo["stale_callbacks"], apixo["signature_rejections"]) == (
        2,
        1,
        1,
    )
    assert apixo["submit_errors"] == [
        {"code": "outcome_unknown", "count": 1},
        {"code": "rate_limited", "count": 1},
        {"code": "vendor_rejected", "count": 1},
    ]
    assert apixo["cost"] == [{"unit": "usd", "total": 11.5, "jobs": 5, "resubmits": 0.0, "unreceived": 0.0}]
    assert apixo["cost_estimate"] == [] and apixo["submits"] == {"attempts": 0, "resubmits": 0}
    assert all(apixo["time_to_terminal_seconds"][p] is not None for p in ("p50", "p95", "p99"))
    artnex = figures["artnex"]
    assert artnex["jobs"] == {"queued": 0, "running": 0, "succeeded": 2, "failed": 1, "total": 3}
    assert artnex["outcome_via"]["response"] == 3 and artnex["lost_callback_share"] is None
    assert artnex["failure_codes"] == [{"code": "content_policy", "count": 1}]
    assert artnex["submit_errors"] == [] and artnex["duplicate_callbacks"] == 0
    assert artnex["cost"] == [
        {"unit": "credits", "total": 9.0, "jobs": 2, "resubmits": 0.0, "unreceived": 0.0}
    ]
    # jobs per anomalous field: the running job counts once for its two costTime deviations
    assert apixo["payload_anomalies"] == [
        {"field": "data.costTime", "count": 2},
        {"field": "data.createTime", "count": 1},
    ]
    assert artnex["payload_anomalies"] == []


def test_an_applied_terminal_update_records_cost_path_and_turnaround(store: Any) -> None:
    """The job row keeps the vendor's cost, how its outcome arrived and its submit-to-terminal time;
    the job's API shape shows the cost and the path."""
    ids = _seed(store)
    job = store.get_job(ids["ok0"])
    assert (job.cost_amount, job.cost_unit, job.outcome_via) == (2.5, "usd", "callback")
    assert job.turnaround_ms is not None and 0 <= job.turnaround_ms <= now_ms() - job.submitted_at
    assert job.to_json()["cost"] == {"amount": 2.5, "unit": "usd"}
    assert job.to_json()["outcome_via"] == "callback"
    refused = store.get_job(ids["refused"])
    assert (refused.outcome_via, refused.turnaround_ms, refused.cost_amount) == ("submit", None, None)
    assert store.get_job(ids["late"]).outcome_via == "timeout"
    assert store.get_job(ids["artnex0"]).outcome_via == "response"


def test_percentiles_are_percentile_cont_on_both_engines(store: Any) -> None:
    """p50/p95/p99 interpolate like Postgres' percentile_cont: the same seconds on SQLite and Postgres,
    and on Postgres the same as percentile_cont itself."""
    ok = JobUpdate(JobState.SUCCEEDED, "success", outputs=(Output("https://cdn.example.com/a.png"),))
    small = [_finished(store, "dreamina", "callback", ok) for _ in range(7)]
    _set_turnarounds(store, small, [1000, 2000, 3000, 4000, 5000, 10000, 60000])
    rnd = random.Random(13)
    many = [_finished(store, "apiframe", "callback", ok) for _ in range(101)]
    millis = [rnd.randrange(500, 600_000) for _ in many]
    _set_turnarounds(store, many, millis)
    one = [_finished(store, "ltxstudio", "poll", ok)]
    _set_turnarounds(store, one, [1234])
    figures = _by_vendor(store.vendor_stats(since=None, until=None, vendor=None).to_json())
    assert figures["dreamina"]["time_to_terminal_seconds"] == {"p50": 4.0, "p95": 45.0, "p99": 57.0}
    assert figures["ltxstudio"]["time_to_terminal_seconds"] == {"p50": 1.234, "p95": 1.234, "p99": 1.234}
    expected = {
        name: round(_percentile_cont(millis, p) / 1000, 3)
        for name, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }
    assert figures["apiframe"]["time_to_terminal_seconds"] == expected
    window = store.vendor_stats(since=0, until=now_ms() + HOUR, vendor=None).to_json()  # Postgres: ranked
    assert _by_vendor(window)["apiframe"]["time_to_terminal_seconds"] == expected
    assert _by_vendor(window)["dreamina"]["time_to_terminal_seconds"] == {
        "p50": 4.0,
        "p95": 45.0,
        "p99": 57.0,
    }
    (one_vendor,) = store.vendor_stats(since=0, until=None, vendor="apiframe").vendors
    assert one_vendor.turnaround_seconds == expected
    if store.sql.name == "postgres":
        row = store.conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY turnaround_ms) AS p50,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY turnaround_ms) AS p95,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY turnaround_ms) AS p99 FROM jobs WHERE vendor = ?",
            ("apiframe",),
        ).fetchone()
        assert {k: round(row[k] / 1000, 3) for k in ("p50", "p95", "p99")} == expected


def test_only_the_top_ten_failure_codes_are_listed(store: Any) -> None:
    """Twelve failure codes: the ten most frequent are listed, most frequent first, ties by code."""
    for n in range(12):
        for _ in range(1 + (n == 11) * 2):
            _finished(
                store, "dreamina", "callback", JobUpdate(JobState.FAILED, "x", error=JobError(f"code{n:02d}"))
            )
    (dreamina,) = store.vendor_stats(since=None, until=None, vendor="dreamina").to_json()["vendors"]
    codes = dreamina["failure_codes"]
    assert codes[0] == {"code": "code11", "count": 3}
    assert [c["code"] for c in codes[1:]] == [f"code{n:02d}" for n in range(9)]
    assert dreamina["jobs"]["failed"] == 14 and dreamina["success_rate"] == 0.0


def test_the_window_and_the_vendor_narrow_the_report(store: Any) -> None:
    """Jobs created (and messages received) before ``since`` or from ``until`` on, and other vendors'
    jobs, are left out; an empty window has no vendors."""
    _seed(store)
    now = now_ms()
    assert store.vendor_stats(since=now + HOUR, until=None, vendor=None).vendors == ()
    assert store.vendor_stats(since=None, until=now - HOUR, vendor=None).vendors == ()
    report = store.vendor_stats(since=now - HOUR, until=now + HOUR, vendor="artnex")
    assert [v.vendor for v in report.vendors] == ["artnex"]
    assert report.to_json()["since"].endswith("Z") and report.vendors[0].total == 3


def test_migration_008_fills_in_jobs_that_ended_before_it(tmp_path: Path) -> None:
    """A database at migration 007 with a job finished by a poll gets its outcome path and turnaround
    (from completed_at) when migrated."""
    path = tmp_path / "old.db"
    conn = sqlite_migrated_to(path, 7)
    conn.execute(
        "INSERT INTO jobs (id, vendor, status, params, created_at, updated_at, submitted_at, completed_at)"
        " VALUES ('job_1', 'apixo', 'succeeded', '{}', 1000, 9000, 2000, 9000)"
    )
    for n, (kind, verdict, at) in enumerate((("callback", "applied", 3000), ("poll", "applied", 9000))):
        conn.execute(
            "INSERT INTO inbound (id, job_id, vendor, kind, received_at, body, verdict)"
            " VALUES (?, 'job_1', 'apixo', ?, ?, x'7b7d', ?)",
            (f"in_{n}", kind, at, verdict),
        )
    conn.close()
    store = SQLiteStore.open(path, SecretBox(Fernet.generate_key()))
    try:
        job = store.get_job("job_1")
        assert (job.outcome_via, job.turnaround_ms) == ("poll", 7000)
        (apixo,) = store.vendor_stats(since=None, until=None, vendor=None).vendors
        assert apixo.lost_callback_share == 1.0 and apixo.turnaround_seconds["p50"] == 7.0
    finally:
        store.close()


# the faces -----------------------------------------------------------------------------------------


def _settings(url: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=url,
        api_token=SecretStr(API_TOKEN),
        secret_key=SecretStr(TEST_SECRET_KEY),
        allow_private_targets=True,
        **overrides,
    )


@pytest.fixture
def seeded(relay_database: str) -> str:
    """The relay's database (SQLite, or Postgres under RELAY_TEST_DATABASE), migrated and seeded."""
    migrate(_settings(relay_database))
    store = open_store(_settings(relay_database))
    try:
        _seed(store)
    finally:
        store.close()
    return relay_database


@asynccontextmanager
async def _client(url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An API client of a relay app on ``url`` (lifespan run, no worker); ``client.app`` is the app."""
    app = create_app(_settings(url, **overrides), run_worker=False)
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            await app({**scope, "state": dict(state or {})}, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://relay.test", headers=headers
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def test_the_api_answers_every_vendor_within_its_schema(seeded: str) -> None:
    """GET /v1/stats lists every known vendor (zeros where none), matches its documented schema and
    the store's numbers; ``vendor`` narrows it to one."""

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with _client(seeded) as client:
            every = await client.get("/v1/stats")
            one = await client.get("/v1/stats", params={"vendor": "artnex", "since": "2020-01-01T00:00:00Z"})
            assert every.status_code == 200 and one.status_code == 200, (every.text, one.text)
            return every.json(), one.json()

    every, one = asyncio.run(main())
    StatsAnswer.model_validate(every)
    StatsAnswer.model_validate(one)
    figures = _by_vendor(every)
    assert sorted(figures) == ["apiframe", "apixo", "artnex", "dreamina", "ltxstudio"]
    assert figures["apixo"]["jobs"]["total"] == 11 and figures["apixo"]["cost"][0]["total"] == 11.5
    assert figures["ltxstudio"]["jobs"]["total"] == 0 and figures["ltxstudio"]["success_rate"] is None
    assert every["since"] is None and every["until"] is None
    assert [v["vendor"] for v in one["vendors"]] == ["artnex"]
    assert one["since"] == "2020-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"vendor": "midjourney"}, "vendor"),
        ({"vendor": ""}, "vendor"),
        ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "since"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ({"until": "0169-08-07T04:56:21Z"}, "until"),
    ],
)
def test_bad_input_is_a_clear_422(seeded: str, params: dict[str, str], names: str) -> None:
    """A malformed time, an unknown vendor, since after until or a time before 1970: 422 naming it."""

    async def main() -> httpx.Response:
        async with _client(seeded) as client:
            return await client.get("/v1/stats", params=params)

    answer = asyncio.run(main())
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_failed" and error["message"].startswith(f"{names}:"), error


def test_the_cli_prints_the_same_report_as_json_and_as_tables(seeded: str) -> None:
    """``stats --json`` prints the API's report; the default is a table with a column per vendor
    and one of codes and costs; bad
    options fail clearly."""
    env = {"RELAY_SECRET_KEY": TEST_SECRET_KEY}
    runner = CliRunner()
    as_json = runner.invoke(cli, ["--database", seeded, "stats", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    StatsAnswer.model_validate(report)
    apixo = _by_vendor(report)["apixo"]
    assert apixo["lost_callback_share"] == round(1 / 6, 4) and apixo["jobs"]["succeeded"] == 5
    one = runner.invoke(cli, ["--database", seeded, "stats", "--json", "--vendor", "artnex"], env=env)
    assert [v["vendor"] for v in json.loads(one.output)["vendors"]] == ["artnex"]
    table = runner.invoke(cli, ["--database", seeded, "stats"], env=env, terminal_width=240)
    assert table.exit_code == 0, table.output
    for text in (
        "ltxstudio",
        "62.5%",
        "16.7%",
        "lost callbacks",
        "rate_limited",
        "spent on 5 jobs",
        "11.5",
        "payload anomaly",
        "data.costTime",
    ):
        assert text in table.output, text
    bad = runner.invoke(cli, ["--database", seeded, "stats", "--since", "yesterday"], env=env)
    assert bad.exit_code != 0 and "not an ISO-8601 time" in bad.output
    backwards = ["stats", "--since", "2026-11-02T00:00:00Z", "--until", "2026-11-01T00:00:00Z"]
    result = runner.invoke(cli, ["--database", seeded, *backwards], env=env)
    assert result.exit_code == 1 and "since: must not be after until" in result.output


def test_the_submitter_and_the_poller_record_the_outcomes_the_relay_decides(relay_database: str) -> None:
    """A submit the vendor refuses counts as outcome ``submit`` and a submit error with its code; a job
    the poller finds past its deadline as outcome ``timeout`` (the real Submitter and Poller, against
    an APIXO stand-in on loopback)."""
    answers = ["400", "ok"]

    async def submit(request: Request) -> JSONResponse:
        if answers.pop(0) == "400":
            return JSONResponse(
                {"code": 400, "message": "image_urls is invalid", "data": None}, status_code=400
            )
        return JSONResponse({"code": 200, "message": "success", "data": {"taskId": "task_1"}})

    async def status(request: Request) -> JSONResponse:  # asked once more at the deadline: still running
        task = {"taskId": request.query_params["taskId"], "state": "processing"}
        return JSONResponse({"code": 200, "message": "success", "data": task})

    vendor = Starlette(
        routes=[
            Route("/api/v1/generateTask/image-upscaler", submit, methods=["POST"]),
            Route("/api/v1/statusTask/image-upscaler", status, methods=["GET"]),
        ]
    )
    params = {"vendor": "apixo", "params": {"input": {"image_urls": [source_image()]}}}

    async def main(base_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        overrides = {"apixo_api_key": SecretStr("k"), "apixo_base_url": base_url}
        async with _client(relay_database, **overrides) as client:
            refused = (await client.post("/v1/jobs", json=params)).json()
            accepted = (await client.post("/v1/jobs", json=params)).json()
            assert (refused["status"], accepted["status"]) == ("failed", "queued"), (refused, accepted)
            res = client.app.state.resources  # type: ignore[attr-defined]
            job = await res.store.get_job(accepted["id"])
            async with httpx.AsyncClient() as http:
                await Poller(res.settings, res.store, VendorClient(res.settings, http)).poll(
                    replace(job, deadline_at=0)
                )
            answer = await client.get("/v1/stats", params={"vendor": "apixo"})
            return refused, answer.json()["vendors"][0]

    with serve_in_thread(vendor) as server:
        refused, apixo = asyncio.run(main(server.url))
    code = refused["error"]["code"]
    assert apixo["outcome_via"] == {"callback": 0, "poll": 0, "response": 0, "submit": 1, "timeout": 1}
    assert apixo["submit_errors"] == [{"code": code, "count": 1}]
    assert sorted(c["code"] for c in apixo["failure_codes"]) == sorted([code, "timeout"])
    assert apixo["lost_callback_share"] is None and apixo["jobs"]["failed"] == 2
