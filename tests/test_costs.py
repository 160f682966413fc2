"""Costs as billed (issue 20, finding 6): a job's cost is what its vendor bills, per submit (APIXO $0.01
per submitted image, resubmits included; Artnex and Apiframe credits as reported), a forecast is an
estimate beside it (Dreamina ``forecastCost``), APIXO's ``costTime`` is a duration; late and superseded
callbacks record their cost; the stats show spend per vendor and unit, what went to resubmits and what
bought results nobody received. Store verbs on both engines, migration 012 on both engines, and the
whole relay against the fake vendors."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
from cryptography.fernet import Fernet

from dispatch.costs import Charge
from dispatch.model import Cost, JobError, JobState, JobUpdate, Output
from dispatch.secretbox import SecretBox
from dispatch.store import schema_pg
from dispatch.store.postgres import PostgresStore
from dispatch.store.records import RawMessage
from dispatch.store.sqlite import SQLiteStore
from receiver.fakes import dreamina_source_job, source_image
from tests.databases import fresh_postgres, sqlite_migrated_to
from tests.relay_env import relay_env

RAW = RawMessage({"content-type": "application/json"}, b"{}", "203.0.113.7:443")
USD = Cost(0.01, "usd")


def _spend(store: Any, vendor: str) -> dict[str, Any]:
    (figures,) = store.vendor_stats(since=None, until=None, vendor=vendor).to_json()["vendors"]
    return {key: figures[key] for key in ("cost", "cost_estimate", "submits")}


# -- per submit, resubmits included --------------------------------------------------------------
def test_every_accepted_submit_is_billed_and_a_resubmit_is_counted_apart(store: Any) -> None:
    """APIXO bills each submitted task: a job resubmitted once costs two tasks, one of them spent on the
    resubmit and one on a vendor job nobody receives the result of; repeated reports change nothing."""
    job = store.create_job("apixo", {}, reference=None, token_hash=None, submit=True)
    store.mark_submitted(job.id, "task_1", cost=USD)
    failed = JobUpdate(JobState.FAILED, "failed", "task_1", error=JobError("Timeout"), cost=USD)
    assert store.resubmit(job.id, "callback", RAW, "Timeout: ", reported=failed).verdict == "resubmitted"
    store.mark_submitted(job.id, "task_2", cost=USD)
    done = JobUpdate(JobState.SUCCEEDED, "success", "task_2", cost=USD, compute_ms=41388)
    assert store.record_message(job.id, "callback", RAW, done).verdict == "applied"
    assert store.record_message(job.id, "poll", RAW, done).verdict == "duplicate"
    after = store.get_job(job.id)
    assert after.charges == (
        Charge("task_1", 1, "billed", 0.01, "usd"),
        Charge("task_2", 2, "billed", 0.01, "usd"),
    )
    assert (after.cost_amount, after.cost_unit, after.cost_resubmits, after.cost_superseded) == (
        0.02,
        "usd",
        0.01,
        0.01,
    )
    shown = after.to_json()
    assert shown["cost"] == {"amount": 0.02, "unit": "usd"} and shown["compute_ms"] == 41388
    assert shown["cost_estimate"] is None and [c["submit"] for c in shown["charges"]] == [1, 2]
    assert _spend(store, "apixo")["cost"] == [
        {"unit": "usd", "total": 0.02, "jobs": 1, "resubmits": 0.01, "unreceived": 0.01}
    ]


def test_a_superseded_callback_records_what_its_vendor_job_cost(store: Any) -> None:
    """A callback about a vendor job a resubmit replaced applies nothing, but its cost is recorded
    against that vendor job and counted as spent on a result nobody receives."""
    job = store.create_job("apiframe", {}, reference=None, token_hash=None, submit=True)
    store.mark_submitted(job.id, "a")
    failed = JobUpdate(JobState.FAILED, "FAILED", "a", error=JobError("vendor_failed"))
    store.resubmit(job.id, "callback", RAW, "vendor_failed: ", reported=failed)
    store.mark_submitted(job.id, "b")
    late = JobUpdate(JobState.SUCCEEDED, "COMPLETED", "a", cost=Cost(10.0, "credits"))
    result = store.record_message(job.id, "callback", RAW, None, verdict="superseded", reported=late)
    assert (result.verdict, result.event_ids) == ("superseded", ())
    after = store.get_job(job.id)
    assert after.status is JobState.QUEUED and after.charges == (Charge("a", 1, "billed", 10.0, "credits"),)
    assert (after.cost_amount, after.cost_superseded, after.cost_resubmits) == (10.0, 10.0, 0.0)
    assert _spend(store, "apiframe")["cost"][0]["unreceived"] == 10.0


def test_a_late_report_replaces_the_earlier_one(store: Any) -> None:
    """The vendor's latest word on a vendor job counts, whatever its verdict: a duplicate or late
    message reporting another amount (Apiframe refunds a failed job: creditCost 0) updates the cost."""
    job = store.create_job("apiframe", {}, reference=None, token_hash=None, submit=True)
    store.mark_submitted(job.id, "a")
    running = JobUpdate(JobState.RUNNING, "PROCESSING", "a", cost=Cost(10.0, "credits"))
    store.record_message(job.id, "callback", RAW, running)
    timeout = JobUpdate(JobState.FAILED, "timeout", error=JobError("timeout", "no result within 1 s"))
    assert store.record_message(job.id, "poll", RAW, timeout).verdict == "applied"
    assert _spend(store, "apiframe")["cost"][0]["unreceived"] == 10.0  # failed by the relay: not received
    refunded = JobUpdate(
        JobState.FAILED, "FAILED", "a", error=JobError("vendor_failed"), cost=Cost(0.0, "credits")
    )
    assert store.record_message(job.id, "callback", RAW, refunded).verdict == "duplicate"
    after = store.get_job(job.id)
    assert (after.cost_amount, after.charges) == (0.0, (Charge("a", 1, "billed", 0.0, "credits"),))


def test_a_late_success_moves_the_spend_out_of_unreceived(store: Any) -> None:
    """What a job the relay failed cost counts as unreceived until the vendor's late success arrives."""
    job = store.create_job("apixo", {}, reference=None, token_hash=None, submit=True)
    store.mark_submitted(job.id, "task_1", cost=USD)
    timeout = JobUpdate(JobState.FAILED, "timeout", error=JobError("timeout", "no result within 1 s"))
    store.record_message(job.id, "poll", RAW, timeout)
    assert _spend(store, "apixo")["cost"][0]["unreceived"] == 0.01
    store.record_message(
        job.id,
        "callback",
        RAW,
        JobUpdate(
            JobState.SUCCEEDED,
            "success",
            "task_1",
            outputs=(Output("https://file.apixo.ai/a.jpg"),),
            cost=USD,
        ),
    )
    assert store.get_job(job.id).status is JobState.SUCCEEDED
    assert _spend(store, "apixo")["cost"] == [
        {"unit": "usd", "total": 0.01, "jobs": 1, "resubmits": 0.0, "unreceived": 0.0}
    ]


