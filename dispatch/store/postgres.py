"""The Postgres store: the same domain verbs as SQLite, on psycopg 3 with a connection pool.

Many ``serve --no-worker`` and ``worker`` processes on many machines share one database. Every verb
call is one transaction on a pooled connection; rows a verb changes are locked for its transaction
(``SELECT ... FOR UPDATE`` on the job, advisory locks on a source's new job), and claims take due
work with ``FOR UPDATE SKIP LOCKED`` inside one ``UPDATE ... RETURNING``, so no delivery is attempted
twice at once and no job is polled or submitted twice at once. When deliveries become due the
transaction ``NOTIFY``s :data:`WAKE_CHANNEL`, and idle workers ``LISTEN`` to it.

Example::

    runner = PgRunner("postgresql://relay@db:5432/relay", SecretBox(key)); runner.start()
    job = await runner.read(lambda s: s.get_job("job_…"))
    runner.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from dispatch.errors import StoreUnavailable, ValidationFailed
from dispatch.secretbox import SecretBox
from dispatch.store.batching import Call, GroupCommit, Outcome, together
from dispatch.store.deliveries import DeliveryVerbs
from dispatch.store.jobs import JobVerbs
from dispatch.store.mirrors import MirrorVerbs
from dispatch.store.polls import PollVerbs
from dispatch.store.sessions import SessionVerbs
from dispatch.store.sql import POSTGRES, SubscriberCache
from dispatch.store.stats import StatsVerbs
from dispatch.store.submits import SubmitVerbs

T = TypeVar("T")
WAKE_CHANNEL = "upscale_relay_due"
"""``NOTIFY`` channel: a delivery became due (payload empty)."""


class PgRow(tuple[Any, ...]):
    """A result row readable by column name (``row["id"]``) and by position (``row[0]``)."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._index)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    names = [column.name for column in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}
    return lambda values: PgRow(values, index)


@functools.lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConn:
    """A psycopg connection that takes the verbs' ``?`` SQL (see :class:`dispatch.store.sql.Conn`)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        """Run one statement; raises ``psycopg.Error``.

        Postgres text cannot hold a NUL character (SQLite's can): a lookup by such a value matches
        nothing (an empty result, as SQLite answers), and writing one is :class:`ValidationFailed`.
        """
        values = tuple(parameters)
        if any(isinstance(v, str) and "\x00" in v for v in values):
            if sql.lstrip().upper().startswith("SELECT"):
                return _NoRows()
            raise ValidationFailed("text must not contain NUL (U+0000) characters")
        return self.raw.execute(_placeholders(sql), values)


class _NoRows:
    """The result of a query that cannot match anything."""

    rowcount = 0

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []


def connect(url: str, *, connect_timeout: float = 10.0) -> psycopg.Connection[Any]:
    """A new autocommit connection whose rows are :class:`PgRow`. Raises :class:`StoreUnavailable`."""
    try:
        return psycopg.connect(
            url, autocommit=True, row_factory=_row_factory, connect_timeout=max(1, round(connect_timeout))
        )
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot connect to Postgres: {exc}".strip()) from exc


class PostgresStore(JobVerbs, PollVerbs, DeliveryVerbs, SubmitVerbs, MirrorVerbs, StatsVerbs, SessionVerbs):
    """The relay's database on Postgres, over one connection (the CLI, or one pooled connection
    lent by :class:`PgRunner` for one verb call). Not thread-safe by itself."""

    sql = POSTGRES

    def __init__(
        self, raw: psycopg.Connection[Any], box: SecretBox, cache: SubscriberCache | None = None
    ) -> None:
        self.conn = PgConn(raw)
        self.box = box
        self.subscriber_cache = cache if cache is not None else SubscriberCache()
        self._depth = 0

    @classmethod
    def open(cls, url: str, box: SecretBox) -> PostgresStore:
        """Connect (no migration: see :func:`dispatch.store.schema_pg.migrate`). Raises
        :class:`StoreUnavailable`."""
        return cls(connect(url), box)

    @contextmanager
    def transaction(self) -> Iterator[PgConn]:
        """A transaction; inside one, just the one already open. Commits on success, rolls back on
        any exception (re-raised); a lost or refused connection is :class:`StoreUnavailable`.

        A verb nested in another (or in :class:`PgRunner`'s transaction around a call) adds no
        savepoint: no verb catches a failure of one it calls, so a savepoint would only cost two
        round trips (SAVEPOINT, RELEASE) per verb call."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn  # type: ignore[misc]
            finally:
                self._depth -= 1
            return
        raw = self.conn.raw  # type: ignore[attr-defined]
        self._depth = 1
        try:
            with raw.transaction():
                yield self.conn  # type: ignore[misc]
        except psycopg.IntegrityError:
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"database unavailable: {exc}".strip()) from exc
        finally:
            self._depth = 0

    def lock(self, key: str) -> None:
        """Hold a transaction-scoped advisory lock on ``key`` (e.g. a source's vendor job id)."""
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def notify_due(self) -> None:
        """``NOTIFY`` idle workers (sent at commit) that deliveries are due."""
        self.conn.execute(f"NOTIFY {WAKE_CHANNEL}")

    def ping(self) -> bool:
        """True when the database answers a trivial query (readiness)."""
        try:
            self.conn.execute("SELECT 1").fetchone()
        except psycopg.Error:
            return False
        return True

    def close(self) -> None:
        """Close the connection."""
        self.conn.raw.close()  # type: ignore[attr-defined]


