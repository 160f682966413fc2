"""Readers for the fields of vendor JSON bodies: one vocabulary for every adapter.

Each reader takes a decoded JSON object, a key and where that object sits in the body (``at="data"`` for
APIXO's envelope, ``at="response.images[0]"``), and returns the value with its documented type, or raises
:class:`PayloadError` whose message starts with the field's dotted path and whose ``details`` is
``{"field": path}``. JSON ``null`` reads as absent.

Liberal in what they accept (issue 20, "Numbers and shapes read liberally"): where a page gives a number,
an integer, a float or a numeric string is read (``41388``, ``41388.5``, ``"41388"``); an epoch time also
as a float or digit string; a vendor job id is any non-empty string up to 512 characters without control
characters (:func:`job_id`). What carries the outcome (job id, state, output URL, error code) is read
with these readers directly, so a bad value still fails the message. Every other field is read through
:class:`Notes`: a value that cannot be used is left out and recorded as an :class:`Anomaly` (path and
what was seen) instead of failing the message. Output URLs must be ``http(s)`` (:meth:`Notes.url`). The
messages:

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
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, overload
from urllib.parse import urlsplit

from dispatch.errors import PayloadError
from dispatch.model import Anomaly, Cost, parse_iso

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH_DIGITS = 16  # epoch milliseconds beyond this are past year 9999 (datetime's limit)
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
MAX_JOB_ID_LENGTH = 512
"""Longest vendor job id accepted (characters)."""
MAX_URL_LENGTH = 8192
"""Longest output URL kept (characters; signed CDN URLs run to a few thousand)."""
_T = TypeVar("_T")


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
    """The whole number at ``obj[key]``: a JSON integer (``2560``), a float without fraction
    (``2560.0``) or a numeric string of one (``"2560"``), or ``None`` when absent or ``null`` and not
    ``required``. ``2560.5``, ``true`` and other text are refused."""
    value = obj.get(key)
    if value is None:
        if required:
            raise invalid(field_path(at, key), "missing")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    result = _numeric(value)
    if result is None or not math.isfinite(result) or result != int(result):
        raise invalid(field_path(at, key), f"expected an integer, got {_shown(value)}")
    return int(result)


def _numeric(value: Any) -> float | None:
    """``value`` as a float when it is a JSON number (not a boolean) or a numeric string (``"41388"``,
    ``" 41388.5 "``, ``"1e3"``), else ``None``; may be NaN or infinite."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # an integer too large for a float
            return math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str) and len(value) <= 64 and _NUMERIC.fullmatch(value.strip()):
        return float(value.strip())
    return None


def number(obj: Mapping[str, Any], key: str, *, at: str = "") -> float | None:
    """The finite number at ``obj[key]`` as a float: a JSON integer or float (``0.65``, ``3``) or a
    numeric string (``"41388"``), or ``None`` when absent or ``null``. Booleans, other text and
    ``NaN``/``Infinity`` (which Python's JSON reader accepts) are refused."""
    value = obj.get(key)
    if value is None:
        return None
    result = _numeric(value)
    if result is None:
        raise invalid(field_path(at, key), f"expected a number, got {json_kind(value)}")
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


def percent(obj: Mapping[str, Any], key: str, *, at: str = "") -> int | None:
    """A 0-100 progress value rounded to an int (``45.6`` → ``46``, ``100.0`` and ``"100"`` → ``100``),
    or ``None`` when absent or ``null``. Raises :class:`PayloadError` for another type, NaN/infinity or
    a value outside 0-100 (``expected a percentage 0-100, got 150``)."""
    value = number(obj, key, at=at)
    if value is None:
        return None
    if not 0 <= value <= 100:
        raise invalid(field_path(at, key), f"expected a percentage 0-100, got {obj.get(key)!r}")
    return round(value)


