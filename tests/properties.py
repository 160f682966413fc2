"""Shared pieces of the adapters' property tests (issue 3: "only validation errors come out, never a
crash"): one strategy for arbitrary JSON and the two checks every adapter's parsers must pass."""

from __future__ import annotations

from hypothesis import strategies as st

from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import JobState, JobUpdate
from receiver.vendors.base import SubmitResult, VendorAdapter

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
"""Any JSON value (NaN and infinities included, as Python's ``json`` writes them)."""

ERRORS_IN_2XX = frozenset({"apiframe", "apixo", "artnex"})
"""Vendors whose 2xx answer can still carry an error (APIXO's envelope ``code``, Artnex's
``success: false``, Apiframe's error body), so their parsers may raise UpstreamError for it."""


def check_parsers(adapter: VendorAdapter, raw: bytes) -> None:
    """``parse_callback`` and ``parse_status(200)`` each return a :class:`JobUpdate` or raise
    :class:`PayloadError` with a message; a status answer may also be an :class:`UpstreamError` for
    the vendors in :data:`ERRORS_IN_2XX`. Anything else propagates and fails the test."""
    try:
        assert isinstance(adapter.parse_callback(raw, {}), JobUpdate)
    except PayloadError as exc:
        assert exc.message
    try:
        assert isinstance(adapter.parse_status(200, raw), JobUpdate)
    except PayloadError as exc:
        assert exc.message
    except UpstreamError as exc:
        assert adapter.name in ERRORS_IN_2XX and exc.message, f"{adapter.name}: {exc.message}"


def check_submit_response(adapter: VendorAdapter, status: int, raw: bytes) -> None:
    """``parse_submit_response(status, raw)`` returns a :class:`SubmitResult` (for a synchronous
    vendor, one that succeeded) or raises :class:`PayloadError` or :class:`UpstreamError` with a
    message; a 2xx answer is an UpstreamError only for the vendors in :data:`ERRORS_IN_2XX`."""
    try:
        result = adapter.parse_submit_response(status, raw, {})
    except PayloadError as exc:
        assert exc.message
        return
    except UpstreamError as exc:
        assert exc.message
        assert not 200 <= status < 300 or adapter.name in ERRORS_IN_2XX, (
            f"{adapter.name} {status}: {exc.message}"
        )
        return
    assert isinstance(result, SubmitResult)
    if adapter.synchronous:
        assert result.update is not None and result.update.state is JobState.SUCCEEDED
