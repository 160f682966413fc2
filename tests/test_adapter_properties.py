"""Every vendor adapter fed arbitrary bytes and arbitrary JSON (hypothesis): only validation errors
come out, never a crash. Vendor-shaped inputs are fuzzed in each vendor's own test module."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from receiver.vendors import ADAPTERS
from receiver.vendors.base import VendorAdapter
from tests.properties import JSON_VALUES, check_parsers, check_submit_response

EVERY_ADAPTER = pytest.mark.parametrize("adapter", list(ADAPTERS.values()), ids=list(ADAPTERS))
STATUSES = st.integers(min_value=100, max_value=599)


@EVERY_ADAPTER
@settings(deadline=None, max_examples=300)
@given(raw=st.binary())
def test_arbitrary_bytes_raise_only_validation_errors(adapter: VendorAdapter, raw: bytes) -> None:
    """Whatever the bytes, the callback and status parsers return an update or raise PayloadError."""
    check_parsers(adapter, raw)


@EVERY_ADAPTER
@settings(deadline=None, max_examples=300)
@given(value=JSON_VALUES)
def test_arbitrary_json_raises_only_validation_errors(adapter: VendorAdapter, value: Any) -> None:
    """Whatever the JSON value, the callback and status parsers return an update or raise PayloadError."""
    check_parsers(adapter, json.dumps(value).encode())


@EVERY_ADAPTER
@settings(deadline=None, max_examples=300)
@given(status=STATUSES, raw=st.binary() | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_submit_answers_raise_only_validation_or_vendor_errors(
    adapter: VendorAdapter, status: int, raw: bytes
) -> None:
    """Whatever the status and body, a submit answer parses or raises PayloadError or UpstreamError."""
    check_submit_response(adapter, status, raw)
