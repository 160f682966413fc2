"""What the two useapi.net adapters (LTX Studio, Dreamina) share: Bearer auth, the error envelope,
the callback fields the relay owns, and strict readers for fields of vendor JSON bodies.

useapi authenticates every API with one token sent whole as ``Authorization: Bearer user:<n>-<str>``
(https://useapi.net/llms-full.txt). Errors come as ``{"error": "Unauthorized", "code": 401}``
(https://useapi.net/docs/api-ltxstudio-v1/post-ltxstudio-images-upscale); Dreamina's bodies omit
``code`` (``{"error": "Source image job not found"}``,
https://useapi.net/docs/api-dreamina-v1/post-dreamina-images-upscale). Callbacks go to ``replyUrl``
and echo ``replyRef``; neither is signed.

Every reader raises :class:`PayloadError` whose message starts with the field's dotted path
(``status.type: expected a string, got number``) and whose ``details`` is ``{"field": path}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import parse_iso
from receiver.vendors import base
from receiver.vendors.base import invalid, json_kind

RESERVED_FIELDS: frozenset[str] = frozenset({"replyUrl", "replyRef"})
"""Request fields the relay injects itself: ``replyUrl`` (callback URL) and ``replyRef`` (relay job id)."""

_MISSING = object()


def auth_headers(credential: str) -> dict[str, str]:
    """``{"Authorization": "Bearer user:12345-abc"}``: the useapi token, sent whole and unencoded."""
    return {"Authorization": f"Bearer {credential}"}


def is_success(status_code: int) -> bool:
    """True for a 2xx HTTP status."""
    return 200 <= status_code < 300


def error_from_response(
    status_code: int, body: bytes, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """The :class:`UpstreamError` for a useapi error response.

    The message is the envelope's ``error`` (``{"error": "Job has expired", "code": 410}`` →
    ``"Job has expired"``, code ``vendor_expired``), else whatever :func:`base.error_message` finds in the
    body. The HTTP status, not the body's ``code``, decides the relay code (see :func:`base.upstream_error`);
    ``Retry-After`` (seconds) is read from ``headers``. Never raises.
    """
    message: str | None = None
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"].strip():
        message = data["error"].strip()
    if message is None:
        message = base.error_message(body)
    return base.upstream_error(status_code, message, headers)


def _wrong_type(path: str, expected: str, value: object) -> PayloadError:
    return invalid(path, f"expected {expected}, got {json_kind(value)}")


def _get(obj: Mapping[str, Any], key: str) -> Any:
    """``obj[key]``, with JSON ``null`` read as absent (``_MISSING``)."""
    value = obj.get(key, _MISSING)
    return _MISSING if value is None else value


def required_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    """The non-empty string at ``obj[key]``; ``path`` names it in errors (``"status.type"``).
    Raises :class:`PayloadError` when absent, ``null``, empty or not a string."""
    value = _get(obj, key)
    if value is _MISSING:
        raise invalid(path, "missing")
    if not isinstance(value, str):
        raise _wrong_type(path, "a string", value)
    if not value:
        raise invalid(path, "must not be empty")
    return value


def optional_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    """The string at ``obj[key]``, or ``None`` when absent, ``null`` or empty. Raises
    :class:`PayloadError` for any other type."""
    value = _get(obj, key)
    if value is _MISSING:
        return None
    if not isinstance(value, str):
        raise _wrong_type(path, "a string", value)
    return value or None


def required_object(obj: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
    """The JSON object at ``obj[key]``. Raises :class:`PayloadError` when absent or not an object."""
    value = _get(obj, key)
    if value is _MISSING:
        raise invalid(path, "missing")
    if not isinstance(value, dict):
        raise _wrong_type(path, "an object", value)
    return value


def optional_object(obj: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
    """The JSON object at ``obj[key]``, or ``None`` when absent or ``null``. Raises
    :class:`PayloadError` for any other type."""
    value = _get(obj, key)
    if value is _MISSING:
        return None
    if not isinstance(value, dict):
        raise _wrong_type(path, "an object", value)
    return value


def optional_list(obj: Mapping[str, Any], key: str, path: str) -> list[Any] | None:
    """The JSON array at ``obj[key]``, or ``None`` when absent or ``null``. Raises
    :class:`PayloadError` for any other type."""
    value = _get(obj, key)
    if value is _MISSING:
        return None
    if not isinstance(value, list):
        raise _wrong_type(path, "an array", value)
    return value


def optional_percent(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    """A 0-100 progress number (``45``, ``45.6`` → ``46``) rounded to an int, or ``None`` when absent
    or ``null``. Raises :class:`PayloadError` for a non-number, NaN/infinity or a value outside 0-100."""
    value = _get(obj, key)
    if value is _MISSING:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(path, "a number", value)
    if not 0 <= value <= 100:  # also refuses NaN and infinity
        raise invalid(path, f"expected a percentage 0-100, got {value!r}")
    return round(value)


def optional_dimension(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    """A size in pixels (``2560``), or ``None`` when absent, ``null`` or not positive (unknown).
    Raises :class:`PayloadError` for a non-integer (``2560.0``, ``"2560"``, ``true``)."""
    value = _get(obj, key)
    if value is _MISSING:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(path, "an integer", value)
    return value if value > 0 else None


def optional_iso_time(obj: Mapping[str, Any], key: str, path: str) -> datetime | None:
    """An ISO-8601 time (``"2026-03-02T14:06:06.789Z"``) as an aware UTC datetime, or ``None`` when
    absent, ``null`` or empty; a time without offset is taken as UTC. Raises :class:`PayloadError`
    for a non-string or text that is not an ISO-8601 time."""
    text = optional_str(obj, key, path)
    if text is None:
        return None
    try:
        parsed = parse_iso(text)
        return None if parsed is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid(path, f"expected an ISO-8601 time, got {text[:40]!r}") from None
