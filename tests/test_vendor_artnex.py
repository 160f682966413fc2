"""The Artnex adapter: request model, the synchronous submit whose response is the outcome, errors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import BaseModel, ValidationError

from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import Cost, JobState, JobUpdate, Output
from fixtures import payload, payload_names
from receiver.vendors import artnex
from receiver.vendors.base import SubmitResult
from tests.properties import JSON_VALUES, check_submit_response

ADAPTER = artnex.ADAPTER
NOW = datetime(2026, 11, 22, 10, 0, 32, tzinfo=UTC)
FIXED = artnex.ArtnexAdapter(clock=lambda: NOW)
IMAGE = "https://example.com/product-photo.jpg"
RESULT_URL = "https://cdn.artnex.ai/upscale/req_ups_abc123xyz/upscaled.jpg"
TEN_MB = 10 * 1024 * 1024


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def data_uri(size: int, mime: str = "png") -> str:
    return f"data:image/{mime};base64," + base64.b64encode(b"\x00" * size).decode()


# --- adapter attributes -------------------------------------------------------------------------


def test_adapter_attributes() -> None:
    """The adapter declares the protocol attributes the relay reads (synchronous, no reserved fields...)."""
    assert ADAPTER.name == "artnex"
    assert ADAPTER.params_model is artnex.ArtnexUpscaleRequest
    assert ADAPTER.reserved_fields == frozenset()
    assert ADAPTER.synchronous is True
    assert ADAPTER.idempotent_submit is False
    assert ADAPTER.credential_setting == "artnex_api_key"
    assert ADAPTER.base_url_setting == "artnex_base_url"


def test_auth_headers_use_bearer() -> None:
    """Artnex authenticates with ``Authorization: Bearer <key>`` (the prefix is required)."""
    assert ADAPTER.auth_headers("ak_live_1") == {"Authorization": "Bearer ak_live_1"}


def test_every_fixture_is_present() -> None:
    """The fixture directory holds exactly the Artnex payloads these tests exercise."""
    assert payload_names("artnex") == [
        "error_invalid_api_key",
        "error_invalid_scale",
        "error_rate_limit",
        "response_ok",
    ]


# --- request model ------------------------------------------------------------------------------


def validate(**fields: Any) -> BaseModel:
    return ADAPTER.params_model.model_validate({"image": IMAGE, **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"image": IMAGE, "scale": 2}),
        ({"scale": 4}, {"image": IMAGE, "scale": 4}),
        ({"scale": 2.5}, {"image": IMAGE, "scale": 2.5}),
        ({"scale": 3}, {"image": IMAGE, "scale": 3}),
        ({"scale": 8.5}, {"image": IMAGE, "scale": 8.5}),
        ({"scale": 1000}, {"image": IMAGE, "scale": 1000}),
        ({"scale": 1e-9}, {"image": IMAGE, "scale": 1e-9}),
        ({"image": "HTTPS://EXAMPLE.COM/a.png"}, {"image": "HTTPS://EXAMPLE.COM/a.png", "scale": 2}),
        ({"image": data_uri(3, "jpeg")}, {"image": data_uri(3, "jpeg"), "scale": 2}),
        ({"image": data_uri(3, "jpg")}, {"image": data_uri(3, "jpg"), "scale": 2}),
        ({"image": data_uri(3, "JPG")}, {"image": data_uri(3, "JPG"), "scale": 2}),
        ({"image": data_uri(3, "png")}, {"image": data_uri(3, "png"), "scale": 2}),
        ({"image": data_uri(3, "webp")}, {"image": data_uri(3, "webp"), "scale": 2}),
    ],
)
def test_request_model_accepts_documented_values(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    """An https URL or a JPEG (``image/jpeg`` or ``image/jpg``)/PNG/WebP data URI and any positive scale
    (no upper bound: seed:004 documents none) are accepted; scale defaults to 2."""
    request = ADAPTER.submit_request(validate(**fields), callback_url=None, job_id="job_1")
    assert request.json == expected


def test_request_model_accepts_a_data_uri_of_exactly_10_mb() -> None:
    """A data URI whose decoded image is exactly 10 MB (10,485,760 bytes) is accepted."""
    uri = data_uri(TEN_MB)
    assert validate(image=uri).model_dump()["image"] == uri


def test_request_model_refuses_a_data_uri_over_10_mb() -> None:
    """A data URI one byte over 10 MB decoded is refused, naming ``image`` and the size."""
    with pytest.raises(ValidationError) as caught:
        validate(image=data_uri(TEN_MB + 1))
    [error] = caught.value.errors()
    assert error["loc"] == ("image",)
    assert f"image is {TEN_MB + 1} bytes; Artnex accepts at most {TEN_MB} (10 MB)" in error["msg"]


@pytest.mark.parametrize(
    ("fields", "loc", "message"),
    [
        ({"image": "http://example.com/a.jpg"}, ("image",), "https:// URL"),
        ({"image": "ftp://example.com/a.jpg"}, ("image",), "https:// URL"),
        ({"image": "example.com/a.jpg"}, ("image",), "https:// URL"),
        ({"image": "https://"}, ("image",), "https:// URL"),
        ({"image": ""}, ("image",), "https:// URL"),
        ({"image": "https://[broken/a.jpg"}, ("image",), "https:// URL"),
        ({"image": "data:image/gif;base64,R0lGOD=="}, ("image",), "https:// URL"),
        ({"image": "data:image/jpgg;base64,AAAA"}, ("image",), "https:// URL"),
        ({"image": "data:image/png,rawbytes"}, ("image",), "https:// URL"),
        ({"image": "data:image/png;base64,not base64!"}, ("image",), "not valid base64"),
        ({"image": 5}, ("image",), "valid string"),
        ({"scale": 0}, ("scale",), "greater than 0"),
        ({"scale": -1}, ("scale",), "greater than 0"),
        ({"scale": -2}, ("scale",), "greater than 0"),
        ({"scale": -0.5}, ("scale",), "greater than 0"),
        ({"scale": "2"}, ("scale",), "valid number"),
        ({"scale": True}, ("scale",), "valid number"),
        ({"scale": None}, ("scale",), "valid number"),
        ({"scale": float("inf")}, ("scale",), "finite number"),
        ({"scale": float("nan")}, ("scale",), "finite number"),
        ({"callback_url": "https://relay.example.com"}, ("callback_url",), "Extra inputs"),
        ({"format": "png"}, ("format",), "Extra inputs"),
    ],
)
def test_request_model_refuses_bad_fields(fields: dict[str, Any], loc: tuple[str, ...], message: str) -> None:
    """A non-https or malformed image, a non-positive or non-numeric scale, or an unknown field is refused."""
    with pytest.raises(ValidationError) as caught:
        validate(**fields)
    errors = caught.value.errors()
    assert [err["loc"] for err in errors] == [loc]
    assert message in errors[0]["msg"]


def test_request_model_requires_image() -> None:
    """``image`` is required."""
    with pytest.raises(ValidationError) as caught:
        ADAPTER.params_model.model_validate({"scale": 2})
    assert [(err["loc"], err["type"]) for err in caught.value.errors()] == [(("image",), "missing")]


# --- requests -----------------------------------------------------------------------------------


def test_submit_request_posts_the_fields_without_callback() -> None:
    """The submit is ``POST /v1/upscale`` with image and scale, no callback fields, no extra headers."""
    request = ADAPTER.submit_request(validate(scale=4), callback_url=None, job_id="job_1")
    assert request.method == "POST"
    assert request.path == "/v1/upscale"
    assert request.json == {"image": IMAGE, "scale": 4}
    assert request.headers == {}
    assert request.query is None


def test_there_is_no_status_request() -> None:
    """Artnex has nothing to poll."""
    assert ADAPTER.status_request("req_ups_abc123xyz") is None


@pytest.mark.parametrize("raw", [payload("artnex", "response_ok"), b"", b"{}"])
def test_callbacks_and_status_answers_do_not_exist(raw: bytes) -> None:
    """Anything offered as a callback or a status answer is a PayloadError: Artnex does not call back."""
    with pytest.raises(PayloadError, match="artnex does not call back"):
        ADAPTER.parse_callback(raw, {})
    with pytest.raises(PayloadError, match="artnex does not call back"):
        ADAPTER.parse_status(200, raw)


# --- the synchronous response -------------------------------------------------------------------


def test_response_ok_is_the_succeeded_outcome() -> None:
    """A 200 ``success: true`` answer is a succeeded update: a JPEG output expiring 24 h after it."""
    result = FIXED.parse_submit_response(200, payload("artnex", "response_ok"), {})
    assert result == SubmitResult(
        "req_ups_abc123xyz",
        JobUpdate(
            state=JobState.SUCCEEDED,
            raw_state="success",
            vendor_job_id="req_ups_abc123xyz",
            progress=100,
            outputs=(Output(RESULT_URL, "image/jpeg", expires_at=NOW + timedelta(hours=24)),),
            completed_at=NOW,
            extra={"credits_used": 100},
            cost=Cost(100.0, "credits"),
        ),
    )


def test_default_clock_is_the_current_utc_time() -> None:
    """The module adapter stamps the response with the current UTC time and an expiry 24 h later."""
    before = datetime.now(UTC)
    result = ADAPTER.parse_submit_response(200, payload("artnex", "response_ok"), {})
    after = datetime.now(UTC)
    assert result.update is not None
    completed_at = result.update.completed_at
    assert completed_at is not None
    assert before <= completed_at <= after
    assert result.update.outputs[0].expires_at == completed_at + timedelta(hours=24)


@pytest.mark.parametrize(
    ("url", "mime"),
    [
        ("https://cdn.artnex.ai/u/r/upscaled.png", "image/png"),
        ("https://cdn.artnex.ai/u/r/upscaled.webp", "image/webp"),
        ("https://cdn.artnex.ai/u/r/upscaled.JPEG?sig=1", "image/jpeg"),
        ("https://cdn.artnex.ai/u/r/upscaled", None),
    ],
)
def test_output_mime_type_comes_from_the_url_extension(url: str, mime: str | None) -> None:
    """The output MIME type is read from the URL's extension; an unknown one stays ``None``."""
    result = FIXED.parse_submit_response(200, body({"success": True, "image_url": url}), {})
    assert result.update is not None
    assert result.update.outputs == (Output(url, mime, expires_at=NOW + timedelta(hours=24)),)


