"""Subscriber secrets encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``).

The key comes from ``RELAY_SECRET_KEY`` or, when that is unset, from a 0600 key file beside the SQLite
file, generated on first start (:func:`load_or_create_key`). Example::

    box = SecretBox(load_or_create_key(None, Path("relay.key")))
    token = box.encrypt("whsec_...")        # "gAAAAAB..." stored in the subscribers table
    box.decrypt(token) == "whsec_..."
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from dispatch.errors import StoreUnavailable, ValidationFailed

_KEY_HINT = "a Fernet key is 32 bytes in url-safe base64 (44 characters), e.g. from Fernet.generate_key()"


def _fernet(key: str | bytes, source: str) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        raise ValidationFailed(f"{source} is not a valid Fernet key: {_KEY_HINT}") from None


class SecretBox:
    """Encrypts and decrypts subscriber secrets with one Fernet key.

    ``key`` is a Fernet key (``str`` or ``bytes``, 44 url-safe base64 characters). Raises
    :class:`ValidationFailed` for anything else. The key is never shown by ``repr``.
    """

    def __init__(self, key: str | bytes) -> None:
        self._fernet = _fernet(key, "the secret key")

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"

    def encrypt(self, plain: str) -> str:
        """Encrypt ``plain`` (UTF-8) into a Fernet token, e.g. ``"gAAAAABm..."`` (ASCII, timestamped)."""
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a token made by :meth:`encrypt` with the same key back to the plain text.

        Raises :class:`ValidationFailed` when the token is corrupted or was made with another key
        (typically: ``RELAY_SECRET_KEY`` or the key file changed since the secret was stored).
        """
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except (InvalidToken, ValueError, TypeError):
            raise ValidationFailed(
                "cannot decrypt a stored secret: the token is corrupted or was encrypted with a different "
                "key (did RELAY_SECRET_KEY or the key file change?)"
            ) from None


def load_or_create_key(key: str | None, key_file: Path) -> str:
    """The Fernet key to use: ``key`` if given, else the one in ``key_file``, else a new one written there.

    - ``key`` given (``RELAY_SECRET_KEY``): it must be a Fernet key; ``key_file`` is not touched.
    - ``key_file`` exists: it must not be accessible by group or other (mode ``0600`` or stricter) and
      must hold a Fernet key (surrounding whitespace ignored).
    - otherwise: a new key is generated and written to ``key_file`` (its folder created if missing).
      The key goes to a private ``0600`` temporary file first, which is then hard-linked into place,
      so the file is never readable by others and another process starting at the same moment sees
      either no key file or a complete one; if that process wins, its key is used.

    Example: ``load_or_create_key(None, Path("relay.key"))`` → ``"q3v...="`` (44 characters).
    Raises :class:`ValidationFailed` for a malformed key or an over-permissive key file, and
    :class:`StoreUnavailable` when the key file cannot be created or read (missing permission,
    read-only or full disk).
    """
    if key is not None:
        _fernet(key, "RELAY_SECRET_KEY")
        return key
    try:
        if not key_file.exists():
            created = _create_key_file(key_file)
            if created is not None:
                return created
        mode = stat.S_IMODE(key_file.stat().st_mode)
        stored = key_file.read_text(encoding="ascii", errors="replace").strip()
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create or read the key file {key_file}: {exc.strerror or exc}"
        ) from None
    if os.name == "posix" and mode & 0o077:
        raise ValidationFailed(
            f"key file {key_file} has mode {mode:04o}: it must not be accessible by group or other; "
            f"run: chmod 600 {key_file}"
        )
    _fernet(stored, f"the key file {key_file}")
    return stored


def _create_key_file(key_file: Path) -> str | None:
    """Write a new key to ``key_file`` atomically; ``None`` when another process created it first.
    Raises ``OSError``."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    new_key = Fernet.generate_key()
    temp = key_file.with_name(f".{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(new_key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, key_file)
        except FileExistsError:
            return None  # another process won the race: read theirs
    finally:
        temp.unlink(missing_ok=True)
    return new_key.decode("ascii")
