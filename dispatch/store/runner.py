"""The SQLite runner: one writer thread owns the connection and group-commits every pending verb
(:mod:`dispatch.store.batching`); reads go to a read-only connection of their own; the short verbs
of the callback and delivery paths may commit on the event loop's own thread instead
(:meth:`StoreRunner.call_hot`).

When a call of a batch raises, the batch is rolled back and run again with each call in its own
savepoint, so one failing call rolls back alone and the others still commit. Under load this turns N
commits into one (DESIGN.md, "Performance stance").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from dispatch.errors import StoreUnavailable
from dispatch.store.batching import Call, GroupCommit, Outcome, settle, together
from dispatch.store.sqlite import SQLiteStore, WriteLockBusy

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
        self,
        store: SQLiteStore,
        *,
        reader: SQLiteStore | None = None,
        checkpoint: Path | None = None,
        on_loop: SQLiteStore | None = None,
    ) -> None:
        super().__init__("store-writer")
        self.store = store
        self.reader = reader
        self.on_loop = on_loop  # a writing connection that never waits for the lock (call_hot)
        self._hot: list[Call] = []
        self._home: asyncio.AbstractEventLoop | None = None  # the one loop whose thread uses on_loop
        self._read_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        self._checkpointer = None if checkpoint is None else Checkpointer(checkpoint)

    def start(self) -> None:
        """Start the writer thread (and the checkpointer); call once before :meth:`call`."""
        if self._checkpointer is not None:
            for writer in (self.store, self.on_loop):  # the checkpointer's job now, never a commit's
                if writer is not None:
                    writer.conn.execute("PRAGMA wal_autocheckpoint = 0")
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
        if self.on_loop is not None:
            self.on_loop.close()
        self.store.close()

    async def call(self, fn: Callable[[SQLiteStore], T]) -> T:
        """Run ``fn(store)`` on the writer thread inside the current batch's transaction."""
        return await self.submit(fn)

    async def call_hot(self, fn: Callable[[SQLiteStore], T]) -> T:
        """Like :meth:`call`, for a short verb on the callback or delivery path: the calls queued
        during one pass of the event loop are committed together on the loop's own thread, through
        the ``on_loop`` connection, as soon as the pass ends, when the database's write lock is free
        at that moment; when it is not (the writer thread or another process holds it), they go to
        the writer thread, which waits for the lock as :meth:`call` does. Without an ``on_loop``
        connection this is :meth:`call`.

        Only the first event loop to call it commits on its thread; calls from any other loop (a
        test's, a CLI's) go to the writer thread, so the ``on_loop`` connection is used by one
        thread only.

        Why: on the writer thread every SQLite call releases and takes back the GIL, and each time
        the event loop's thread takes it in between; those hand-offs cost the callback path about a
        sixth of its CPU (bench/README.md, "What the later session's changes bought"). On the loop's
        thread a batch costs only its statements, and it blocks the loop no longer than the writer
        thread would have held the GIL for it.
        """
        loop = asyncio.get_running_loop()
        if self._home is None:
            self._home = loop
        if self.on_loop is None or loop is not self._home:  # a connection is used on one thread only
            return await self.submit(fn)
        future: asyncio.Future[T] = loop.create_future()
        if not self._hot:
            loop.call_soon(self._commit_hot)
        self._hot.append((fn, future, loop))
        return await future

    def _commit_hot(self) -> None:
        batch, self._hot = self._hot, []
        assert self.on_loop is not None
        outcomes = together(self.on_loop, [fn for fn, _, _ in batch]) or self._isolated(batch, self.on_loop)
        if all(not ok and isinstance(value, WriteLockBusy) for ok, value in outcomes):
            for call in batch:  # nothing was written: the writer thread waits for the lock
                self._queue.put(call)
            return
        settle([(future, outcome) for (_fn, future, _loop), outcome in zip(batch, outcomes, strict=True)])

    async def each_writer(self, fn: Callable[[SQLiteStore], object]) -> None:
        """Run ``fn(store)`` for each writing connection, each on the thread that uses it: the writer
        thread's, then the ``on_loop`` one (on its loop's thread); e.g. a per-connection PRAGMA such
        as ``max_page_count``. Exceptions propagate."""
        await self.call(fn)
        on_loop, home = self.on_loop, self._home
        if on_loop is None:
            return
        if home is None or home is asyncio.get_running_loop():
            fn(on_loop)
            return
        done: concurrent.futures.Future[object] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(on_loop))
            except BaseException as exc:
                done.set_exception(exc)

        home.call_soon_threadsafe(run)
        await asyncio.wrap_future(done)

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

    def _isolated(self, batch: list[Call], store: SQLiteStore | None = None) -> list[Outcome]:
        """Every call of ``batch`` in one transaction on ``store`` (the writer's by default), each in
        its own savepoint."""
        store = self.store if store is None else store
        results: list[Outcome] = []
        try:
            with store.transaction():
                for fn, _future, _loop in batch:
                    try:
                        with store.savepoint():
                            results.append((True, fn(store)))
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