def test_response_without_request_id_has_no_vendor_job_id() -> None:
    """``request_id`` and ``credits_used`` are optional: without them the id is ``None``, ``extra`` empty."""
    result = FIXED.parse_submit_response(200, body({"success": True, "image_url": RESULT_URL}), {})
    assert result.vendor_job_id is None
    assert result.update is not None
    assert (result.update.vendor_job_id, result.update.extra) == (None, {})


SCALE_MESSAGE = "The scale value is outside the supported range."


@pytest.mark.parametrize(
    ("status", "name", "code", "message"),
    [
        (401, "error_invalid_api_key", "invalid_api_key", "The API key provided is not valid."),
        (400, "error_invalid_scale", "invalid_scale", f"params.scale: {SCALE_MESSAGE}"),
    ],
)
def test_error_fixtures_keep_the_vendor_code(status: int, name: str, code: str, message: str) -> None:
    """An error answer keeps Artnex's snake_case ``error`` as the code and its ``message``; not retryable."""
    with pytest.raises(UpstreamError) as caught:
        FIXED.parse_submit_response(status, payload("artnex", name), {})
    error = caught.value
    assert (error.code, error.message, error.http_status, error.retryable) == (code, message, status, False)


def test_invalid_scale_names_the_scale_field() -> None:
    """``invalid_scale`` keeps its code and names ``params.scale`` in the message and the details."""
    with pytest.raises(UpstreamError) as caught:
        FIXED.parse_submit_response(400, payload("artnex", "error_invalid_scale"), {})
    error = caught.value
    assert error.code == "invalid_scale"
    assert error.message == f"params.scale: {SCALE_MESSAGE}"
    assert error.details == [{"field": "params.scale", "message": SCALE_MESSAGE}]
    assert error.to_dict()["details"] == [{"field": "params.scale", "message": SCALE_MESSAGE}]


