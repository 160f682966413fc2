"""The CLI through click's runner, checked against the store it works on."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dispatch.model import JobState, JobUpdate, Output, event_id
from dispatch.store.records import RawMessage
from dispatch.store.schema import MIGRATIONS
from receiver.cli import cli
from receiver.database import open_store
from receiver.settings import load_settings


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'relay.db'}"


def run(db: str, *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, ["--database", db, *args], env={"RELAY_ALLOW_PRIVATE_TARGETS": "true"})
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result.output


def seed_job(db: str) -> tuple[str, str]:
    store = open_store(load_settings(database_url=db))
    try:
        job = store.create_job("apixo", {"input": {}}, reference="cli-1", token_hash=None)
        store.mark_submitted(job.id, "task_1")
        store.record_message(
            job.id,
            "callback",
            RawMessage({}, b"{}"),
            JobUpdate(JobState.SUCCEEDED, "success", outputs=(Output("https://cdn.example.com/a.png"),)),
        )
    finally:
        store.close()
    return job.id, event_id(job.id, "job.succeeded")


def test_subscribers_add_list_remove(db: str) -> None:
    """Subscribers added by the CLI are stored (secret shown once), listed and removed."""
    out = run(db, "subscribers", "add", "http://127.0.0.1:9/hook", "--event-type", "job.failed")
    sub_id = out.split()[0]
    assert "secret: whsec_" in out
    listed = [json.loads(line) for line in run(db, "subscribers", "list", "--json").splitlines()]
    assert [(s["id"], s["event_types"]) for s in listed] == [(sub_id, ["job.failed"])]
    run(db, "subscribers", "remove", sub_id)
    assert run(db, "subscribers", "list", "--json").strip() == ""
    assert "not found" in run(db, "subscribers", "remove", sub_id, ok=False)


def test_subscriber_url_is_vetted(db: str) -> None:
    """A non-http URL is refused with a clear error and nothing is stored."""
    run(db, "migrate")
    out = run(db, "subscribers", "add", "file:///etc/passwd", ok=False)
    assert "Error" in out
    assert run(db, "subscribers", "list", "--json").strip() == ""


def test_jobs_and_events_listing(db: str) -> None:
    """jobs list/show and events list/show print what the store holds."""
    job_id, eid = seed_job(db)
    jobs = [json.loads(line) for line in run(db, "jobs", "list", "--json").splitlines()]
    assert [(j["id"], j["status"], j["vendor_job_id"]) for j in jobs] == [(job_id, "succeeded", "task_1")]
    shown = json.loads(run(db, "jobs", "show", job_id))
    assert [e["type"] for e in shown["events"]] == ["job.queued", "job.succeeded"]
    events = [
        json.loads(line)
        for line in run(db, "events", "list", "--json", "--type", "job.succeeded").splitlines()
    ]
    assert [e["id"] for e in events] == [eid]
    assert json.loads(run(db, "events", "show", eid))["payload"]["data"]["reference"] == "cli-1"
    assert "not found" in run(db, "jobs", "show", "job_nope", ok=False)
    assert "jobs" in run(db, "jobs", "list")  # the table title


def test_replay_and_deliveries(db: str) -> None:
    """replay queues a new-generation delivery of the same event, visible in deliveries list."""
    out = run(db, "subscribers", "add", "http://127.0.0.1:9/hook")
    sub_id = out.split()[0]
    _job_id, eid = seed_job(db)
    assert "queued 1 delivery" in run(db, "replay", eid, "--subscriber", sub_id)
    rows = [json.loads(line) for line in run(db, "deliveries", "list", "--json", "--event", eid).splitlines()]
    assert sorted(r["generation"] for r in rows) == [0, 1]
    assert all(r["event_id"] == eid and r["status"] == "pending" for r in rows)
    assert "not found" in run(db, "replay", "evt_missing", ok=False)


def test_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    """An unsupported database URL fails with a message naming where it came from: the flag when
    given as --database, the variable otherwise; never pydantic's "Value error," wording."""
    result = CliRunner().invoke(cli, ["--database", "mysql://x", "jobs", "list"])
    assert result.exit_code != 0
    assert "--database: must be sqlite:///PATH or postgresql://" in result.output
    result = CliRunner().invoke(cli, ["jobs", "list"], env={"RELAY_DATABASE_URL": "mysql://x"})
    assert result.exit_code != 0 and "RELAY_DATABASE_URL: must be" in result.output
    assert "Value error" not in result.output


def test_every_command_has_help_with_an_example() -> None:
    """Each command's help has a summary and an 'Example' line (sqlite-utils' documentation rule)."""

    def walk(command: click.Command, path: list[str]) -> list[tuple[str, click.Command]]:
        found = [(" ".join(path), command)]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                found += walk(sub, [*path, name])
        return found

    for name, command in walk(cli, ["upscale-relay"]):
        assert command.help and "Example" in command.help, name


