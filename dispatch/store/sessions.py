"""Store verbs for console sessions signed out before their cookie expires.

A console session is a signed cookie (:mod:`receiver.console.session`); signing out must make that
cookie useless on every relay process, so the session's id is kept as revoked until the cookie
would have expired anyway. The ids live in ``relay_meta`` (``key`` ``revoked_session:<sid>``,
``value`` the unix ms until which it stays revoked): no table of its own, no migration.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from dispatch.store.sql import Conn

_PREFIX = "revoked_session:"


class SessionVerbs:
    """Mixed into :class:`dispatch.store.sqlite.SQLiteStore` and the Postgres store."""

    conn: Conn

    if TYPE_CHECKING:  # provided by the store classes

        def transaction(self) -> AbstractContextManager[Conn]: ...

    def revoke_session(self, sid: str, *, until: int, now: int) -> None:
        """Keep session ``sid`` revoked until ``until`` (unix ms), and forget revocations that ended
        before ``now``. Example: ``revoke_session("q3V…", until=now + 12 * 3600 * 1000, now=now)``."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM relay_meta WHERE key LIKE ? AND value < ?", (_PREFIX + "%", now))
            conn.execute(
                "INSERT INTO relay_meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_PREFIX + sid, until),
            )

    def session_revoked(self, sid: str, *, now: int) -> bool:
        """Whether session ``sid`` was signed out and its revocation still runs at ``now`` (unix ms)."""
        row = self.conn.execute("SELECT value FROM relay_meta WHERE key = ?", (_PREFIX + sid,)).fetchone()
        return row is not None and int(row[0]) >= now
