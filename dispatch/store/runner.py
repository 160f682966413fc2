"""The SQLite runner: one writer thread owns the connection and group-commits every pending verb
(:mod:`dispatch.store.batching`); reads go to a read-only connection of their own.

When a call of a batch raises, the batch is rolled back and run again with each call in its own
savepoint, so one failing call rolls back alone and the others still commit. Under load this turns N
commits into one (DESIGN.md, "Performance stance").
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from dispatch.errors import StoreUnavailable
from dispatch.store.batching import Call, GroupCommit, Outcome, together
from dispatch.store.sqlite import SQLiteStore

T = TypeVar("T")


class StoreRunner(GroupCommit):
    """Runs store verbs on a dedicated writer thread, batching concurrent calls into one commit.

    Example::

        runner = StoreRunner(store, reader=SQLiteStore.open_reader(path, box)); runner.start()
        job = await runner.read(lambda s: s.get_job("job_…"))
        await runner.call(lambda s: s.mark_submitted(job.id, "task_1"))
        runner.stop()

    Exceptions raised by a verb reach its caller unchanged; a failed commit fails every call of
    the batch with :class:`StoreUnavailable` (nothing of the batch was written). Reads given to
    :meth:`read` run on a separate read-only connection on their own thread, so they never queue
    behind writes or wait for another process's write lock (WAL mode).
    """

    def __init__(
        self, store: SQLiteStore, *, reader: SQLiteStore | None = None, checkpoint: Path | None = None
    ) -> None:
        super().__init__("store-writer")
        self.store = store
        self.reader = reader
        self._read_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        self._checkpointer = None if checkpoint is None else Checkpointer(checkpoint)

    def start(self) -> None:
        """Start the writer thread (and the checkpointer); call once before :meth:`call`."""
        if self._checkpointer is not None:
            self.store.conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's job now
            self._checkpointer.start()
        self.start_writer()

    def stop(self) -> None:
        """Finish queued calls, then stop the threads and close the store."""
        self.stop_writer()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._read_pool.shutdown(wait=True)
        if self.reader is not None:
            self.reader.close()
        self.store.close()

    async def call(self, fn: Callable[[SQLiteStore], T]) -> T:
        """Run ``fn(store)`` on the writer thread inside the current batch's transaction."""
        return await self.submit(fn)

    async def read(self, fn: Callable[[SQLiteStore], T]) -> T:
        """Run the read-only ``fn(store)`` on the reader connection (on the writer when there is none).

        ``fn`` must not write: the reader connection is ``query_only`` and a write raises
        :class:`StoreUnavailable`. Reads see every transaction committed before they start.
        """
        reader = self.reader
        if reader is None:
            return await self.call(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, _read, fn, reader)

    def run_batch(self, batch: list[Call]) -> list[Outcome]:
        """:func:`together`; when a call of several raised, :meth:`_isolated`."""
        return together(self.store, [fn for fn, _, _ in batch]) or self._isolated(batch)

    def _isolated(self, batch: list[Call]) -> list[Outcome]:
        """Every call of ``batch`` in one transaction, each in its own savepoint."""
        results: list[Outcome] = []
        try:
            with self.store.transaction():
                for fn, _future, _loop in batch:
                    try:
                        with self.store.savepoint():
                            results.append((True, fn(self.store)))
                    except Exception as exc:
                        results.append((False, exc))
        except StoreUnavailable as exc:
            results = [(False, exc)] * len(batch)
        except Exception as exc:  # the commit itself failed in an unexpected way
            results = [(False, StoreUnavailable(f"database write failed: {exc}"))] * len(batch)
        return results


class Checkpointer:
    """Copies committed WAL pages into the database file on a thread of its own, so the writer's
    commits never do it (SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL
    pages: about half of a commit's cost on the ingest path, bench/README.md).

    Every ``interval`` seconds it runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection:
    it never waits for the writer or for readers, and copies what it can; the WAL is then reused
    from its start. A failed checkpoint is tried again at the next interval (the WAL only grows
    meanwhile; nothing committed is at risk). Example: ``Checkpointer(Path("relay.db")).start()``.
    """

    def __init__(self, path: Path, *, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval  # seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-checkpointer", daemon=True)

    def start(self) -> None:
        """Start the checkpointing thread."""
        self._thread.start()

    def stop(self) -> None:
        """Checkpoint once more, then stop the thread."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 1000")
            while not self._stop.wait(self.interval):
                self.checkpoint(conn)
            self.checkpoint(conn)
        finally:
            conn.close()

    @staticmethod
    def checkpoint(conn: sqlite3.Connection) -> None:
        """One passive checkpoint; SQLite errors are left for the next one."""
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _read(fn: Callable[[SQLiteStore], T], reader: SQLiteStore) -> T:
    try:
        return fn(reader)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"database read failed: {exc}") from exc
