"""Standard Webhooks signatures: sign deliveries, verify signed requests.

Transcribes https://www.standardwebhooks.com/ (spec "Signature scheme"): the signed content is
``f"{webhook-id}.{webhook-timestamp}.".encode() + body`` (bytes end to end), signed with HMAC-SHA256
under the secret's decoded bytes; ``webhook-signature`` is a space-separated list of ``v1,<base64>``
(several entries while a secret is being rotated). Signing and verifying share :func:`_digest`.

Example::

    secret = generate_secret()                       # "whsec_..."
    headers = delivery_headers("evt_1", b'{"id": "evt_1"}', [secret], timestamp=1_790_000_000,
                               user_agent="upscale-relay/0.1.0")
    verify(secret, headers, b'{"id": "evt_1"}', now=1_790_000_010)   # passes silently
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence

from dispatch.errors import SignatureInvalid, ValidationFailed

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # spec "Signature scheme": secrets SHOULD be 24-64 random bytes
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_REQUIRED = ("webhook-id", "webhook-timestamp", "webhook-signature")


def generate_secret() -> str:
    """A fresh subscriber secret: ``"whsec_"`` + base64 of 32 random bytes (``secrets.token_bytes``).

    Example: ``"whsec_9c3UxU0QwQmO1f6xwZ0v1mB9n8v1Wb1h2gF+Z0lJd2E="`` (50 characters).
    """
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The HMAC key inside a secret: strip ``"whsec_"`` (optional) and base64-decode the rest.

    Missing ``=`` padding is tolerated, like the reference library. Example:
    ``secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")`` → 24 bytes.

    Raises :class:`ValidationFailed` if the rest is not base64 or decodes to fewer than 24 bytes.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed("webhook secret is not 'whsec_' followed by base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValidationFailed(
            f"webhook secret is {len(key)} bytes; at least {MIN_SECRET_BYTES} random bytes are required"
        )
    return key


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    """HMAC-SHA256 over ``f"{msg_id}.{timestamp}.".encode() + body``: the one signing code path."""
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``webhook-signature`` entry: ``"v1," + base64(HMAC-SHA256(key, "{id}.{timestamp}." + body))``.

    ``timestamp`` is unix seconds. Example (the spec's test vector)::

        sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
             b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    Raises :class:`ValidationFailed` for a malformed secret.
    """
    digest = _digest(secret_bytes(secret), msg_id, timestamp, body)
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,...`` per secret, space-separated (secret rotation).

    Example: ``"v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1,3Xq..."`` for two secrets.
    Raises :class:`ValidationFailed` when ``secrets`` is empty or one is malformed.
    """
    if not secrets:
        raise ValidationFailed("at least one webhook secret is needed to sign")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def delivery_headers(
    event_id: str, body: bytes, secrets: Sequence[str], *, timestamp: int, user_agent: str
) -> dict[str, str]:
    """Every header of one delivery attempt (DESIGN.md "Event contract", Standard Webhooks).

    ``timestamp`` is unix seconds, fresh per attempt. Example::

        {"webhook-id": "evt_abc", "webhook-timestamp": "1790000000",
         "webhook-signature": "v1,...", "Idempotency-Key": "evt_abc",
         "Content-Type": "application/json", "User-Agent": "upscale-relay/0.1.0"}

    Raises :class:`ValidationFailed` when ``secrets`` is empty or one is malformed.
    """
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, event_id, timestamp, body),
        "Idempotency-Key": event_id,
        "Content-Type": "application/json",
        "User-Agent": user_agent,
    }


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: int = 300, now: float | None = None
) -> None:
    """Check a Standard Webhooks signed request; return ``None`` when it is authentic and fresh.

    ``headers`` are matched case-insensitively (a plain dict or Starlette ``Headers``); ``body`` is the
    raw bytes as received. ``webhook-timestamp`` must be integer unix seconds within ``tolerance``
    seconds of ``now`` (unix seconds, default: the clock) either way; at least one ``v1,`` entry of
    ``webhook-signature`` must match (constant-time comparison); other versions are skipped.

    Raises :class:`SignatureInvalid` for every failure (missing or malformed header, stale or future
    timestamp, no matching signature); the message says which. Raises :class:`ValidationFailed` if
    ``secret`` itself is malformed (a configuration error, not the sender's).
    """
    key = secret_bytes(secret)
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    raw_timestamp = lowered.get("webhook-timestamp", "")
    raw_signatures = lowered.get("webhook-signature", "")
    missing = [name for name in _REQUIRED if not lowered.get(name)]
    if missing:
        raise SignatureInvalid(f"missing {', '.join(missing)} header")
    if not _TIMESTAMP.fullmatch(raw_timestamp.strip()):
        raise SignatureInvalid("webhook-timestamp is not integer unix seconds")
    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise SignatureInvalid(f"webhook-timestamp is more than {tolerance} s old")
    if timestamp > current + tolerance:
        raise SignatureInvalid(f"webhook-timestamp is more than {tolerance} s in the future")
    expected = _digest(key, msg_id, timestamp, body)
    matched = False
    for entry in raw_signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureInvalid("no matching v1 signature in webhook-signature")
