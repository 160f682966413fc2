"""``StoreRunner.call_hot``: short verbs committed on the event loop's thread when SQLite's write
lock is free, on the writer thread when it is not; on a real database file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from dispatch.errors import StoreUnavailable
from dispatch.secretbox import SecretBox
from dispatch.store.runner import StoreRunner
from dispatch.store.sqlite import SQLiteStore, WriteLockBusy


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[StoreRunner]:
    box = SecretBox(Fernet.generate_key())
    path = tmp_path / "relay.db"
    store = SQLiteStore.open(path, box, busy_timeout=10.0)
    r = StoreRunner(
        store, reader=SQLiteStore.open_reader(path, box), on_loop=SQLiteStore.open_writer(path, box)
    )
    r.start()
    yield r
    r.stop()


def _create(reference: str, threads: list[int]) -> Any:
    def call(s: SQLiteStore) -> str:
        threads.append(threading.get_ident())
        return str(s.create_job("apixo", {}, reference=reference, token_hash=None).id)

    return call


def _references(runner: StoreRunner) -> list[str]:
    return sorted(r[0] for r in runner.store.conn.execute("SELECT reference FROM jobs"))


def test_calls_of_one_loop_pass_commit_together_on_the_loop_thread(runner: StoreRunner) -> None:
    """Calls queued in one pass of the loop run on the loop's own thread, in one transaction."""
    threads: list[int] = []

    async def main() -> list[str]:
        return list(await asyncio.gather(*(runner.call_hot(_create(f"r{n}", threads)) for n in range(5))))

    ids = asyncio.run(main())
    assert len(set(ids)) == 5
    assert set(threads) == {threading.get_ident()}
    assert _references(runner) == ["r0", "r1", "r2", "r3", "r4"]


def test_a_failing_call_fails_alone(runner: StoreRunner) -> None:
    """One call of an on-loop batch raising: its write is rolled back, the others commit."""
    threads: list[int] = []

    def broken(s: SQLiteStore) -> None:
        s.create_job("apixo", {}, reference="broken", token_hash=None)
        raise ValueError("broken after writing")

    async def main() -> list[object]:
        calls = [
            runner.call_hot(_create("a", threads)),
            runner.call_hot(broken),
            runner.call_hot(_create("b", threads)),
        ]
        return list(await asyncio.gather(*calls, return_exceptions=True))

    outcomes = asyncio.run(main())
    assert isinstance(outcomes[1], ValueError)
    assert _references(runner) == ["a", "b"]


def test_a_held_write_lock_sends_the_batch_to_the_writer_thread(runner: StoreRunner, tmp_path: Path) -> None:
    """While another connection (another process, say) holds the write lock, the on-loop commit
    does not wait: the calls go to the writer thread, which waits for the lock and commits them."""
    other = sqlite3.connect(tmp_path / "relay.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threads: list[int] = []

    async def main() -> list[str]:
        pending = asyncio.ensure_future(
            asyncio.gather(*(runner.call_hot(_create(f"w{n}", threads)) for n in range(3)))
        )
        # while the lock is held the calls cannot finish, and the loop is not blocked meanwhile
        finished, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not finished and not threads
        assert _count_committed(tmp_path) == 0
        other.execute("ROLLBACK")
        return list(await pending)

    try:
        assert len(asyncio.run(main())) == 3
    finally:
        other.close()
    assert threading.get_ident() not in threads  # ran on the writer thread
    assert _references(runner) == ["w0", "w1", "w2"]


def _count_committed(tmp_path: Path) -> int:
    check = sqlite3.connect(tmp_path / "relay.db")
    try:
        return int(check.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    finally:
        check.close()


def test_begin_on_a_locked_database_is_write_lock_busy(tmp_path: Path) -> None:
    """The on-loop connection never waits: BEGIN on a locked database is :class:`WriteLockBusy` at
    once (a :class:`StoreUnavailable`, the API's 503, wherever it is not handled)."""
    box = SecretBox(Fernet.generate_key())
    SQLiteStore.open(tmp_path / "relay.db", box).close()
    other = sqlite3.connect(tmp_path / "relay.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writer = SQLiteStore.open_writer(tmp_path / "relay.db", box)
    try:
        with pytest.raises(WriteLockBusy) as raised, writer.transaction():
            pass  # pragma: no cover - never entered
        assert isinstance(raised.value, StoreUnavailable)
    finally:
        writer.close()
        other.close()


def test_a_second_loop_uses_the_writer_thread(runner: StoreRunner) -> None:
    """The on-loop connection belongs to the first loop that used it; another loop's calls (here a
    thread of its own) go to the writer thread, so no connection is used by two threads."""
    first: list[int] = []
    asyncio.run(runner.call_hot(_create("home", first)))
    second: list[int] = []
    done: list[str] = []

    def other_loop() -> None:
        done.append(asyncio.run(runner.call_hot(_create("away", second))))

    thread = threading.Thread(target=other_loop)
    thread.start()
    thread.join(timeout=30)
    assert done and second
    assert second[0] not in (threading.get_ident(), thread.ident)  # the writer thread
    assert first == [threading.get_ident()]


def test_open_writer_needs_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot open database"):
        SQLiteStore.open_writer(tmp_path / "missing.db", SecretBox(Fernet.generate_key()))


def test_no_commit_checkpoints_when_the_checkpointer_runs(tmp_path: Path) -> None:
    """With a checkpointer thread, neither writing connection copies the WAL into the database in
    its own COMMIT (which, on the loop's connection, would stall the event loop)."""
    box = SecretBox(Fernet.generate_key())
    path = tmp_path / "relay.db"
    runner = StoreRunner(
        SQLiteStore.open(path, box),
        reader=SQLiteStore.open_reader(path, box),
        checkpoint=path,
        on_loop=SQLiteStore.open_writer(path, box),
    )
    runner.start()
    try:
        assert runner.on_loop is not None
        for writer in (runner.store, runner.on_loop):
            assert writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    finally:
        runner.stop()
