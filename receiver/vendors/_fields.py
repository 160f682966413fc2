"""Strict readers for the fields of vendor JSON bodies: one vocabulary for every adapter.

Each reader takes a decoded JSON object, a key and where that object sits in the body (``at="data"`` for
APIXO's envelope, ``at="response.images[0]"``), and returns the value with its documented type, or raises
:class:`PayloadError` whose message starts with the field's dotted path and whose ``details`` is
``{"field": path}``. JSON ``null`` reads as absent. The messages:

=================================== ===============================================================
``data.state: missing``             required, and absent or ``null``
``status.type: must not be empty``  required text that is ``""``
``jobid: expected a string, got     any other JSON type (the kind is the RFC 8259 name: ``null``,
number``                            ``boolean``, ``number``, ``string``, ``array``, ``object``)
``progress: expected a percentage   a value outside its documented range
0-100, got 150``
``created: expected an ISO-8601     text that is not the documented format
time, got 'yesterday'``
=================================== ===============================================================

Example: ``text({"data": {"state": 1}}["data"], "state", at="data", required=True)`` raises
``PayloadError("data.state: expected a string, got number", details={"field": "data.state"})``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

from dispatch.errors import PayloadError
from dispatch.model import Cost, parse_iso

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH_DIGITS = 16  # epoch milliseconds beyond this are past year 9999 (datetime's limit)


def json_kind(value: Any) -> str:
    """The JSON (RFC 8259) name of a decoded value's type, for error messages: ``null``, ``boolean``,
    ``number``, ``string``, ``array`` or ``object`` (``json_kind(3)`` → ``"number"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def invalid(path: str, problem: str) -> PayloadError:
    """The error for one bad field: ``PayloadError("data.state: missing", details={"field": "data.state"})``."""
    return PayloadError(f"{path}: {problem}", details={"field": path})


def field_path(at: str, key: str) -> str:
    """``"data.taskId"`` for ``at="data"``, ``key="taskId"``; just ``key`` at the top level."""
    return f"{at}.{key}" if at else key


def _read(
    obj: Mapping[str, Any], key: str, at: str, required: bool, expected: str, ok: type | tuple[type, ...]
) -> Any:
    """``obj[key]`` when it is an instance of ``ok`` (never a bool unless ``ok`` is ``bool``), ``None``
    when absent or ``null`` and not ``required``; else the field's :class:`PayloadError`."""
    value = obj.get(key)
    if value is None:
        if required:
            raise invalid(field_path(at, key), "missing")
        return None
    if not isinstance(value, ok) or (isinstance(value, bool) and ok is not bool):
        raise invalid(field_path(at, key), f"expected {expected}, got {json_kind(value)}")
    return value


@overload
def text(obj: Mapping[str, Any], key: str, *, at: str = "", required: Literal[True]) -> str: ...
@overload
def text(obj: Mapping[str, Any], key: str, *, at: str = "", required: bool = False) -> str | None: ...
def text(obj: Mapping[str, Any], key: str, *, at: str = "", required: bool = False) -> str | None:
    """The string at ``obj[key]``. Optional text that is absent, ``null`` or ``""`` is ``None``; required
    text must be a non-empty string (``missing``, ``must not be empty``, ``expected a string, got …``)."""
    value: str | None = _read(obj, key, at, required, "a string", str)
    if value == "":
        if required:
            raise invalid(field_path(at, key), "must not be empty")
        return None
    return value


@overload
def integer(obj: Mapping[str, Any], key: str, *, at: str = "", required: Literal[True]) -> int: ...
@overload
def integer(obj: Mapping[str, Any], key: str, *, at: str = "", required: bool = False) -> int | None: ...
def integer(obj: Mapping[str, Any], key: str, *, at: str = "", required: bool = False) -> int | None:
    """The JSON integer at ``obj[key]`` (``2560``; not ``2560.0``, ``"2560"`` or ``true``), or ``None``
    when absent or ``null`` and not ``required``."""
    value: int | None = _read(obj, key, at, required, "an integer", int)
    return value


def number(obj: Mapping[str, Any], key: str, *, at: str = "") -> float | None:
    """The finite JSON number at ``obj[key]`` (``0.65``, ``3``) as a float, or ``None`` when absent or
    ``null``. ``NaN``/``Infinity`` (which Python's JSON reader accepts) and booleans are refused."""
    value: int | float | None = _read(obj, key, at, False, "a number", (int, float))
    if value is None:
        return None
    try:
        result = float(value)
    except OverflowError:  # an integer too large for a float
        result = math.inf
    if not math.isfinite(result):
        raise invalid(field_path(at, key), f"expected a finite number, got {str(value)[:40]}")
    return result


def boolean(obj: Mapping[str, Any], key: str, *, at: str = "") -> bool | None:
    """The JSON boolean at ``obj[key]``, or ``None`` when absent or ``null``."""
    value: bool | None = _read(obj, key, at, False, "a boolean", bool)
    return value


@overload
def obj(data: Mapping[str, Any], key: str, *, at: str = "", required: Literal[True]) -> dict[str, Any]: ...
@overload
def obj(
    data: Mapping[str, Any], key: str, *, at: str = "", required: bool = False
) -> dict[str, Any] | None: ...
def obj(data: Mapping[str, Any], key: str, *, at: str = "", required: bool = False) -> dict[str, Any] | None:
    """The JSON object at ``data[key]``, or ``None`` when absent or ``null`` and not ``required``."""
    value: dict[str, Any] | None = _read(data, key, at, required, "an object", dict)
    return value


def array(data: Mapping[str, Any], key: str, *, at: str = "") -> list[Any] | None:
    """The JSON array at ``data[key]``, or ``None`` when absent or ``null``."""
    value: list[Any] | None = _read(data, key, at, False, "an array", list)
    return value


def objects(items: list[Any], *, at: str) -> list[tuple[str, dict[str, Any]]]:
    """``(path, object)`` for each element of a JSON array of objects: ``[("response.images[0]", {...})]``.
    Raises :class:`PayloadError` naming the first element that is not an object."""
    result = []
    for index, item in enumerate(items):
        path = f"{at}[{index}]"
        if not isinstance(item, dict):
            raise invalid(path, f"expected an object, got {json_kind(item)}")
        result.append((path, item))
    return result


def percent(obj: Mapping[str, Any], key: str, *, at: str = "", whole: bool = False) -> int | None:
    """A 0-100 progress value rounded to an int (``45.6`` → ``46``), or ``None`` when absent or ``null``.
    ``whole`` requires a JSON integer (Apiframe's schema). Raises :class:`PayloadError` for another type,
    NaN/infinity or a value outside 0-100 (``expected a percentage 0-100, got 150``)."""
    value: int | float | None = _read(
        obj, key, at, False, "an integer" if whole else "a number", int if whole else (int, float)
    )
    if value is None:
        return None
    if not 0 <= value <= 100:  # also refuses NaN and infinity
        raise invalid(field_path(at, key), f"expected a percentage 0-100, got {value!r}")
    return round(value)


def dimension(obj: Mapping[str, Any], key: str, *, at: str = "") -> int | None:
    """A size in pixels (``2560``), or ``None`` when absent, ``null`` or not positive (unknown). Raises
    :class:`PayloadError` for a non-integer (``2560.0``, ``"2560"``, ``true``)."""
    value = integer(obj, key, at=at)
    return value if value is not None and value > 0 else None


def iso_time(obj: Mapping[str, Any], key: str, *, at: str = "") -> datetime | None:
    """An ISO-8601 time (``"2026-03-02T14:06:06.789Z"``, any offset) as an aware UTC datetime, or ``None``
    when absent, ``null`` or ``""``; a time without offset is taken as UTC. Raises :class:`PayloadError`
    for a non-string or text that is not such a time (``expected an ISO-8601 time, got 'yesterday'``)."""
    value = text(obj, key, at=at)
    if value is None:
        return None
    try:
        parsed = parse_iso(value)
        return None if parsed is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid(field_path(at, key), f"expected an ISO-8601 time, got {value[:40]!r}") from None


def _from_epoch_ms(ms: int, path: str) -> datetime:
    """Exact UTC time of ``ms`` epoch milliseconds (unlike ``ms / 1000``). Raises :class:`PayloadError`
    when out of datetime's range."""
    try:
        if len(str(abs(ms))) > _MAX_EPOCH_DIGITS:
            raise OverflowError
        return EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise invalid(path, f"epoch milliseconds out of range: {str(ms)[:40]}") from None


def epoch_ms(obj: Mapping[str, Any], key: str, *, at: str = "") -> datetime | None:
    """Epoch **milliseconds** as a JSON integer (APIXO ``createTime: 1767965610929``) as a UTC datetime
    (``2026-01-09T13:33:30.929Z``), or ``None`` when absent or ``null``. Raises :class:`PayloadError` for a
    non-integer or a time out of range."""
    value = integer(obj, key, at=at)
    return None if value is None else _from_epoch_ms(value, field_path(at, key))


def epoch_ms_text(obj: Mapping[str, Any], key: str, *, at: str = "") -> datetime | None:
    """Epoch **milliseconds** as a digit string (LTX ``expirationDateString: "1748919477350"``) as a UTC
    datetime (``2025-06-03T02:57:57.350Z``), or ``None`` when absent, ``null`` or ``""``. Raises
    :class:`PayloadError` for a non-string, other text (``"-1"``, ``"soon"``) or a time out of range."""
    value = text(obj, key, at=at)
    if value is None:
        return None
    path = field_path(at, key)
    if not (value.isascii() and value.isdigit()):
        raise invalid(path, f"expected epoch milliseconds as a digit string, got {value[:40]!r}")
    if len(value) > _MAX_EPOCH_DIGITS:
        raise invalid(path, f"epoch milliseconds out of range: {value[:40]}")
    return _from_epoch_ms(int(value), path)


def cost(amount: float | None, unit: str, *, per: float = 1.0) -> Cost | None:
    """The vendor's reported cost as a :class:`Cost` in ``unit`` (``amount / per``: Artnex's
    ``credits_used: 100`` → ``Cost(100.0, "credits")``), or ``None`` when not reported.
    Read ``amount`` with :func:`integer` or :func:`number`, so a non-numeric cost is a
    :class:`PayloadError` naming the field."""
    return None if amount is None else Cost(amount / per, unit)
