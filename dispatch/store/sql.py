"""What the store's verbs need from a database connection, whichever engine is behind it.

The verbs (:mod:`dispatch.store.jobs`, ``deliveries``, ``polls``, ``submits``) are written once, in
SQL both engines run, against :class:`Conn` (``?`` placeholders; rows read by column name). Where
the engines' SQL differs, the verbs use :class:`Dialect` fragments instead of literal text.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Cursor(Protocol):
    """The part of a DB-API cursor the verbs use; rows support ``row["column"]`` (and ``row[0]``)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """A connection that runs one statement with ``?`` placeholders: ``conn.execute(sql, params)``."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...


@dataclass(frozen=True)
class Dialect:
    """SQL that differs between engines.

    ``least``/``greatest`` are the two-argument scalar minimum/maximum (SQLite's ``MIN(a, b)``,
    Postgres' ``LEAST(a, b)``); ``skip_locked`` is appended to the SELECT inside a claim, so that
    concurrent workers on Postgres skip rows another transaction is claiming (SQLite has one writer).
    """

    name: str
    least: str
    greatest: str
    skip_locked: str
    for_update: str  # appended to a SELECT of the row a verb is about to change


SQLITE = Dialect("sqlite", least="MIN", greatest="MAX", skip_locked="", for_update="")
POSTGRES = Dialect(
    "postgres",
    least="LEAST",
    greatest="GREATEST",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    for_update=" FOR UPDATE",
)


class SubscriberCache:
    """The live subscribers as ``(id, event types, enabled)``, kept per version of the subscribers
    (``relay_meta.subscribers``, bumped by every change that matters, in any process) so the write
    path need not read them for every event. Thread-safe; one per process and database.

    Example: ``cache.get(7)`` → ``(("sub_1", frozenset({"job.succeeded"}), True),)`` or ``None``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._subs: tuple[tuple[str, frozenset[str], bool], ...] = ()

    def get(self, version: int) -> tuple[tuple[str, frozenset[str], bool], ...] | None:
        """The list stored for ``version``, or ``None`` when it changed since (or none is stored)."""
        with self._lock:
            return self._subs if self._version == version else None

    def put(self, version: int, subs: tuple[tuple[str, frozenset[str], bool], ...]) -> None:
        """Keep ``subs`` as the list at ``version``."""
        with self._lock:
            self._version, self._subs = version, subs


def page_key(created_at: int, row_id: str) -> str:
    """An opaque cursor for keyset pagination: ``page_key(1764480000000, "job_1")`` →
    ``"MTc2NDQ4MDAwMDAwMDpqb2JfMQ"`` (URL-safe base64 of ``"<unix ms>:<id>"``)."""
    raw = f"{created_at}:{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_ROW_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what new_id() and event_id() make
MAX_MILLIS = 2**63 - 1  # the largest BIGINT (and SQLite INTEGER): no stored time is later


def parse_page_key(cursor: str) -> tuple[int, str]:
    """The ``(unix ms, id)`` in a cursor from :func:`page_key`. Raises ``ValueError`` for anything
    else (a cursor is opaque: only ever pass back what a list returned), whatever it decodes to: a
    time that is not ASCII digits or is past :data:`MAX_MILLIS` (``2**63`` once overflowed SQLite),
    an id that no relay id looks like (``job_19a9…``, ``evt_…``)."""
    try:
        if len(cursor) > 200:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        millis, _, row_id = raw.partition(":")
        if not (millis.isascii() and millis.isdigit() and len(millis) <= 19) or not _ROW_ID.fullmatch(row_id):
            raise ValueError
        if int(millis) > MAX_MILLIS:
            raise ValueError
        return int(millis), row_id
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"not a cursor this relay returned: {cursor[:60]!r}") from None
