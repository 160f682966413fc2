"""How the store's transactions nest, and the write path's cheap copies and JSON, on a real database."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from dispatch.errors import StoreUnavailable
from dispatch.model import InboundKind, JobState, JobUpdate, Output, now_ms
from dispatch.secretbox import SecretBox
from dispatch.store.records import RawMessage, evolve
from dispatch.store.sqlite import SQLiteStore
from receiver.eventloop import loop_factory, run_loop

RAW = RawMessage({"content-type": "application/json"}, b"{}", "127.0.0.1:1")


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Any:
    s = SQLiteStore.open(tmp_path / "relay.db", SecretBox(Fernet.generate_key()))
    yield s
    s.close()


def _jobs(store: SQLiteStore) -> int:
    return int(store.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def test_a_failing_nested_verb_rolls_back_the_whole_transaction(store: Any) -> None:
    """A verb inside another transaction joins it: when it raises, nothing of the transaction stays,
    including what earlier verbs wrote in it (no verb catches a failure of one it calls)."""
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.create_job("apixo", {"input": {}}, reference="a", token_hash=None)
        with store.transaction():
            store.create_job("apixo", {"input": {}}, reference="b", token_hash=None)
            raise RuntimeError("boom")
    assert store.list_jobs(limit=10) == []


def test_a_savepoint_rolls_back_alone(sqlite_store: SQLiteStore) -> None:
    """``savepoint()`` undoes only what was written inside it; the transaction goes on and commits."""
    store = sqlite_store
    with store.transaction():
        store.create_job("apixo", {"input": {}}, reference="kept", token_hash=None)
        with pytest.raises(ValueError), store.savepoint():
            store.create_job("apixo", {"input": {}}, reference="undone", token_hash=None)
            raise ValueError("this part only")
        store.create_job("apixo", {"input": {}}, reference="kept too", token_hash=None)
    assert sorted(j.reference or "" for j in store.list_jobs(limit=10)) == ["kept", "kept too"]


def test_a_savepoint_needs_a_transaction(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(RuntimeError, match="outside a transaction"), sqlite_store.savepoint():
        pass  # pragma: no cover - never entered


def test_a_full_database_inside_a_nested_verb_is_store_unavailable(sqlite_store: SQLiteStore) -> None:
    """SQLite's "cannot write now" errors reach a nested verb's caller as :class:`StoreUnavailable`
    (the API's 503), not as a raw ``sqlite3`` error, and the transaction leaves nothing behind."""
    store = sqlite_store
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = {"input": {"blob": "x" * 200_000}}
    with pytest.raises(StoreUnavailable, match="full"), store.transaction(), store.transaction():
        store.create_job("apixo", big, reference=None, token_hash=None)
    store.conn.execute("PRAGMA max_page_count = 1000000")
    assert _jobs(store) == 0


def test_constraint_violations_stay_integrity_errors(sqlite_store: SQLiteStore) -> None:
    """A constraint violation in a nested verb is the caller's to judge (e.g. a unique key): it stays
    ``sqlite3.IntegrityError``."""
    store = sqlite_store
    with pytest.raises(sqlite3.IntegrityError), store.transaction(), store.transaction():
        store.conn.execute("INSERT INTO relay_meta (key, value) VALUES ('k', 1)")
        store.conn.execute("INSERT INTO relay_meta (key, value) VALUES ('k', 2)")


def test_evolve_is_replace_without_init(store: Any) -> None:
    """``evolve`` gives what ``dataclasses.replace`` gives, leaves the original alone and refuses a
    name that is not a field."""
    job = store.create_job("apixo", {"input": {}}, reference="r", token_hash=None)
    changed = evolve(job, sequence=3, status=JobState.RUNNING)
    assert changed == dataclasses.replace(job, sequence=3, status=JobState.RUNNING)
    assert (job.sequence, job.status) == (0, JobState.QUEUED)
    with pytest.raises(TypeError, match="no field colour"):
        evolve(job, colour="red")


def test_structured_columns_are_compact_json(store: Any) -> None:
    """The job's JSON columns and the inbound headers hold plain JSON any reader parses."""
    job = store.create_job("apixo", {"input": {"n": 10**30}}, reference=None, token_hash=None)
    update = JobUpdate(state=JobState.SUCCEEDED, outputs=(Output("https://f/a.jpg", "image/jpeg"),))
    store.record_message(job.id, InboundKind.CALLBACK, RAW, update)
    row = store.conn.execute("SELECT outputs, flags, params FROM jobs WHERE id = ?", (job.id,)).fetchone()
    assert json.loads(row["outputs"])[0]["url"] == "https://f/a.jpg"
    assert json.loads(row["flags"]) == []
    assert json.loads(row["params"]) == {"input": {"n": 10**30}}  # integers of any size
    headers = store.conn.execute("SELECT headers FROM inbound WHERE job_id = ?", (job.id,)).fetchone()[0]
    assert json.loads(headers) == {"content-type": "application/json"}


def test_now_ms_is_unix_milliseconds() -> None:
    import time

    before = int(time.time() * 1000)
    value = now_ms()
    after = int(time.time() * 1000)
    assert before <= value <= after + 1


def test_run_loop_runs_on_uvloop_where_installed() -> None:
    """The worker's loop is uvloop when it imports (as uvicorn's ``loop="auto"``), and ``run_loop``
    returns the coroutine's result like ``asyncio.run``."""
    uvloop = pytest.importorskip("uvloop")

    async def which() -> type:
        return type(asyncio.get_running_loop())

    assert loop_factory() is uvloop.new_event_loop
    assert issubclass(run_loop(which()), uvloop.Loop)