class PgRunner(GroupCommit):
    """Runs verbs on Postgres. Writes (``call``) are group-committed like SQLite's: one writer
    thread takes every call queued, runs them in one transaction on a pooled connection and commits
    once (one BEGIN, one COMMIT and at most one NOTIFY delivered for the lot, where each call used to
    pay its own); when a call of a batch raises, the batch is rolled back and each call runs again
    in a transaction of its own, so only the failing one fails. Reads (``read``) run in parallel
    on the pool in read-only transactions. Same interface as
    :class:`dispatch.store.runner.StoreRunner`: ``start()``, ``await call(fn)``, ``await read(fn)``,
    ``stop()``. ``size`` connections (and reader threads) at most; waiting longer than ``timeout``
    seconds for a connection raises :class:`StoreUnavailable`.
    """

    def __init__(self, url: str, box: SecretBox, *, size: int = 8, timeout: float = 5.0) -> None:
        super().__init__("pg-writer")
        self.url = url
        self.box = box
        self.timeout = timeout
        self.pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            open=False,
            timeout=timeout,
            kwargs={"autocommit": True, "row_factory": _row_factory},
        )
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="pg-store")
        self._cache = SubscriberCache()  # shared by every call's store: one per process
        self.mirror_hold = False  # every call's store holds job.succeeded for mirroring (store.mirrors)

    def start(self) -> None:
        """Open the pool and start the writer. Raises :class:`StoreUnavailable` when Postgres cannot
        be reached."""
        try:
            self.pool.open(wait=True, timeout=max(self.timeout, 5.0))
        except PoolTimeout as exc:
            raise StoreUnavailable(f"cannot connect to Postgres: {exc}") from exc
        self.start_writer()

    def stop(self) -> None:
        """Finish queued and running calls and close every connection."""
        self.stop_writer()
        self._threads.shutdown(wait=True)
        self.pool.close()

    async def call(self, fn: Callable[[PostgresStore], T]) -> T:
        """Run ``fn(store)`` in the writer's next transaction."""
        return await self.submit(fn)

    async def call_hot(self, fn: Callable[[PostgresStore], T]) -> T:
        """:meth:`call` (on SQLite the short verbs may commit on the loop's thread; here every
        statement is a network round trip, which the loop must not wait for)."""
        return await self.submit(fn)

    async def read(self, fn: Callable[[PostgresStore], T]) -> T:
        """Run the read-only ``fn(store)`` (a read-only transaction: a write fails)."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._read, fn)

    def run_batch(self, batch: list[Call]) -> list[Outcome]:
        """The batch in one transaction (:func:`together`), else each call in its own."""
        calls = [fn for fn, _, _ in batch]
        try:
            with self.pool.connection() as raw:
                store = self._store(raw)
                return together(store, calls) or [self._alone(store, fn) for fn in calls]
        except PoolTimeout:
            error = StoreUnavailable(f"no database connection within {self.timeout:g} s")
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            error = StoreUnavailable(f"database unavailable: {exc}".strip())
        return [(False, error)] * len(batch)

    @staticmethod
    def _alone(store: PostgresStore, fn: Callable[[PostgresStore], Any]) -> Outcome:
        try:
            with store.transaction():
                return True, fn(store)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            return False, StoreUnavailable(f"database unavailable: {exc}".strip())
        except Exception as exc:
            return False, exc

    def _read(self, fn: Callable[[PostgresStore], T]) -> T:
        try:
            with self.pool.connection() as raw:
                return _read_only(self._store(raw), fn)
        except PoolTimeout as exc:
            raise StoreUnavailable(f"no database connection within {self.timeout:g} s") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"database unavailable: {exc}".strip()) from exc

    def _store(self, raw: psycopg.Connection[Any]) -> PostgresStore:
        store = PostgresStore(raw, self.box, self._cache)
        store.mirror_hold = self.mirror_hold
        return store


def _read_only(store: PostgresStore, fn: Callable[[PostgresStore], T]) -> T:
    """``fn(store)`` in a read-only transaction, opened in one round trip (a write fails)."""
    raw = store.conn.raw  # type: ignore[attr-defined]
    raw.execute("BEGIN READ ONLY")
    store._depth = 1  # the verbs' own transaction() calls join this one
    try:
        result = fn(store)
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            raw.execute("ROLLBACK")
        raise
    finally:
        store._depth = 0
    raw.execute("COMMIT")
    return result


async def listen_for_due(url: str, wake: Callable[[], None], stop: asyncio.Event) -> None:
    """Call ``wake()`` whenever a transaction ``NOTIFY``s :data:`WAKE_CHANNEL`, until ``stop`` is set.
    A lost connection is retried every few seconds (the worker still looks on its own meanwhile)."""
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"LISTEN {WAKE_CHANNEL}")
                wake()  # anything that became due while not listening
                gen = conn.notifies()
                waiter = asyncio.create_task(stop.wait())
                try:
                    while not stop.is_set():
                        note = asyncio.ensure_future(anext(gen))
                        done, _ = await asyncio.wait({note, waiter}, return_when=asyncio.FIRST_COMPLETED)
                        if note in done:
                            note.result()
                            wake()
                        else:
                            note.cancel()
                            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                                await note
                finally:
                    waiter.cancel()
        except (psycopg.Error, OSError):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 3.0)