def dimension(obj: Mapping[str, Any], key: str, *, at: str = "") -> int | None:
    """A size in pixels (``2560``, ``2560.0``, ``"2560"``), or ``None`` when absent, ``null`` or not
    positive (unknown). Raises :class:`PayloadError` for a fraction, a boolean or other text."""
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


def _from_epoch_ms(ms: float, path: str) -> datetime:
    """Exact UTC time of ``ms`` epoch milliseconds (unlike ``ms / 1000``). Raises :class:`PayloadError`
    when out of datetime's range."""
    try:
        if not math.isfinite(ms) or abs(ms) >= 10**_MAX_EPOCH_DIGITS:
            raise OverflowError
        if isinstance(ms, int) or ms == int(ms):
            return EPOCH + timedelta(milliseconds=int(ms))
        return EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise invalid(path, f"epoch milliseconds out of range: {str(ms)[:40]}") from None


def epoch_ms(obj: Mapping[str, Any], key: str, *, at: str = "") -> datetime | None:
    """Epoch **milliseconds** (APIXO ``createTime: 1767965610929``; also ``1767965610929.0`` or
    ``"1767965610929"``) as a UTC datetime (``2026-01-09T13:33:30.929Z``), or ``None`` when absent or
    ``null``. Raises :class:`PayloadError` for a non-number or a time out of range."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if len(str(abs(value))) > _MAX_EPOCH_DIGITS:
            raise invalid(field_path(at, key), f"epoch milliseconds out of range: {str(value)[:40]}")
        return _from_epoch_ms(value, field_path(at, key))
    number_ = number(obj, key, at=at)
    assert number_ is not None
    return _from_epoch_ms(number_, field_path(at, key))


def epoch_ms_or_iso(obj: Mapping[str, Any], key: str, *, at: str = "") -> datetime | None:
    """A time given as epoch **milliseconds** (LTX ``expirationDateString: "1748919477350"`` →
    ``2025-06-03T02:57:57.350Z``; also a JSON number) or as ISO-8601 text
    (``"2025-06-03T02:57:57.350Z"``), or ``None`` when absent, ``null`` or ``""``. Raises
    :class:`PayloadError` for anything else (``"soon"``, ``"-1"``, an object) or a time out of range."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    path = field_path(at, key)
    if isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdigit():
            if len(digits) > _MAX_EPOCH_DIGITS:
                raise invalid(path, f"epoch milliseconds out of range: {value[:40]}")
            return _from_epoch_ms(int(digits), path)
        try:
            return iso_time(obj, key, at=at)
        except PayloadError:
            raise invalid(
                path, f"expected epoch milliseconds or an ISO-8601 time, got {value[:40]!r}"
            ) from None
    if _numeric(value) is not None and not isinstance(value, str):
        result = epoch_ms(obj, key, at=at)
        if result is not None and result >= EPOCH:
            return result
    raise invalid(path, f"expected epoch milliseconds or an ISO-8601 time, got {_shown(value)}")


def cost(amount: float | None, unit: str, *, per: float = 1.0) -> Cost | None:
    """The vendor's reported cost as a :class:`Cost` in ``unit`` (``amount / per``: Artnex's
    ``credits_used: 100`` → ``Cost(100.0, "credits")``), or ``None`` when not reported.
    Read ``amount`` with :meth:`Notes.read` of :func:`number`, so a non-numeric cost is left out as an
    anomaly naming the field."""
    return None if amount is None else Cost(amount / per, unit)


def _shown(value: Any) -> str:
    """A value for an error message: its JSON kind, and the value itself when short
    (``number 2560.5``, ``string '41s'``, ``object``)."""
    kind = json_kind(value)
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return kind
    return f"{kind} {str(value)[:40] if not isinstance(value, str) else repr(value[:40])}"


