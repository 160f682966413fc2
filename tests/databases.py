"""Real databases for tests: a SQLite file, or a fresh Postgres database on the server this machine
runs (127.0.0.1:5432, trust auth, user ``postgres``), created per use and dropped afterwards.

``RELAY_TEST_DATABASE=postgresql://postgres@127.0.0.1:5432/postgres`` switches the e2e, scenario,
crash and process tests to Postgres: the URL names the server (and an existing database to connect
to for ``CREATE DATABASE``); every relay a test starts gets its own new database on it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

PG_SERVER = os.environ.get("RELAY_TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")


def test_database() -> str | None:
    """The ``RELAY_TEST_DATABASE`` server URL when the suite runs on Postgres, else ``None`` (SQLite)."""
    url = os.environ.get("RELAY_TEST_DATABASE", "").strip()
    return url if url.startswith("postgresql://") else None


def _with_database(server: str, name: str) -> str:
    base, _, _ = server.rpartition("/")
    return f"{base}/{name}"


@contextmanager
def fresh_postgres(server: str = PG_SERVER) -> Iterator[str]:
    """A new, empty Postgres database on ``server``; yields its URL and drops it afterwards."""
    name = f"relay_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url_for(tmp_path: Path) -> Iterator[str]:
    """``sqlite:///<tmp_path>/relay.db``, or a fresh Postgres database under ``RELAY_TEST_DATABASE``."""
    server = test_database()
    if server is None:
        yield f"sqlite:///{tmp_path / 'relay.db'}"
        return
    with fresh_postgres(server) as url:
        yield url
