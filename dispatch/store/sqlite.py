"""The SQLite store: one connection, WAL mode, explicit transactions.

Every domain verb runs inside :meth:`SQLiteStore.transaction`; nested calls join the open
transaction, so the group-commit runner (:mod:`dispatch.store.runner`) can put many verbs in one
transaction, and roll back one verb alone with :meth:`SQLiteStore.savepoint` when it must. SQLite
errors that mean "cannot write now" (disk full, I/O error, locked past the busy timeout) become
:class:`StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dispatch.errors import StoreUnavailable
from dispatch.secretbox import SecretBox
from dispatch.store.deliveries import DeliveryVerbs
from dispatch.store.jobs import JobVerbs
from dispatch.store.mirrors import MirrorVerbs
from dispatch.store.polls import PollVerbs
from dispatch.store.schema import migrate
from dispatch.store.sessions import SessionVerbs
from dispatch.store.sql import SQLITE, SubscriberCache
from dispatch.store.stats import StatsVerbs
from dispatch.store.submits import SubmitVerbs

BUSY_TIMEOUT = 5.0  # seconds a write waits for another connection's lock before giving up


class WriteLockBusy(StoreUnavailable):
    """``BEGIN IMMEDIATE`` found the write lock held by another connection past the busy timeout
    (at once, for the runner's on-loop connection, whose busy timeout is 0); nothing was written."""


class SQLiteStore(JobVerbs, PollVerbs, DeliveryVerbs, SubmitVerbs, MirrorVerbs, StatsVerbs, SessionVerbs):
    """The relay's database on one SQLite file.

    Example::

        store = SQLiteStore.open(Path("relay.db"), SecretBox(key))
        job = store.create_job("apixo", {"input": {...}}, reference=None, token_hash="…")

    The store is not thread-safe by itself: use it from one thread (the CLI), or through
    :class:`dispatch.store.runner.StoreRunner` from async code.
    """

    conn: sqlite3.Connection
    sql = SQLITE

    def __init__(self, conn: sqlite3.Connection, box: SecretBox) -> None:
        self.conn = conn
        self.box = box
        self.subscriber_cache = SubscriberCache()
        self._depth = 0
        self._owner: int | None = None

    @classmethod
    def open(cls, path: Path, box: SecretBox, *, busy_timeout: float = BUSY_TIMEOUT) -> SQLiteStore:
        """Open (creating if needed) and migrate the database at ``path``.

        ``busy_timeout`` (seconds) is how long a statement waits for a lock held by another
        connection (another process) before it fails, as :class:`StoreUnavailable`. A new database
        file is created mode 0600, and an existing one (with its ``-wal`` and ``-shm`` files, which
        SQLite creates with the database's mode) is narrowed to 0600: it holds callback bodies and
        encrypted secrets. Raises :class:`StoreUnavailable` when the file cannot be opened or migrated.
        """
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
                _owner_only(path)
            conn = _connect(path, busy_timeout)
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open database {path}: {exc}") from exc
        return cls(conn, box)

    @classmethod
    def open_writer(cls, path: Path, box: SecretBox, *, busy_timeout: float = 0.0) -> SQLiteStore:
        """A further writing connection to an existing database opened (and migrated) by
        :meth:`open`; by default it never waits for the write lock (``busy_timeout`` 0 seconds:
        :class:`WriteLockBusy` at once). The runner commits short batches on the event loop's own
        thread through it (:meth:`dispatch.store.runner.StoreRunner.call_hot`). Raises
        :class:`StoreUnavailable`."""
        try:
            conn = _connect(path, busy_timeout, must_exist=True)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open database {path}: {exc}") from exc
        return cls(conn, box)

    @classmethod
    def open_reader(cls, path: Path, box: SecretBox, *, busy_timeout: float = BUSY_TIMEOUT) -> SQLiteStore:
        """A second, read-only connection to an existing database opened by :meth:`open`.

        In WAL mode readers never wait for the writer's lock, so reads (admin API, callback token
        lookups, readiness) stay fast while another process holds the write lock. Any write through
        this connection fails (``PRAGMA query_only``). Raises :class:`StoreUnavailable`.
        """
        try:
            conn = _connect(path, busy_timeout, must_exist=True)
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open database {path}: {exc}") from exc
        return cls(conn, box)

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction (``BEGIN IMMEDIATE``); inside one, just the one already open.

        Commits on success, rolls back on any exception (re-raised). Raises
        :class:`StoreUnavailable` when SQLite cannot write.

        A verb nested in another (or in the runner's batch transaction) adds no savepoint, as on
        Postgres: no verb catches a failure of one it calls, and a savepoint makes SQLite copy every
        page the verb changes into a statement journal first (about 65 us of a source callback's
        275 us on the writer thread: bench/README.md, "What the later session's changes bought").
        :meth:`savepoint` is there for a caller that must roll back one part alone (the runner's
        failed batch, re-run call by call).
        """
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            except sqlite3.DatabaseError as exc:  # "cannot write now" reaches the verb's caller as such
                if isinstance(exc, sqlite3.IntegrityError):
                    raise
                raise StoreUnavailable(f"database write failed: {exc}") from exc
            finally:
                self._depth -= 1
            return
        self._owner = threading.get_ident()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                raise WriteLockBusy(f"database unavailable: {exc}") from exc
            raise StoreUnavailable(f"database unavailable: {exc}") from exc
        self._depth = 1
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            self._rollback()
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            raise StoreUnavailable(f"database write failed: {exc}") from exc
        except BaseException:
            self._rollback()
            raise
        finally:
            self._depth = 0

    @contextmanager
    def savepoint(self) -> Iterator[sqlite3.Connection]:
        """Inside :meth:`transaction`, a savepoint: on an exception (re-raised) only what was written
        inside it is rolled back, and the transaction goes on. Raises ``RuntimeError`` outside a
        transaction; SQLite errors other than constraint violations become :class:`StoreUnavailable`.
        """
        if not self._depth:
            raise RuntimeError("savepoint() outside a transaction")
        name = f"sp{self._depth}"
        self.conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield self.conn
            self.conn.execute(f"RELEASE {name}")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                raise StoreUnavailable(f"database write failed: {exc}") from exc
            raise
        finally:
            self._depth -= 1

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    def lock(self, key: str) -> None:
        """Nothing to do: SQLite has one writer, so a write transaction already excludes the others."""
        del key

    def notify_due(self) -> None:
        """Nothing to do: in-process dispatchers are woken directly (``on_event``)."""

    def ping(self) -> bool:
        """True when the database answers a trivial query (readiness)."""
        try:
            self.conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True


def _connect(path: Path, busy_timeout: float, *, must_exist: bool = False) -> sqlite3.Connection:
    target, uri = (path.resolve().as_uri() + "?mode=rw", True) if must_exist else (str(path), False)
    conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=uri)
    conn.row_factory = sqlite3.Row  # the verbs read columns by name
    conn.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _owner_only(path: Path) -> None:
    """Create ``path`` mode 0600 if missing; narrow it and its ``-wal``/``-shm`` files to 0600."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)