def test_a_forecast_is_an_estimate_beside_no_cost(store: Any) -> None:
    """Dreamina's forecastCost is an estimate: the job has no billed cost, and the stats list it apart."""
    job = store.create_job("dreamina", {}, reference=None, token_hash=None, submit=True)
    store.mark_submitted(job.id, "j1")
    forecast = Cost(3.0, "credits", estimate=True)
    store.record_message(
        job.id, "callback", RAW, JobUpdate(JobState.SUCCEEDED, "completed", "j1", cost=forecast)
    )
    after = store.get_job(job.id)
    assert after.cost_amount is None and after.to_json()["cost"] is None
    assert after.to_json()["cost_estimate"] == {"amount": 3.0, "unit": "credits"}
    assert after.charges == (Charge("j1", 1, "estimate", 3.0, "credits"),)
    assert _spend(store, "dreamina") == {
        "cost": [],
        "cost_estimate": [{"unit": "credits", "total": 3.0, "jobs": 1}],
        "submits": {"attempts": 0, "resubmits": 0},
    }


# -- migration 012 ------------------------------------------------------------------------------------
OLD_JOBS = (
    # id, vendor, cost_amount, cost_unit: as migration 008 booked them
    ("job_apixo", "apixo", 41.388, "compute_seconds"),
    ("job_dreamina", "dreamina", 0.0, "credits"),
    ("job_artnex", "artnex", 100.0, "credits"),
)
INSERT_OLD = (
    "INSERT INTO jobs (id, vendor, vendor_job_id, status, params, created_at, updated_at, cost_amount, cost_unit)"
    " VALUES (?, ?, ?, 'succeeded', '{}', 1000, 2000, ?, ?)"
)


