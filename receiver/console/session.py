"""Console sessions and CSRF tokens: a signed, HttpOnly, ``SameSite=Strict`` cookie, and one CSRF token
per session.

The cookie holds ``{"sid": "<random>", "admin": true}`` signed (and timestamped) with itsdangerous
under a key derived from the relay's secret key (``RELAY_SECRET_KEY``, or the key file beside the
SQLite database) and the admin token, so changing either signs every operator out. Before sign-in
the login page hands out an anonymous session (``"admin": false``) whose CSRF token the sign-in form
must carry; signing in issues a new session id (no fixation). The CSRF token is
``HMAC-SHA256(key, "csrf:" + sid)``, so the server keeps no session state.

Example::

    sessions = Sessions(settings, api_token)
    value = sessions.dump(Session.new(admin=True))        # the cookie's value
    session = sessions.load(value)                        # None when forged, expired or from another key
    sessions.csrf_token(session)                          # "kX3v…" in every form
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from dispatch.secretbox import load_or_create_key
from receiver.database import key_file_for
from receiver.settings import Settings

COOKIE_NAME = "relay_console"
SESSION_SECONDS = 12 * 3600
"""How long a sign-in lasts (seconds); then the operator signs in again."""


@dataclass(frozen=True)
class Session:
    """One browser's session: ``Session(sid="q3V…", admin=True)``."""

    sid: str
    admin: bool

    @classmethod
    def new(cls, *, admin: bool) -> Session:
        """A session with a fresh random id (128 bits)."""
        return cls(secrets.token_urlsafe(16), admin)


def relay_key(settings: Settings) -> str:
    """The relay's secret key: ``RELAY_SECRET_KEY``, else (SQLite) the key file beside the database,
    which ``serve`` creates on start. Raises :class:`ValidationFailed` for a bad key file."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    return load_or_create_key(None, key_file_for(settings))


class Sessions:
    """Signs and checks console session cookies and CSRF tokens for one relay (its secret key and
    admin token). The key is derived on first use, once the app's lifespan has opened the store (and
    so created the SQLite key file)."""

    def __init__(self, settings: Settings, api_token: str) -> None:
        self._settings = settings
        self._api_token = api_token
        self._key: bytes | None = None

    def _derived(self) -> bytes:
        if self._key is None:
            material = relay_key(self._settings).encode()
            label = b"upscale-relay console session\x00" + self._api_token.encode()
            self._key = hmac.new(material, label, hashlib.sha256).digest()
        return self._key

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._derived(), salt="upscale-relay.console.session")

    def check_token(self, given: str) -> bool:
        """Whether ``given`` is the admin token (compared in constant time)."""
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self._api_token.encode())

    def dump(self, session: Session) -> str:
        """The signed cookie value for ``session``."""
        return self._serializer().dumps({"sid": session.sid, "admin": session.admin})

    def load(self, value: str | None) -> Session | None:
        """The session in a cookie value, or ``None`` when it is missing, forged, signed with another
        key or older than :data:`SESSION_SECONDS`."""
        if not value or len(value) > 4096:
            return None
        try:
            data = self._serializer().loads(value, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return None
        return Session(data["sid"], data.get("admin") is True)

    def csrf_token(self, session: Session) -> str:
        """The CSRF token every form of ``session`` carries (URL-safe, 43 characters)."""
        mac = hmac.new(self._derived(), b"csrf:" + session.sid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def check_csrf(self, session: Session, given: str | None) -> bool:
        """Whether ``given`` is ``session``'s CSRF token (constant time); ``None`` is never."""
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.csrf_token(session).encode())
