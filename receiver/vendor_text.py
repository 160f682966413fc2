"""The one door vendor text comes in by: every adapter parse runs through here, and what comes out is
clean at every depth before it is stored, logged or put into an event.

A vendor body is JSON, and JSON can say things no database column takes: a lone surrogate
(``"\\ud800"``, valid JSON but not encodable as UTF-8, so SQLite refuses the text and a JSON
answer cannot be written) and NUL (``"\\u0000"``, which Postgres refuses in ``text`` and ``jsonb``).
They can sit at any depth, including inside a field that itself holds JSON text (APIXO's
``resultJson``, which the adapter decodes a second time), and in the messages of the errors an
adapter raises (a vendor's error text). So instead of cleaning each body as it is decoded, the
relay cleans what the adapters *produce*: the :class:`JobUpdate` (states, ids, output URLs and MIME
types, error codes and messages, ``extra``), the :class:`SubmitResult`, and the message, code and
details of any :class:`RelayError` they raise. Each lone surrogate and each NUL becomes U+FFFD (the
Unicode replacement character); everything else, control characters included, is kept as sent.

The raw bytes are stored untouched (``inbound.body``), so nothing the vendor sent is lost.

Example::

    update = parse_callback(ADAPTERS["apixo"], body, headers)   # instead of adapter.parse_callback
    clean_text("a\\x00b\\ud800")                                 # -> "a\\ufffdb\\ufffd"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypeVar

from dispatch.errors import RelayError
from dispatch.model import Anomaly, JobError, JobUpdate, Output
from receiver.vendors.base import SubmitResult, VendorAdapter

_UNSAFE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"

_E = TypeVar("_E", bound=RelayError)


def clean_text(text: str) -> str:
    """``text`` with every NUL and every lone surrogate replaced by U+FFFD; the same object when there
    is none (the common case costs one regex search). Example: ``clean_text("x\\x00")`` → ``"x\\ufffd"``."""
    return _UNSAFE.sub(REPLACEMENT, text) if _UNSAFE.search(text) else text


def clean_value(value: Any) -> Any:
    """``value`` with :func:`clean_text` applied to every string at any depth, dictionary keys
    included (strings, lists, tuples, dicts; anything else as it is). Raises ``RecursionError`` only
    for a structure nested past Python's recursion limit, which no parsed vendor body is."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(clean_value(v) for v in value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    return value


def _optional(text: str | None) -> str | None:
    return None if text is None else clean_text(text)


def _output(output: Output) -> Output:
    url, mime = clean_text(output.url), _optional(output.mime_type)
    if url is output.url and mime is output.mime_type:
        return output
    return replace(output, url=url, mime_type=mime)


def clean_update(update: JobUpdate) -> JobUpdate:
    """``update`` with every text :func:`clean_text`-ed: ``raw_state``, ``vendor_job_id``, each
    output's ``url`` and ``mime_type``, the error's ``code`` and ``message``, ``extra`` at any depth,
    the cost's unit and each anomaly's ``path`` and ``seen`` (a deviating field's value, as sent).
    Example: an APIXO success whose ``resultJson`` holds
    ``{"resultUrls": ["https://x/\\ud800.png"]}`` gives the output URL ``"https://x/\\ufffd.png"``."""
    error = update.error
    if error is not None:
        error = JobError(clean_text(error.code), _optional(error.message))
    cost = update.cost
    if cost is not None:
        cost = replace(cost, unit=clean_text(cost.unit))
    return replace(
        update,
        raw_state=_optional(update.raw_state),
        vendor_job_id=_optional(update.vendor_job_id),
        outputs=tuple(_output(o) for o in update.outputs),
        error=error,
        extra=clean_value(update.extra) if update.extra else update.extra,
        cost=cost,
        anomalies=tuple(Anomaly(clean_text(a.path), clean_text(a.seen)) for a in update.anomalies),
    )


def clean_error(exc: _E) -> _E:
    """``exc`` with its ``message``, ``code`` and ``details`` cleaned in place (and returned), so
    that a vendor's text quoted in an error (an error body's ``message``) is as safe as a parsed one."""
    exc.message = clean_text(exc.message)
    exc.args = (exc.message,)
    if "code" in vars(exc):
        exc.code = clean_text(exc.code)  # type: ignore[misc]  # as RelayError.__init__ sets it
    if exc.details is not None:
        exc.details = clean_value(exc.details)
    return exc


def parse_callback(adapter: VendorAdapter, body: bytes, headers: Mapping[str, str]) -> JobUpdate:
    """``adapter.parse_callback(body, headers)``, cleaned (:func:`clean_update`). Raises what the
    adapter raises (:class:`PayloadError`...), with its text cleaned (:func:`clean_error`)."""
    try:
        return clean_update(adapter.parse_callback(body, headers))
    except RelayError as exc:
        clean_error(exc)
        raise


def parse_status(adapter: VendorAdapter, status_code: int, body: bytes) -> JobUpdate:
    """``adapter.parse_status(status_code, body)``, cleaned; raises the adapter's
    :class:`UpstreamError` or :class:`PayloadError` with its text cleaned."""
    try:
        return clean_update(adapter.parse_status(status_code, body))
    except RelayError as exc:
        clean_error(exc)
        raise


def parse_submit_response(
    adapter: VendorAdapter, status_code: int, body: bytes, headers: Mapping[str, str]
) -> SubmitResult:
    """``adapter.parse_submit_response(...)``, cleaned: the vendor job id and any update it carries
    (Artnex's synchronous result); raises the adapter's errors with their text cleaned."""
    try:
        result = adapter.parse_submit_response(status_code, body, headers)
    except RelayError as exc:
        clean_error(exc)
        raise
    update = None if result.update is None else clean_update(result.update)
    return replace(result, vendor_job_id=_optional(result.vendor_job_id), update=update)