def _check_migrated(store: Any) -> None:
    apixo, dreamina, artnex = (store.get_job(job_id) for job_id, *_ in OLD_JOBS)
    assert (apixo.cost_amount, apixo.compute_ms, apixo.charges) == (None, 41388, ())
    assert (dreamina.cost_amount, dreamina.estimate_amount, dreamina.estimate_unit) == (None, 0.0, "credits")
    assert dreamina.charges == (Charge("v_job_dreamina", 1, "estimate", 0.0, "credits"),)
    assert (artnex.cost_amount, artnex.cost_unit, artnex.cost_superseded) == (100.0, "credits", 0.0)
    assert artnex.charges == (Charge("v_job_artnex", 1, "billed", 100.0, "credits"),)


def test_migration_012_on_sqlite_turns_old_costs_into_durations_estimates_and_charges(tmp_path: Path) -> None:
    """APIXO's costTime booked as compute_seconds becomes compute_ms, Dreamina's forecast an estimate,
    other credits the job's one billed charge."""
    path = tmp_path / "old.db"
    conn = sqlite_migrated_to(path, 11)
    for job_id, vendor, amount, unit in OLD_JOBS:
        conn.execute(INSERT_OLD, (job_id, vendor, f"v_{job_id}", amount, unit))
    conn.close()
    store = SQLiteStore.open(path, SecretBox(Fernet.generate_key()))
    try:
        _check_migrated(store)
    finally:
        store.close()


def test_migration_012_on_postgres_turns_old_costs_into_durations_estimates_and_charges() -> None:
    """The same on Postgres, from a database at migration 011."""
    with fresh_postgres() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            schema_pg._ensure_table(conn)
            for name, step in schema_pg.MIGRATIONS[:11]:
                step(conn)
                conn.execute("INSERT INTO _migrations VALUES (%s, now())", (name,))
            for job_id, vendor, amount, unit in OLD_JOBS:
                conn.execute(INSERT_OLD.replace("?", "%s"), (job_id, vendor, f"v_{job_id}", amount, unit))
            assert schema_pg.migrate(conn) == ["012_costs_as_billed", "013_payload_anomalies"]
        store = PostgresStore.open(url, SecretBox(Fernet.generate_key()))
        try:
            _check_migrated(store)
        finally:
            store.close()


# -- the whole relay ------------------------------------------------------------------------------------
def test_a_resubmitted_apixo_job_costs_two_images_in_the_job_and_the_stats(tmp_path: Path) -> None:
    """Against the fake APIXO, a job whose first task fails Timeout and whose second succeeds costs
    $0.02 (seed 003: billed per submitted image), $0.01 of it on the resubmit and on the superseded
    task; costTime is the job's compute time; the stats count two submits and one resubmit."""
    with relay_env(tmp_path, resubmit_backoff=0.01) as env:
        image = source_image(f"flakyTimeout-{uuid.uuid4().hex[:8]}")
        job = env.submit("apixo", {"input": {"image_urls": [image]}})
        done = env.wait_status(job["id"], "succeeded", timeout=30)
        assert done["cost"] == {"amount": 0.02, "unit": "usd"} and done["cost_estimate"] is None
        assert [(c["submit"], c["amount"]) for c in done["charges"]] == [(1, 0.01), (2, 0.01)]
        assert isinstance(done["compute_ms"], int) and done["compute_ms"] >= 0
        (apixo,) = env.ok(env.client.get("/v1/stats", params={"vendor": "apixo"}), 200)["vendors"]
        assert apixo["cost"] == [
            {"unit": "usd", "total": 0.02, "jobs": 1, "resubmits": 0.01, "unreceived": 0.01}
        ]
        assert apixo["submits"] == {"attempts": 2, "resubmits": 1}


def test_a_dreamina_job_has_an_estimate_and_no_cost(tmp_path: Path) -> None:
    """Against the fake Dreamina, forecastCost shows as the job's cost_estimate; its cost stays null."""
    with relay_env(tmp_path) as env:
        job = env.submit("dreamina", {"jobid": dreamina_source_job()})
        done = env.wait_status(job["id"], "succeeded")
        assert done["cost"] is None and done["cost_estimate"] == {"amount": 0.0, "unit": "credits"}
        (dreamina,) = env.ok(env.client.get("/v1/stats", params={"vendor": "dreamina"}), 200)["vendors"]
        assert dreamina["cost"] == [] and dreamina["cost_estimate"] == [
            {"unit": "credits", "total": 0.0, "jobs": 1}
        ]
