"""The CLI commands over the operations layer (issue 11): jobs submit, inbound, sources, subscribers
show/update/enable/disable, stats, prune, and --limit/--cursor paging, through click's runner on a
real SQLite file (and a real fake-vendor server for submits)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dispatch.model import JobState, JobUpdate, Output
from dispatch.store.records import RawMessage
from receiver.cli import cli
from receiver.database import open_store
from receiver.fakes import FakeConfig, create_fake_vendors, source_image
from receiver.fakes.serving import RunningServer, serve_in_thread
from receiver.settings import load_settings

FAKE = FakeConfig(callback_delay=0.02, apixo_allow_http=True)


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    assert CliRunner().invoke(cli, ["--database", url, "migrate"]).exit_code == 0
    return url


@pytest.fixture(scope="module")
def vendors() -> Iterator[RunningServer]:
    with serve_in_thread(create_fake_vendors(FAKE)) as server:
        yield server


def invoke(db: str, *args: str, env: dict[str, str] | None = None) -> Result:
    base = {"RELAY_ALLOW_PRIVATE_TARGETS": "true", **(env or {})}
    return CliRunner().invoke(cli, ["--database", db, *args], env=base)


def ok(db: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = invoke(db, *args, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_jobs_submit_sends_the_job_and_an_idempotency_key_replays_it(db: str, vendors: RunningServer) -> None:
    """jobs submit validates, submits to the vendor and prints the job; the same key returns it again."""
    env = {"RELAY_APIXO_API_KEY": FAKE.apixo_api_key, "RELAY_APIXO_BASE_URL": vendors.url}
    params = json.dumps({"input": {"image_urls": [source_image("lost")]}})
    first = json.loads(
        ok(db, "jobs", "submit", "apixo", "--params", params, "--idempotency-key", "k1", env=env)
    )
    assert first["vendor_job_id"].startswith("task_") and first["replayed"] is False
    again = json.loads(
        ok(db, "jobs", "submit", "apixo", "--params", params, "--idempotency-key", "k1", env=env)
    )
    assert again["id"] == first["id"] and again["replayed"] is True
    bad = invoke(db, "jobs", "submit", "apixo", "--params", "{nope", env=env)
    assert bad.exit_code != 0 and "--params" in bad.output and "not JSON" in bad.output
    refused = invoke(
        db, "jobs", "submit", "apixo", "--params", '{"input": {"image_urls": ["ftp://x"]}}', env=env
    )
    assert refused.exit_code != 0 and "image_urls" in refused.output


def test_sources_add_list_and_paging(db: str) -> None:
    """sources add prints the callback URL once; sources list pages with --limit and --cursor."""
    ids = [ok(db, "sources", "add", "dreamina", "--description", f"acct {n}").split()[0] for n in range(3)]
    first = invoke(db, "sources", "list", "--json", "--limit", "2")
    assert first.exit_code == 0
    page1 = [json.loads(line) for line in first.stdout.splitlines()]
    cursor = first.stderr.split("next cursor: ", 1)[1].strip()
    second = invoke(db, "sources", "list", "--json", "--limit", "2", "--cursor", cursor)
    page2 = [json.loads(line) for line in second.stdout.splitlines()]
    assert sorted(s["id"] for s in page1 + page2) == sorted(ids) and "next cursor" not in second.stderr
    assert "callback_url" not in first.stdout
    forged = invoke(db, "sources", "list", "--cursor", "forged")
    assert forged.exit_code != 0 and "--cursor" in forged.output


def test_subscribers_show_update_disable_enable(db: str) -> None:
    """A subscriber is shown without its secret, updated, disabled and enabled again."""
    sub_id = ok(db, "subscribers", "add", "https://hooks.example.com/a").split()[0]
    shown = json.loads(ok(db, "subscribers", "show", sub_id))
    assert shown["id"] == sub_id and "secret" not in shown
    updated = json.loads(
        ok(db, "subscribers", "update", sub_id, "--event-type", "job.failed", "--retry-schedule", "[1, 2]")
    )
    assert updated["event_types"] == ["job.failed"] and updated["retry_schedule"] == [1.0, 2.0]
    assert "disabled" in ok(db, "subscribers", "disable", sub_id)
    assert json.loads(ok(db, "subscribers", "show", sub_id))["enabled"] is False
    assert "enabled" in ok(db, "subscribers", "enable", sub_id)
    assert invoke(db, "subscribers", "update", sub_id).exit_code != 0  # nothing to change
    assert invoke(db, "subscribers", "update", sub_id, "--retry-schedule", "[-1]").exit_code != 0
    assert invoke(db, "subscribers", "update", sub_id, "--url", "file:///etc/passwd").exit_code != 0


def test_inbound_list_show_and_reprocess(db: str) -> None:
    """A stored invalid callback is listed, shown whole, and reprocessed through the live pipeline."""
    store = open_store(load_settings(database_url=db))
    try:
        job = store.create_job("apixo", {}, reference=None, token_hash="q" * 64)
        store.mark_submitted(job.id, "task_q")
        body = b'{"code": 200, "data": {"taskId": "task_q", "state": "success", "resultJson": "{\\"resultUrls\\": [\\"https://x/a.jpg\\"]}"}}'
        stored = store.record_message(
            job.id, "callback", RawMessage({}, body), None, verdict="invalid", error="was broken"
        )
    finally:
        store.close()
    listed = [json.loads(line) for line in ok(db, "inbound", "list", "--json").splitlines()]
    assert [i["id"] for i in listed] == [stored.inbound_id]
    assert json.loads(ok(db, "inbound", "show", stored.inbound_id))["body"] == body.decode()
    again = json.loads(ok(db, "inbound", "reprocess", stored.inbound_id))
    assert again["kind"] == "reprocess" and again["verdict"] == "applied"
    assert json.loads(ok(db, "jobs", "show", job.id))["status"] == "succeeded"


def test_stats_and_prune(db: str) -> None:
    """stats counts jobs per vendor and state; prune --dry-run counts and deletes nothing."""
    store = open_store(load_settings(database_url=db))
    try:
        for n in range(3):
            job = store.create_job("apixo", {}, reference=None, token_hash=str(n) * 64)
            state = JobState.SUCCEEDED if n else JobState.FAILED
            outputs = (Output("https://file.apixo.ai/a.jpg"),) if n else ()
            store.record_message(
                job.id, "callback", RawMessage({}, b"{}"), JobUpdate(state, "x", outputs=outputs)
            )
    finally:
        store.close()
    apixo = {v["vendor"]: v for v in json.loads(ok(db, "stats", "--json"))["vendors"]}["apixo"]
    assert apixo["jobs"] == {"queued": 0, "running": 0, "succeeded": 2, "failed": 1, "total": 3}
    assert apixo["success_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert "apixo" in ok(db, "stats")
    assert json.loads(ok(db, "prune", "--dry-run", "--json"))["dry_run"] is True
    assert invoke(db, "stats", "--since", "yesterday").exit_code != 0


def test_read_only_commands_never_create_a_database(tmp_path: Path) -> None:
    """inbound, sources list, subscribers show and stats on a missing file: a clear error, no file."""
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    for args in (["inbound", "list"], ["sources", "list"], ["subscribers", "show", "sub_x"], ["stats"]):
        result = invoke(missing, *args)
        assert result.exit_code != 0 and "does not exist" in result.output, args
    assert not (tmp_path / "none.db").exists()