def test_invalid_scale_without_message_still_names_the_field() -> None:
    """An ``invalid_scale`` body without ``message`` names ``params.scale`` with the code as the text."""
    with pytest.raises(UpstreamError) as caught:
        FIXED.parse_submit_response(400, b'{"success": false, "error": "invalid_scale"}', {})
    error = caught.value
    assert (error.code, error.message) == ("invalid_scale", "params.scale: invalid_scale")
    assert error.details == [{"field": "params.scale", "message": "invalid_scale"}]


@pytest.mark.parametrize("name", ["error_invalid_api_key", "error_rate_limit"])
def test_other_errors_name_no_field(name: str) -> None:
    """Errors that are not about one request field carry no field details."""
    with pytest.raises(UpstreamError) as caught:
        FIXED.parse_submit_response(429 if name == "error_rate_limit" else 401, payload("artnex", name), {})
    assert caught.value.details is None
    assert "params." not in caught.value.message


def test_rate_limit_is_a_daily_quota_and_not_retryable() -> None:
    """A 429 is ``rate_limit_exceeded``, says the daily quota is exhausted and is not retryable."""
    with pytest.raises(UpstreamError) as caught:
        FIXED.parse_submit_response(429, payload("artnex", "error_rate_limit"), {"Retry-After": "3600"})
    error = caught.value
    assert error.code == "rate_limit_exceeded"
    assert error.message == "Artnex daily quota exhausted: You have exceeded your plan's daily request quota."
    assert (error.http_status, error.retryable, error.retry_after) == (429, False, 3600.0)