def test_recover_and_rotate_secret(db: str) -> None:
    """recover counts then re-enqueues a disabled subscriber's kept deliveries; rotate-secret prints a new one."""
    out = run(db, "subscribers", "add", "http://127.0.0.1:9/hook", "--disabled")
    sub_id, first_secret = out.split()[0], out.split("secret: ")[1].strip()
    _job_id, eid = seed_job(db)
    failed = [
        json.loads(line)
        for line in run(db, "deliveries", "list", "--json", "--status", "failed").splitlines()
    ]
    assert [d["event_id"] for d in failed] == [eid]
    assert "1 delivery would be re-sent" in run(
        db, "subscribers", "recover", sub_id, "--since", "2000-01-01T00:00:00Z", "--dry-run"
    )
    assert "re-enqueued 1 delivery" in run(
        db, "subscribers", "recover", sub_id, "--since", "2000-01-01T00:00:00Z"
    )
    rows = [json.loads(line) for line in run(db, "deliveries", "list", "--json", "--event", eid).splitlines()]
    assert [r["status"] for r in rows] == ["retrying"]
    assert json.loads(run(db, "subscribers", "list", "--json"))["enabled"] is True
    assert "Invalid value" in run(db, "subscribers", "recover", sub_id, "--since", "soon", ok=False)
    rotated = run(db, "subscribers", "rotate-secret", sub_id)
    assert "secret: whsec_" in rotated and first_secret not in rotated


def test_worker_refuses_a_negative_grace(db: str) -> None:
    """``worker --grace -1`` is a usage error naming the option, before anything starts."""
    out = run(db, "worker", "--grace", "-1", ok=False)
    assert "--grace" in out and "-1" in out


@pytest.mark.parametrize(
    "args",
    [
        ("jobs", "list", "--vendor", "midjourney"),
        ("jobs", "list", "--status", "done"),
        ("events", "list", "--type", "job.completed"),
        ("deliveries", "list", "--status", "exploded"),
    ],
)
def test_list_filters_refuse_unknown_values(db: str, args: tuple[str, ...]) -> None:
    """A filter value the relay never stores is a usage error listing the choices, not an empty list."""
    out = run(db, *args, ok=False)
    assert args[-1] in out and "is not one of" in out


def test_unusable_database_locations_are_clear_errors(tmp_path: Path) -> None:
    """A database whose folder cannot exist, or a file that is not SQLite, is a one-line error naming
    the path (exit 1, no traceback); a read-only command never creates a database (a missing file is
    an error), while ``migrate`` creates one with its folder."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = run(f"sqlite:///{blocker}/relay.db", "jobs", "list", ok=False)
    assert "Error: database" in out and str(blocker) in out and "Traceback" not in out
    out = run(f"sqlite:///{blocker}/relay.db", "migrate", ok=False)
    assert "Error: cannot" in out and str(blocker) in out and "Traceback" not in out
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    out = run(f"sqlite:///{garbage}", "jobs", "list", ok=False)
    assert "not a database" in out and "Traceback" not in out
    out = run(f"sqlite:///{tmp_path}/new/folder/relay.db", "jobs", "list", "--json", ok=False)
    assert "does not exist" in out and not (tmp_path / "new").exists()
    assert "applied" in run(f"sqlite:///{tmp_path}/new/folder/relay.db", "migrate")
    assert run(f"sqlite:///{tmp_path}/new/folder/relay.db", "jobs", "list", "--json").strip() == ""


def test_serve_refuses_a_bad_port_or_database_before_starting(tmp_path: Path) -> None:
    """``serve`` checks ``$PORT`` and the database before uvicorn starts: a usage error (exit 2) for a
    PORT that is not a port number, a one-line error (exit 1) for a database it cannot open."""
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'relay.db'}"
    bad_port = runner.invoke(cli, ["--database", db, "serve"], env={"PORT": "http"})
    assert bad_port.exit_code == 2 and "PORT must be a port number" in bad_port.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad_db = runner.invoke(cli, ["--database", f"sqlite:///{blocker}/relay.db", "serve", "--port", "0"])
    assert bad_db.exit_code == 1 and str(blocker) in bad_db.output, bad_db.output
    assert bad_db.exception is None or isinstance(bad_db.exception, SystemExit)


def test_migrate_reports_what_it_applied(tmp_path: Path) -> None:
    """migrate names the migrations it applied: all on a new file, none the second time, and only the
    missing one on a database one version behind."""
    db = f"sqlite:///{tmp_path / 'm.db'}"
    assert f"applied {len(MIGRATIONS)} migration(s)" in run(db, "migrate")
    assert "database is up to date" in run(db, "migrate")
    conn = sqlite3.connect(tmp_path / "m.db")
    conn.execute("DELETE FROM _migrations WHERE name = '007_idempotent_submits'")
    conn.execute("DROP INDEX idx_jobs_idempotency_key")
    conn.execute("ALTER TABLE jobs DROP COLUMN idempotency_key")
    conn.execute("ALTER TABLE jobs DROP COLUMN request_hash")
    conn.commit()
    conn.close()
    assert "applied 1 migration(s): 007_idempotent_submits" in run(db, "migrate")
    assert "pending" not in run(db, "migrate", "--status")
