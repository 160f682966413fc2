"""The SQLite group-commit runner: one transaction per batch, a failing call rolled back alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from dispatch.secretbox import SecretBox
from dispatch.store.postgres import PgRunner
from dispatch.store.runner import StoreRunner
from dispatch.store.sqlite import SQLiteStore
from fixtures.harness import wait_until
from tests.databases import query


def _create(reference: str) -> Any:
    return lambda s: s.create_job("apixo", {}, reference=reference, token_hash=None)


def _create_then_fail(reference: str) -> Any:
    def call(s: SQLiteStore) -> None:
        s.create_job("apixo", {}, reference=reference, token_hash=None)
        raise ValueError(f"{reference} failed after writing")

    return call


def _references(path: Path) -> list[str]:
    check = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in check.execute("SELECT reference FROM jobs"))
    finally:
        check.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
@pytest.mark.parametrize("failing", [(), (2,), (0, 4), (0, 1, 2, 3, 4)])
def test_one_batch_commits_every_call_but_the_failing_ones(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str, failing: tuple[int, ...]
) -> None:
    """Five calls queued before the writer starts run as one batch (group commit, on either engine);
    each failing call's own write is rolled back and its exception reaches its caller, the others'
    writes commit."""
    box = SecretBox(Fernet.generate_key())
    runner: Any
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'relay.db'}"
        runner = StoreRunner(SQLiteStore.open(tmp_path / "relay.db", box))
    else:
        url = request.getfixturevalue("pg_url")
        query(url, "TRUNCATE jobs CASCADE")
        runner = PgRunner(url, box, size=2)

    async def main() -> list[object]:
        # queued with no await in between, before the writer starts: one batch
        calls = [
            runner.enqueue(_create_then_fail(f"r{n}") if n in failing else _create(f"r{n}")) for n in range(5)
        ]
        runner.start()
        results: list[object] = await asyncio.gather(*calls, return_exceptions=True)
        return results

    try:
        results = asyncio.run(main())
    finally:
        runner.stop()
    for n, result in enumerate(results):
        if n in failing:
            assert isinstance(result, ValueError) and str(result) == f"r{n} failed after writing"
        else:
            assert getattr(result, "reference", None) == f"r{n}"
    references = sorted(r for (r,) in query(url, "SELECT reference FROM jobs"))
    assert references == [f"r{n}" for n in range(5) if n not in failing]


def test_the_checkpointer_copies_commits_into_the_database_file(tmp_path: Path) -> None:
    """With a checkpointer, the writer's commits never checkpoint (wal_autocheckpoint 0), yet the
    committed pages reach the database file itself, well before SQLite's 1,000-page threshold."""
    path = tmp_path / "relay.db"
    store = SQLiteStore.open(path, SecretBox(Fernet.generate_key()))
    runner = StoreRunner(store, checkpoint=path)
    runner.start()
    try:
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        before = path.stat().st_size

        async def main() -> None:
            await asyncio.gather(*(runner.call(_create(f"r{n}")) for n in range(300)))

        asyncio.run(main())
        wait_until(
            lambda: path.stat().st_size > before,
            timeout=30,
            message="the database file never grew: nothing was checkpointed",
        )
    finally:
        runner.stop()
    assert len(_references(path)) == 300