@overload
def job_id(obj: Mapping[str, Any], key: str, *, at: str = "", required: Literal[True]) -> str: ...
@overload
def job_id(obj: Mapping[str, Any], key: str, *, at: str = "", required: bool = False) -> str | None: ...
def job_id(obj: Mapping[str, Any], key: str, *, at: str = "", required: bool = False) -> str | None:
    """A vendor job id: opaque (issue 20, "Vendor job ids are opaque"), any non-empty string up to
    :data:`MAX_JOB_ID_LENGTH` characters without control characters, or a JSON integer read as its
    decimal text (``12345678`` → ``"12345678"``). ``None`` when absent, ``null`` or ``""`` and not
    ``required``. Raises :class:`PayloadError` for another type, a longer text or a control character.
    Ids go into status URLs percent-encoded (:func:`receiver.vendors.base.path_segment`), never as is."""
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif value is not None and not isinstance(value, str):
        raise invalid(field_path(at, key), f"expected a string, got {json_kind(value)}")
    if value is None or value == "":
        if required:
            raise invalid(field_path(at, key), "missing" if value is None else "must not be empty")
        return None
    return opaque_id(value, field_path(at, key))


def opaque_id(value: str, path: str = "job id") -> str:
    """``value`` when it is a usable vendor job id (non-empty, at most :data:`MAX_JOB_ID_LENGTH`
    characters, no control character: C0, DEL or C1); else :class:`PayloadError` naming ``path``.
    Example: ``opaque_id("a/../b")`` → ``"a/../b"``; ``opaque_id("a\\nb")`` raises."""
    if not value:
        raise invalid(path, "must not be empty")
    if len(value) > MAX_JOB_ID_LENGTH:
        raise invalid(path, f"longer than {MAX_JOB_ID_LENGTH} characters ({len(value)})")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in value):
        raise invalid(path, f"contains a control character: {value[:60]!r}")
    return value


def web_url(value: Any) -> str | None:
    """``value`` when it is an absolute ``http://`` or ``https://`` URL with a host, at most
    :data:`MAX_URL_LENGTH` characters, without whitespace or control characters
    (``"https://cdn.example/a.png?sig=1"``); else ``None`` (``"javascript:alert(1)"``, ``"data:…"``,
    ``"/relative.png"``, ``"ftp://x/y"``, a number)."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL_LENGTH:
        return None
    if any(char.isspace() or ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in value):
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return value


class Notes:
    """The anomalies found while one vendor body is read: auxiliary fields whose value could not be
    used, left out instead of failing the message (issue 20). Adapters read every field that does not
    carry the outcome through :meth:`read`, and output URLs through :meth:`url`; the result goes into
    ``JobUpdate.anomalies``.

    Example: ``notes = Notes(); notes.read(integer, {"credits_used": "lots"}, "credits_used")`` →
    ``None``, and ``notes.found == [Anomaly("credits_used", '"lots"')]``.
    """

    def __init__(self) -> None:
        self.found: list[Anomaly] = []

    def add(self, path: str, value: Any) -> None:
        """Record that ``value`` at ``path`` was left out."""
        self.found.append(Anomaly.of(path, value))

    def read(
        self, reader: Callable[..., _T | None], obj: Mapping[str, Any], key: str, *, at: str = ""
    ) -> _T | None:
        """``reader(obj, key, at=at)``, or ``None`` with an anomaly at the field's path when the
        reader raises :class:`PayloadError` (the value deviates from its documented type or format)."""
        try:
            return reader(obj, key, at=at)
        except PayloadError:
            self.add(field_path(at, key), obj.get(key))
            return None

    def url(self, value: Any, path: str) -> str | None:
        """``value`` when it is an output URL the relay may store and send on (:func:`web_url`), else
        ``None`` with an anomaly at ``path`` (a ``javascript:`` or relative URL is never kept)."""
        url = web_url(value)
        if url is None:
            self.add(path, value)
        return url

    @property
    def anomalies(self) -> tuple[Anomaly, ...]:
        """What was found, in reading order."""
        return tuple(self.found)
