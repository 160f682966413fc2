"""Shared fixtures: the store on each engine (a SQLite file, a fresh Postgres database), and the
database the relay processes of one test share (``relay_database``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from dispatch.secretbox import SecretBox
from dispatch.store.postgres import PostgresStore, connect
from dispatch.store.schema_pg import migrate as migrate_pg
from dispatch.store.sqlite import SQLiteStore
from tests.databases import database_url_for, fresh_postgres

ENGINES = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """One migrated Postgres database for the session's store tests (emptied before each test)."""
    with fresh_postgres() as url:
        conn = connect(url)
        try:
            migrate_pg(conn)
        finally:
            conn.close()
        yield url


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The store on each engine; every store contract test runs against both."""
    box = SecretBox(Fernet.generate_key())
    if request.param == "sqlite":
        s: Any = SQLiteStore.open(tmp_path / "relay.db", box)
    else:
        url = request.getfixturevalue("pg_url")
        s = PostgresStore.open(url, box)
        tables = (
            "jobs, inbound, events, subscribers, deliveries, attempts, sources, mirrors, source_job_counts"
        )
        s.conn.execute(f"TRUNCATE {tables}")
    yield s
    s.close()


@pytest.fixture
def relay_database(tmp_path: Path) -> Iterator[str]:
    """The database URL for this test's relay processes: ``sqlite:///<tmp_path>/relay.db``, or a fresh
    Postgres database (dropped afterwards) when ``RELAY_TEST_DATABASE`` names a server."""
    with database_url_for(tmp_path) as url:
        yield url
