"""Real databases for tests: a SQLite file, or a fresh Postgres database on the server this machine
runs (127.0.0.1:5432, trust auth, user ``postgres``), created per use and dropped afterwards.

``RELAY_TEST_DATABASE=postgresql://postgres@127.0.0.1:5432/postgres`` switches the e2e, scenario,
crash and process tests to Postgres: the URL names the server (and an existing database to connect
to for ``CREATE DATABASE``); every relay a test starts gets its own new database on it. Tests that
look at the SQLite file itself are marked :func:`sqlite_only` and skip there.

Example::

    with database_url_for(tmp_path) as url:      # or the ``relay_database`` fixture (conftest.py)
        env = relay_environ(url, api_token=API_TOKEN)  # tests/procs.py
        ...
        assert query(url, "SELECT COUNT(*) FROM jobs")[0][0] == 1
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

PG_SERVER = os.environ.get("RELAY_TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")


def test_database() -> str | None:
    """The ``RELAY_TEST_DATABASE`` server URL when the suite runs on Postgres, else ``None`` (SQLite)."""
    url = os.environ.get("RELAY_TEST_DATABASE", "").strip()
    return url if url.startswith("postgresql://") else None


test_database.__test__ = False  # type: ignore[attr-defined]  # a helper: never collect it where imported


def sqlite_only(why: str) -> pytest.MarkDecorator:
    """Skip a test when the suite runs on Postgres: it checks something only SQLite has (``why``)."""
    return pytest.mark.skipif(test_database() is not None, reason=f"SQLite only: {why}")


def postgres_reachable(server: str = PG_SERVER) -> bool:
    """True when a Postgres server answers at ``server`` (the horizontal-scale tests need one)."""
    try:
        with psycopg.connect(server, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def query(url: str, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Every row of one statement (``?`` placeholders) on the database at ``url``, SQLite or Postgres,
    over a connection of its own (the relay's processes keep theirs)."""
    if url.startswith("postgresql://"):
        pg_sql = sql.replace("%", "%%").replace("?", "%s")
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(pg_sql, tuple(parameters))
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as lite, lite:
        return [tuple(row) for row in lite.execute(sql, tuple(parameters)).fetchall()]


def sqlite_migrated_to(path: Path, count: int) -> sqlite3.Connection:
    """A new SQLite database at ``path`` as an older relay left it: only its first ``count`` migrations
    applied and recorded. Returns an open autocommit connection to fill it (the caller closes it)."""
    from sqlite_utils import Database

    from dispatch.store import schema

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    db = Database(conn)
    for name, step in schema.MIGRATIONS[:count]:
        step(db)
        conn.execute("INSERT INTO _migrations VALUES (?, datetime('now'))", (name,))
    return conn


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