@pytest.mark.parametrize(
    ("status", "raw", "code", "message", "retryable"),
    [
        (
            402,
            b'{"success":false,"error":"insufficient_credits","message":"Not enough credits."}',
            "insufficient_credits",
            "Not enough credits.",
            False,
        ),
        (
            400,
            b'{"success":false,"error":"image_too_large","message":"Over 10 MB."}',
            "image_too_large",
            "Over 10 MB.",
            False,
        ),
        (422, b'{"success":false,"error":"Bad Thing","message":"odd"}', "vendor_rejected", "odd", False),
        (400, b'{"success":false,"error":"missing_image"}', "missing_image", "missing_image", False),
        (429, b"", "rate_limit_exceeded", "Artnex daily quota exhausted: rate limit exceeded", False),
        (500, b"<html>oops</html>", "vendor_unavailable", "<html>oops</html>", True),
        (503, b'["x"]', "vendor_unavailable", None, True),
    ],
)
def test_error_statuses_map_to_codes(
    status: int, raw: bytes, code: str, message: str | None, retryable: bool
) -> None:
    """Each error answer maps to the vendor's snake_case code, else the relay's code for the status."""
    with pytest.raises(UpstreamError) as caught:
        FIXED.parse_submit_response(status, raw, {})
    error = caught.value
    assert (error.code, error.http_status, error.retryable) == (code, status, retryable)
    assert error.message == (message or f"vendor answered HTTP {status}")


def test_http_200_with_success_false_is_an_upstream_error() -> None:
    """``success: false`` is a failure even under HTTP 200, with the body's code and message."""
    with pytest.raises(UpstreamError) as caught:
        FIXED.parse_submit_response(200, payload("artnex", "error_invalid_scale"), {})
    error = caught.value
    assert (error.code, error.message, error.http_status, error.retryable) == (
        "invalid_scale",
        f"params.scale: {SCALE_MESSAGE}",
        200,
        False,
    )
    assert error.details == [{"field": "params.scale", "message": SCALE_MESSAGE}]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body({"image_url": RESULT_URL}), "success: missing"),
        (body({"success": "true", "image_url": RESULT_URL}), "success: expected a boolean, got string"),
        (body({"success": 1, "image_url": RESULT_URL}), "success: expected a boolean, got number"),
    ],
)
def test_malformed_2xx_bodies_are_payload_errors(raw: bytes, message: str) -> None:
    """A 2xx body that is empty, not JSON, not an object or has no usable ``success``: PayloadError."""
    with pytest.raises(PayloadError) as caught:
        FIXED.parse_submit_response(200, raw, {})
    assert message in caught.value.message


