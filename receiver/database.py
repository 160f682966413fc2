"""Opening the configured database: SQLite (``sqlite:///PATH``, the default) or Postgres
(``postgresql://user@host:port/db``), as a sync store (CLI), a runner (the app and the worker), and
its migrations.

Example::

    runner = open_runner(load_settings())   # StoreRunner on SQLite, PgRunner on Postgres
    upscale-relay migrate --status          # what is applied, on either engine
"""

from __future__ import annotations

from pathlib import Path

from dispatch.errors import NotConfigured, StoreUnavailable
from dispatch.secretbox import SecretBox, load_or_create_key
from dispatch.store import schema, schema_pg
from dispatch.store.postgres import PgRunner, PostgresStore, connect
from dispatch.store.runner import StoreRunner
from dispatch.store.sqlite import SQLiteStore
from receiver.settings import Settings

SyncStore = SQLiteStore | PostgresStore
Runner = StoreRunner | PgRunner


def key_file_for(settings: Settings) -> Path:
    """Where the generated secret key lives: beside the SQLite file (``relay.db`` → ``relay.db.key``)."""
    path = settings.sqlite_path
    return path.with_name(path.name + ".key")


def secret_box(settings: Settings) -> SecretBox:
    """The box that encrypts subscriber secrets and callback tokens: ``RELAY_SECRET_KEY``, or on
    SQLite a key generated into a 0600 file beside the database. Raises :class:`ValidationFailed`
    (a bad key) and :class:`NotConfigured` (Postgres without ``RELAY_SECRET_KEY``: every process
    sharing the database must use the same key, so none may make up its own)."""
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    if settings.is_postgres:
        if secret is None:
            raise NotConfigured(
                "RELAY_SECRET_KEY must be set with Postgres: every serve and worker process sharing the"
                ' database needs the same key (generate one with: python -c "from cryptography.fernet'
                ' import Fernet; print(Fernet.generate_key().decode())")'
            )
        return SecretBox(secret)
    return SecretBox(load_or_create_key(secret, key_file_for(settings)))


def open_store(settings: Settings, *, read_only: bool = False) -> SyncStore:
    """The configured store on one connection (the CLI). Creates and migrates a SQLite file unless
    ``read_only``; never migrates Postgres (``upscale-relay migrate`` and ``serve`` do).

    With ``read_only`` a missing SQLite file is :class:`StoreUnavailable` ("... does not exist"),
    not a new empty database. Raises :class:`StoreUnavailable`, :class:`ValidationFailed`,
    :class:`NotConfigured`.
    """
    if settings.is_postgres:
        pg = PostgresStore.open(settings.database_url, secret_box(settings))
        pg.mirror_hold = settings.mirror_url is not None  # job.succeeded waits for the copy
        return pg
    path = settings.sqlite_path
    if read_only and str(path) != ":memory:" and not path.exists():
        raise StoreUnavailable(
            f"database {path} does not exist (check RELAY_DATABASE_URL or --database; `upscale-relay"
            " migrate` creates it)"
        )
    box = secret_box(settings)
    if read_only:
        return SQLiteStore.open_reader(path, box, busy_timeout=settings.db_busy_timeout)
    store = SQLiteStore.open(path, box, busy_timeout=settings.db_busy_timeout)
    store.mirror_hold = settings.mirror_url is not None  # job.succeeded waits for the copy
    return store


def open_runner(settings: Settings, *, read_only: bool = False) -> Runner:
    """The runner the app and the worker use: on SQLite the group-committing writer plus a
    read-only reader connection; on Postgres a connection pool (``RELAY_DB_POOL_SIZE``). Migrates
    first, unless ``read_only`` (read-only CLI commands: nothing is created or migrated, a missing
    SQLite file is an error, and a write fails). Raises :class:`StoreUnavailable`."""
    if read_only and not settings.is_postgres:
        reader = open_store(settings, read_only=True)
        assert isinstance(reader, SQLiteStore)
        return StoreRunner(reader, reader=SQLiteStore.open_reader(settings.sqlite_path, reader.box))
    if settings.is_postgres:
        if not read_only:
            migrate(settings)
        pg = PgRunner(
            settings.database_url,
            secret_box(settings),
            size=settings.db_pool_size,
            timeout=settings.db_busy_timeout,
        )
        pg.mirror_hold = settings.mirror_url is not None  # job.succeeded waits for the copy
        return pg
    store = SQLiteStore.open(
        settings.sqlite_path, secret_box(settings), busy_timeout=settings.db_busy_timeout
    )
    store.mirror_hold = settings.mirror_url is not None  # job.succeeded waits for the copy
    if str(settings.sqlite_path) == ":memory:":
        return StoreRunner(store)
    reader = SQLiteStore.open_reader(settings.sqlite_path, store.box, busy_timeout=settings.db_busy_timeout)
    on_loop = SQLiteStore.open_writer(settings.sqlite_path, store.box)  # StoreRunner.call_hot
    on_loop.mirror_hold = store.mirror_hold
    return StoreRunner(store, reader=reader, checkpoint=settings.sqlite_path, on_loop=on_loop)


def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations (Postgres: under an advisory lock, so processes starting together do
    not race); returns their names. Raises :class:`StoreUnavailable`."""
    if settings.is_postgres:
        conn = connect(settings.database_url)
        try:
            return schema_pg.migrate(conn)
        except Exception as exc:
            raise StoreUnavailable(f"migration failed: {exc}") from exc
        finally:
            conn.close()
    path = settings.sqlite_path
    before = {name for name, at in migration_status(settings) if at} if path.exists() else set()
    store = SQLiteStore.open(path, secret_box(settings), busy_timeout=settings.db_busy_timeout)  # migrates
    try:
        return [name for name, at in schema.status(store.conn) if at and name not in before]
    finally:
        store.close()


def migration_status(settings: Settings) -> list[tuple[str, str | None]]:
    """Every migration with its applied time or ``None``; never changes the database. Raises
    :class:`StoreUnavailable` (a missing SQLite file included)."""
    if settings.is_postgres:
        conn = connect(settings.database_url)
        try:
            return schema_pg.status(conn)
        finally:
            conn.close()
    store = open_store(settings, read_only=True)
    try:
        rows = store.conn.execute("SELECT name, applied_at FROM _migrations").fetchall()
        known = {row[0]: row[1] for row in rows}
    finally:
        store.close()
    return [(name, known.get(name)) for name, _ in schema.MIGRATIONS]