# --- liberal reading (issue 20, finding 4) --------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "request_id", "cost", "anomalies"),
    [
        ({"request_id": "req_ups_abc123xyz", "credits_used": 100.0}, "req_ups_abc123xyz", 100.0, []),
        ({"request_id": "req.ups.abc123", "credits_used": 100}, "req.ups.abc123", 100.0, []),
        (
            {"request_id": "3f2b9c1e-8d4a-4e6f-9b1c-2a3d4e5f6a7b", "credits_used": "100"},
            "3f2b9c1e-8d4a-4e6f-9b1c-2a3d4e5f6a7b",
            100.0,
            [],
        ),
        ({"request_id": 42, "credits_used": 99.5}, "42", 99.5, []),
        ({"request_id": "a/../b", "credits_used": "lots"}, "a/../b", None, [("credits_used", '"lots"')]),
        (
            {"request_id": ["x"], "credits_used": True},
            None,
            None,
            [("request_id", '["x"]'), ("credits_used", "true")],
        ),
        ({"request_id": "r\nx"}, None, None, [("request_id", '"r\\nx"')]),
        ({}, None, None, []),
    ],
)
def test_a_success_with_an_image_url_succeeds_whatever_the_auxiliary_fields(
    fields: dict[str, Any], request_id: str | None, cost: float | None, anomalies: list[tuple[str, str]]
) -> None:
    """A 200 ``success: true`` with an ``image_url`` succeeds with that URL whatever ``credits_used`` or
    ``request_id`` look like: a float or numeric cost is read, an opaque id is kept, and what cannot be
    used is left out as an anomaly."""
    result = FIXED.parse_submit_response(200, body({"success": True, "image_url": RESULT_URL, **fields}), {})
    update = result.update
    assert update is not None and update.state is JobState.SUCCEEDED
    assert [o.url for o in update.outputs] == [RESULT_URL]
    assert result.vendor_job_id == update.vendor_job_id == request_id
    assert update.cost == (None if cost is None else Cost(cost, "credits"))
    assert [(a.path, a.seen) for a in update.anomalies] == anomalies


@pytest.mark.parametrize(
    ("image_url", "anomalies"),
    [
        (None, []),
        ("", []),
        (["a"], [("image_url", '["a"]')]),
        ("javascript:alert(1)", [("image_url", '"javascript:alert(1)"')]),
        ("data:image/png;base64,AAAA", [("image_url", '"data:image/png;base64,AAAA"')]),
        ("upscaled.jpg", [("image_url", '"upscaled.jpg"')]),
    ],
)
def test_a_success_without_a_usable_image_url_has_no_output(
    image_url: Any, anomalies: list[tuple[str, str]]
) -> None:
    """``success: true`` without an ``http(s)`` ``image_url`` is a success without output: nothing that
    is not an http(s) URL is ever kept as an output."""
    data: dict[str, Any] = {"success": True, "request_id": "req_1", "credits_used": 100}
    if image_url is not None:
        data["image_url"] = image_url
    update = FIXED.parse_submit_response(200, body(data), {}).update
    assert update is not None and update.state is JobState.SUCCEEDED
    assert update.outputs == () and update.awaiting_output
    assert [(a.path, a.seen) for a in update.anomalies] == anomalies


# --- robustness ---------------------------------------------------------------------------------

RESPONSES = st.dictionaries(
    st.sampled_from(["success", "image_url", "request_id", "credits_used", "error", "message"]),
    JSON_VALUES | st.sampled_from([True, False, RESULT_URL, "invalid_scale", "https://[x/a.png", 100]),
    max_size=6,
)


@settings(deadline=None, max_examples=500)
@given(st.integers(min_value=100, max_value=599), RESPONSES)
def test_response_shaped_json_raises_only_payload_or_upstream_errors(
    status: int, value: dict[str, Any]
) -> None:
    """Response-shaped objects under any status give the outcome or raise PayloadError/UpstreamError."""
    check_submit_response(ADAPTER, status, json.dumps(value).encode())


@settings(deadline=None, max_examples=200)
@given(st.binary())
def test_callback_and_status_parsers_raise_only_payload_errors(raw: bytes) -> None:
    """Whatever the bytes, the (non-existent) callback and status parsers raise PayloadError."""
    with pytest.raises(PayloadError):
        ADAPTER.parse_callback(raw, {})
    with pytest.raises(PayloadError):
        ADAPTER.parse_status(200, raw)
