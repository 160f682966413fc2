"""The APIXO Image Upscaler adapter: request model, submit/status requests, body parsing, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import BaseModel, ValidationError

from dispatch.errors import PayloadError, UpstreamError, ValidationFailed
from dispatch.model import JobError, JobState, JobUpdate, Output
from fixtures import payload, payload_names
from receiver.submit import validate_params
from receiver.vendors import apixo
from receiver.vendors.apixo import PRICE
from receiver.vendors.base import SubmitResult
from tests.properties import JSON_VALUES, check_parsers, check_submit_response

ADAPTER = apixo.ADAPTER
IMAGE = "https://example.com/input.jpg"
CALLBACK_URL = "https://relay.example.com/v1/callbacks/apixo/cbt_abc?x=1"
STATUS_CREATED = datetime(2026, 1, 9, 13, 33, 30, 929000, tzinfo=UTC)  # 1767965610929 ms
STATUS_DONE = datetime(2026, 1, 9, 13, 34, 12, 317000, tzinfo=UTC)  # 1767965652317 ms
STATUS_EXPIRES = datetime(2026, 1, 10, 13, 34, 12, 317000, tzinfo=UTC)
CALLBACK_CREATED = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)  # 1704067200000 ms


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def envelope(**data: Any) -> bytes:
    return body({"code": 200, "message": "success", "data": {"taskId": "task_1", **data}})


def success(result_json: Any, **data: Any) -> bytes:
    return envelope(state="success", resultJson=result_json, completeTime=1767965652317, **data)


# --- adapter attributes -------------------------------------------------------------------------


def test_adapter_attributes() -> None:
    """The adapter declares the protocol attributes the relay reads (name, model, reserved fields...)."""
    assert ADAPTER.name == "apixo"
    assert ADAPTER.params_model is apixo.ApixoUpscaleRequest
    assert ADAPTER.reserved_fields == frozenset({"request_type", "callback_url"})
    assert ADAPTER.synchronous is False
    assert ADAPTER.idempotent_submit is False
    assert ADAPTER.credential_setting == "apixo_api_key"
    assert ADAPTER.base_url_setting == "apixo_base_url"


def test_auth_headers_use_bearer() -> None:
    """APIXO authenticates with a Bearer token."""
    assert ADAPTER.auth_headers("ak_123") == {"Authorization": "Bearer ak_123"}


def test_every_fixture_is_present() -> None:
    """The fixture directory holds exactly the APIXO payloads these tests exercise."""
    assert payload_names("apixo") == [
        "callback_failed",
        "callback_success",
        "error_400",
        "status_failed",
        "status_processing",
        "status_success",
        "submit_ok",
    ]


# --- request model ------------------------------------------------------------------------------


def validate(**fields: Any) -> BaseModel:
    return ADAPTER.params_model.model_validate({"input": {"image_urls": [IMAGE], **fields}})


def sent_input(**fields: Any) -> Any:
    request = ADAPTER.submit_request(validate(**fields), callback_url=CALLBACK_URL, job_id="job_1")
    assert request.json is not None
    return request.json["input"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"resolution": "4k", "output_format": "jpg"}),
        ({"mode": "image-to-image"}, {"mode": "image-to-image", "resolution": "4k", "output_format": "jpg"}),
        ({"resolution": "2k"}, {"resolution": "2k", "output_format": "jpg"}),
        ({"resolution": "4k"}, {"resolution": "4k", "output_format": "jpg"}),
        ({"resolution": "8k"}, {"resolution": "8k", "output_format": "jpg"}),
        ({"resolution": "8K"}, {"resolution": "8k", "output_format": "jpg"}),
        ({"resolution": "2K"}, {"resolution": "2k", "output_format": "jpg"}),
        ({"output_format": "jpg"}, {"resolution": "4k", "output_format": "jpg"}),
        ({"output_format": "jpeg"}, {"resolution": "4k", "output_format": "jpg"}),
        ({"output_format": "JPEG"}, {"resolution": "4k", "output_format": "jpg"}),
        ({"output_format": "png"}, {"resolution": "4k", "output_format": "png"}),
        ({"output_format": "webp"}, {"resolution": "4k", "output_format": "webp"}),
    ],
)
def test_request_model_accepts_and_normalizes_documented_values(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Documented values are accepted; resolution is lower-cased, ``jpeg`` becomes ``jpg``, defaults sent."""
    assert sent_input(**fields) == {"image_urls": [IMAGE], **expected}


def test_request_model_accepts_json_text() -> None:
    """The model validates JSON text too, the way the HTTP layer may hand it over."""
    model = ADAPTER.params_model.model_validate_json(json.dumps({"input": {"image_urls": [IMAGE]}}))
    assert model.model_dump(exclude_none=True) == {
        "input": {"image_urls": [IMAGE], "resolution": "4k", "output_format": "jpg"}
    }


@pytest.mark.parametrize(
    ("data", "loc", "message"),
    [
        ({"input": {"image_urls": []}}, ("input", "image_urls"), "exactly 1 image URL, got 0"),
        ({"input": {"image_urls": [IMAGE, IMAGE]}}, ("input", "image_urls"), "exactly 1 image URL, got 2"),
        ({"input": {"image_urls": [""]}}, ("input", "image_urls", 0), "empty string"),
        ({"input": {"image_urls": ["  "]}}, ("input", "image_urls", 0), "empty string"),
        ({"input": {"image_urls": ["not a url"]}}, ("input", "image_urls", 0), "http(s) URL"),
        ({"input": {"image_urls": [7]}}, ("input", "image_urls", 0), "valid string"),
        ({"input": {"image_urls": IMAGE}}, ("input", "image_urls"), "valid list"),
        ({"input": {}}, ("input", "image_urls"), "required"),
        ({"input": {"image_urls": [IMAGE], "mode": "text-to-image"}}, ("input", "mode"), "image-to-image"),
        ({"input": {"image_urls": [IMAGE], "resolution": "1k"}}, ("input", "resolution"), "'2k', '4k', '8k'"),
        (
            {"input": {"image_urls": [IMAGE], "resolution": "16k"}},
            ("input", "resolution"),
            "'2k', '4k', '8k'",
        ),
        ({"input": {"image_urls": [IMAGE], "resolution": 4}}, ("input", "resolution"), "valid string"),
        ({"input": {"image_urls": [IMAGE], "output_format": "gif"}}, ("input", "output_format"), "'webp'"),
        (
            {"input": {"image_urls": [IMAGE], "output_format": None}},
            ("input", "output_format"),
            "valid string",
        ),
        ({"input": {"image_urls": [IMAGE], "prompt": "x"}}, ("input", "prompt"), "Extra inputs"),
        ({"input": {"image_urls": [IMAGE]}, "request_type": "async"}, ("request_type",), "Extra inputs"),
        ({"input": {"image_urls": [IMAGE]}, "callback_url": CALLBACK_URL}, ("callback_url",), "Extra inputs"),
        ({"input": [IMAGE]}, ("input",), "valid dictionary"),
    ],
)
def test_request_model_refuses_bad_fields(data: dict[str, Any], loc: tuple[Any, ...], message: str) -> None:
    """A wrong image count, unknown value, wrong type or relay-owned field is refused, naming the field."""
    with pytest.raises(ValidationError) as caught:
        ADAPTER.params_model.model_validate(data)
    errors = caught.value.errors()
    assert [err["loc"] for err in errors] == [loc]
    assert message in errors[0]["msg"]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/input.jpg",
        "https://example.com/input.jpg",
        "HTTPS://EXAMPLE.COM/input.jpg",
        "https://images.example.com:8443/a/b.png?sig=1&x=2",
        "https://[2001:db8::1]/input.webp",
    ],
)
def test_request_model_accepts_http_and_https_image_urls(url: str) -> None:
    """An ``http://`` or ``https://`` URL with a host is accepted and sent unchanged."""
    request = ADAPTER.submit_request(
        ADAPTER.params_model.model_validate({"input": {"image_urls": [url]}}), callback_url=None, job_id="j"
    )
    assert request.json is not None
    assert request.json["input"]["image_urls"] == [url]


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://x",
        "ftp://example.com/input.jpg",
        "file:///etc/passwd",
        "data:image/png;base64,AAAA",
        "example.com/input.jpg",
        "//example.com/input.jpg",
        "https://",
        "https:///input.jpg",
        "https://:443/input.jpg",
        "http://user@/input.jpg",
        "http:example.com",
        "https://[broken/input.jpg",
        " https://example.com/input.jpg",
        "https://example.com/in put.jpg",
        "https://example.com/input.jpg\n",
    ],
)
def test_request_model_refuses_image_urls_that_are_not_http_urls(url: str) -> None:
    """A string that is not an http(s) URL with a host is refused at ``input.image_urls.0``."""
    with pytest.raises(ValidationError) as caught:
        ADAPTER.params_model.model_validate({"input": {"image_urls": [url]}})
    [error] = caught.value.errors()
    assert error["loc"] == ("input", "image_urls", 0)
    assert "http(s) URL" in error["msg"]


def test_a_bad_image_url_is_a_422_naming_the_field() -> None:
    """The relay's params validation turns a bad URL into ``ValidationFailed`` naming the element."""
    with pytest.raises(ValidationFailed) as caught:
        validate_params(ADAPTER, {"input": {"image_urls": ["not a url"]}})
    error = caught.value
    assert error.status == 422
    assert error.message.startswith("params.input.image_urls.0: ")
    assert [detail["field"] for detail in error.details] == ["params.input.image_urls.0"]


def test_request_model_requires_the_input_wrapper() -> None:
    """Fields sent without the ``input`` object are refused: ``input`` is missing and the field is unknown."""
    with pytest.raises(ValidationError) as caught:
        ADAPTER.params_model.model_validate({"image_urls": [IMAGE]})
    assert [(err["loc"], err["type"]) for err in caught.value.errors()] == [
        (("input",), "missing"),
        (("image_urls",), "extra_forbidden"),
    ]


# --- requests -----------------------------------------------------------------------------------


def test_submit_request_injects_callback_fields() -> None:
    """The submit POSTs ``request_type: callback``, the relay's ``callback_url`` and the ``input``."""
    params = validate(mode="image-to-image", resolution="8K", output_format="webp")
    request = ADAPTER.submit_request(params, callback_url=CALLBACK_URL, job_id="job_1")
    assert request.method == "POST"
    assert request.path == "/api/v1/generateTask/image-upscaler"
    assert request.headers == {}
    assert request.query is None
    assert request.json == {
        "request_type": "callback",
        "callback_url": CALLBACK_URL,
        "input": {
            "mode": "image-to-image",
            "image_urls": [IMAGE],
            "resolution": "8k",
            "output_format": "webp",
        },
    }


def test_submit_request_without_callback_url_is_async() -> None:
    """With no callback URL the request asks for ``async`` (poll) delivery and carries no ``callback_url``."""
    request = ADAPTER.submit_request(validate(), callback_url=None, job_id="job_2")
    assert request.json == {
        "request_type": "async",
        "input": {"image_urls": [IMAGE], "resolution": "4k", "output_format": "jpg"},
    }


def test_status_request_puts_the_task_id_in_the_query() -> None:
    """The status request is ``GET /api/v1/statusTask/image-upscaler?taskId=<id>``."""
    request = ADAPTER.status_request("task_12345678")
    assert request is not None
    assert (request.method, request.path, request.json) == ("GET", "/api/v1/statusTask/image-upscaler", None)
    assert request.query == {"taskId": "task_12345678"}


# --- submit responses ---------------------------------------------------------------------------


def test_submit_ok_gives_the_task_id_without_update() -> None:
    """The accepted envelope gives ``data.taskId`` and no state."""
    result = ADAPTER.parse_submit_response(200, payload("apixo", "submit_ok"), {})
    assert result == SubmitResult("task_12345678", None)


def test_submit_error_400_combines_message_and_detail() -> None:
    """A 400 is ``vendor_rejected`` with the envelope message and ``data.error`` detail."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(400, payload("apixo", "error_400"), {})
    error = caught.value
    assert (error.code, error.http_status, error.retryable) == ("vendor_rejected", 400, False)
    assert error.message == "Invalid request: Missing required field: input.prompt"


@pytest.mark.parametrize(
    ("status", "raw", "headers", "code", "message", "retryable", "retry_after"),
    [
        (
            400,
            b'{"code":400,"message":"The parameter {{image_urls}} must contain exactly 1 image."}',
            {},
            "vendor_rejected",
            "The parameter {{image_urls}} must contain exactly 1 image.",
            False,
            None,
        ),
        (
            401,
            b'{"code":401,"message":"Invalid API key"}',
            {},
            "vendor_unauthorized",
            "Invalid API key",
            False,
            None,
        ),
        (
            402,
            b'{"code":402,"message":"Insufficient balance"}',
            {},
            "insufficient_credits",
            None,
            False,
            None,
        ),
        (403, b'{"code":403,"message":"No access"}', {}, "vendor_forbidden", "No access", False, None),
        (
            429,
            b'{"code":429,"message":"Too many"}',
            {"retry-after": "30"},
            "rate_limited",
            "Too many",
            True,
            30.0,
        ),
        (502, b"Bad Gateway", {}, "vendor_unavailable", "Bad Gateway", True, None),
        (504, b"", {}, "vendor_unavailable", "vendor answered HTTP 504", True, None),
    ],
)
def test_submit_http_errors_map_to_relay_codes(
    status: int,
    raw: bytes,
    headers: dict[str, str],
    code: str,
    message: str | None,
    retryable: bool,
    retry_after: float | None,
) -> None:
    """Each HTTP error status maps to its relay code, keeps the vendor message and honours ``Retry-After``."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(status, raw, headers)
    error = caught.value
    assert (error.code, error.http_status, error.retryable, error.retry_after) == (
        code,
        status,
        retryable,
        retry_after,
    )
    assert error.message == (message or "Insufficient balance")


@pytest.mark.parametrize(
    ("raw", "code", "status", "retryable"),
    [
        (b'{"code":402,"message":"Insufficient balance","data":null}', "insufficient_credits", 402, False),
        (b'{"code":429,"message":"Concurrency limit reached"}', "rate_limited", 429, True),
        (b'{"code":500,"message":"Internal error","data":{}}', "vendor_unavailable", 500, True),
    ],
)
def test_submit_http_200_with_error_envelope_is_an_upstream_error(
    raw: bytes, code: str, status: int, retryable: bool
) -> None:
    """An HTTP 200 whose envelope code is not 200 and has no ``taskId`` maps that code like a status."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(200, raw, {})
    error = caught.value
    assert (error.code, error.http_status, error.retryable) == (code, status, retryable)
    assert error.message == json.loads(raw)["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"code":200,"message":"success","data":{}}',
        b'{"code":200,"message":"success"}',
        b'{"code":"400","message":"bad"}',
        b'{"message":"success","data":{"taskId":[7]}}',
        b'{"code":true,"data":{"taskId":""}}',
    ],
)
def test_submit_2xx_without_task_id_is_a_payload_error(raw: bytes) -> None:
    """A 2xx answer with no usable ``data.taskId`` and no error envelope code is a PayloadError naming it."""
    with pytest.raises(PayloadError, match=r"^data\.taskId: "):
        ADAPTER.parse_submit_response(200, raw, {})


def test_submit_task_id_wins_over_an_odd_envelope_code() -> None:
    """When ``data.taskId`` is present the task exists, whatever the envelope code says."""
    raw = b'{"code":201,"message":"created","data":{"taskId":"task_9"}}'
    assert ADAPTER.parse_submit_response(200, raw, {}) == SubmitResult("task_9", None)


# --- status answers and callbacks ---------------------------------------------------------------


def test_status_processing() -> None:
    """``processing`` is running, with no progress and the creation time from epoch milliseconds."""
    assert ADAPTER.parse_status(200, payload("apixo", "status_processing")) == JobUpdate(
        state=JobState.RUNNING,
        raw_state="processing",
        vendor_job_id="task_12345678",
        created_at=STATUS_CREATED,
        cost=PRICE,
    )


def test_status_success() -> None:
    """``success`` gives the ``resultJson`` URLs as JPEG outputs expiring 24 h after ``completeTime``."""
    assert ADAPTER.parse_status(200, payload("apixo", "status_success")) == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="success",
        vendor_job_id="task_12345678",
        progress=100,
        outputs=(
            Output("https://file.apixo.ai/upscaled-image.jpg", "image/jpeg", expires_at=STATUS_EXPIRES),
        ),
        created_at=STATUS_CREATED,
        completed_at=STATUS_DONE,
        extra={"costTime": 41388},
        cost=PRICE,
        compute_ms=41388,
    )


def test_status_failed_keeps_the_fail_code_with_its_space() -> None:
    """``failed`` is failed with the opaque ``failCode`` (``"Unknown error"``, space kept) and ``failMsg``."""
    assert ADAPTER.parse_status(200, payload("apixo", "status_failed")) == JobUpdate(
        state=JobState.FAILED,
        raw_state="failed",
        vendor_job_id="task_12345678",
        error=JobError("Unknown error", "Unknown error."),
        created_at=STATUS_CREATED,
        completed_at=datetime(2026, 1, 9, 13, 33, 40, 132000, tzinfo=UTC),
        cost=PRICE,
    )


def test_callback_success() -> None:
    """A success callback gives its output, times and ``costTime``."""
    assert ADAPTER.parse_callback(payload("apixo", "callback_success"), {}) == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="success",
        vendor_job_id="task_abc123xyz",
        progress=100,
        outputs=(
            Output(
                "https://cdn.apixo.ai/output/abc.jpg",
                "image/jpeg",
                expires_at=datetime(2024, 1, 2, 0, 0, 12, 500000, tzinfo=UTC),
            ),
        ),
        created_at=CALLBACK_CREATED,
        completed_at=datetime(2024, 1, 1, 0, 0, 12, 500000, tzinfo=UTC),
        extra={"costTime": 12500},
        cost=PRICE,
        compute_ms=12500,
    )


def test_callback_failed() -> None:
    """A failed callback is failed with ``failCode`` as the error code and ``failMsg`` as the message."""
    assert ADAPTER.parse_callback(payload("apixo", "callback_failed"), {}) == JobUpdate(
        state=JobState.FAILED,
        raw_state="failed",
        vendor_job_id="task_abc123xyz",
        error=JobError("CONTENT_VIOLATION", "Content violates usage policy"),
        created_at=CALLBACK_CREATED,
        completed_at=datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC),
        cost=PRICE,
    )


def test_pending_is_queued() -> None:
    """``pending`` is queued."""
    update = ADAPTER.parse_callback(envelope(state="pending"), {})
    assert update == JobUpdate(state=JobState.QUEUED, raw_state="pending", vendor_job_id="task_1", cost=PRICE)


def test_unknown_state_keeps_raw_state_and_no_state() -> None:
    """A state word the adapter does not know gives state ``None`` and keeps the word."""
    update = ADAPTER.parse_callback(envelope(state="SUCCESS"), {})
    assert update == JobUpdate(state=None, raw_state="SUCCESS", vendor_job_id="task_1", cost=PRICE)


@pytest.mark.parametrize("fail_code", [None, ""])
def test_failed_without_fail_code_is_vendor_failed(fail_code: str | None) -> None:
    """A failed task without a ``failCode`` gets the relay code ``vendor_failed``."""
    update = ADAPTER.parse_callback(envelope(state="failed", failCode=fail_code, failMsg="boom"), {})
    assert update.error == JobError("vendor_failed", "boom")


@pytest.mark.parametrize("code", [500, 404, "error", None])
def test_envelope_code_is_ignored_for_the_outcome(code: Any) -> None:
    """The envelope ``code``/``message`` never decide the outcome; ``data.state`` does."""
    raw = body({"code": code, "message": "whatever", "data": {"taskId": "task_1", "state": "processing"}})
    assert ADAPTER.parse_callback(raw, {}).state is JobState.RUNNING
    assert ADAPTER.parse_status(200, raw).state is JobState.RUNNING


def test_several_result_urls_and_mime_types() -> None:
    """Every ``resultUrls`` entry is an output, its MIME type read from the URL extension."""
    urls = ["https://file.apixo.ai/a.png", "https://file.apixo.ai/b.webp?x=1", "https://file.apixo.ai/c"]
    update = ADAPTER.parse_callback(success(json.dumps({"resultUrls": urls})), {})
    assert [(o.url, o.mime_type) for o in update.outputs] == [
        (urls[0], "image/png"),
        (urls[1], "image/webp"),
        (urls[2], None),
    ]


def test_success_without_complete_time_has_no_expiry() -> None:
    """Without ``completeTime`` the output expiry is unknown (``None``), never guessed."""
    raw = envelope(state="success", resultJson='{"resultUrls":["https://file.apixo.ai/a.jpg"]}')
    update = ADAPTER.parse_callback(raw, {})
    assert update.completed_at is None
    assert update.outputs == (Output("https://file.apixo.ai/a.jpg", "image/jpeg", expires_at=None),)


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (404, "vendor_not_found", False),
        (401, "vendor_unauthorized", False),
        (500, "vendor_unavailable", True),
    ],
)
def test_status_http_errors_raise_upstream_errors(status: int, code: str, retryable: bool) -> None:
    """An error status on a status answer is an UpstreamError with the mapped code and the vendor message."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_status(status, b'{"code":404,"message":"Task not found"}')
    assert (caught.value.code, caught.value.message, caught.value.retryable) == (
        code,
        "Task not found",
        retryable,
    )


def test_status_http_200_with_error_envelope_and_no_data_is_an_upstream_error() -> None:
    """An HTTP 200 status answer whose envelope says 404 and carries no ``data`` maps the envelope code."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_status(200, b'{"code":404,"message":"Task not found","data":null}')
    assert (caught.value.code, caught.value.message, caught.value.http_status) == (
        "vendor_not_found",
        "Task not found",
        404,
    )


# --- malformed bodies ---------------------------------------------------------------------------

MALFORMED = [
    (body({"code": 200, "message": "success"}), "data: missing"),
    (body({"code": 200, "data": "task_1"}), "data: expected an object, got string"),
    (body({"code": 200, "data": None}), "data: missing"),
    (body({"data": {"state": "processing"}}), "data.taskId: missing"),
    (
        body({"data": {"taskId": ["task_1"], "state": "processing"}}),
        "data.taskId: expected a string, got array",
    ),
    (
        body({"data": {"taskId": "task\n1", "state": "processing"}}),
        "data.taskId: contains a control character",
    ),
    (body({"data": {"taskId": "t" * 513, "state": "processing"}}), "data.taskId: longer than 512 characters"),
    (body({"data": {"taskId": "task_1"}}), "data.state: missing"),
    (envelope(state=1), "data.state: expected a string, got number"),
    (envelope(state=""), "data.state: must not be empty"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_callbacks_are_payload_errors(raw: bytes, message: str) -> None:
    """Empty, non-UTF-8, non-JSON, non-object bodies and a missing or unusable ``data``, task id or state
    (what carries the outcome) raise PayloadError."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_callback(raw, {})
    assert message in caught.value.message


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_status_answers_are_payload_errors(raw: bytes, message: str) -> None:
    """The same malformed bodies as a 200 status answer raise the same PayloadError."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_status(200, raw)
    assert message in caught.value.message


def test_payload_error_details_name_the_field() -> None:
    """A field error carries ``{"field": path}`` in ``details`` for the inbound record."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_callback(envelope(state=["success"]), {})
    assert caught.value.details == {"field": "data.state"}


# --- liberal reading (issue 20) -------------------------------------------------------------------

URL_A, URL_B = "https://file.apixo.ai/a.jpg", "https://file.apixo.ai/b.png"

AUXILIARY_LEFT_OUT = [
    (envelope(state="processing", createTime="soon"), "data.createTime", '"soon"'),
    (envelope(state="processing", createTime=True), "data.createTime", "true"),
    (envelope(state="processing", createTime=10**20), "data.createTime", "100000000000000000000"),
    (envelope(state="failed", completeTime=-(10**20)), "data.completeTime", "-100000000000000000000"),
    (envelope(state="processing", costTime="41s"), "data.costTime", '"41s"'),
    (envelope(state="processing", costTime=[1]), "data.costTime", "[1]"),
    (envelope(state="failed", failCode={"c": 1}), "data.failCode", '{"c":1}'),
    (envelope(state="failed", failMsg=["x"]), "data.failMsg", '["x"]'),
]


@pytest.mark.parametrize(("raw", "path", "seen"), AUXILIARY_LEFT_OUT)
def test_an_unusable_auxiliary_field_is_left_out_as_an_anomaly(raw: bytes, path: str, seen: str) -> None:
    """A time, cost or failure text that cannot be used no longer fails the message: it is left out and
    recorded as an anomaly with its path and what was seen, and the state still counts."""
    for update in (ADAPTER.parse_callback(raw, {}), ADAPTER.parse_status(200, raw)):
        assert update.state is not None and update.vendor_job_id == "task_1"
        assert [(a.path, a.seen) for a in update.anomalies] == [(path, seen)]


@pytest.mark.parametrize(
    ("fields", "created", "cost_ms"),
    [
        ({"createTime": 1767965610929, "costTime": 41388}, STATUS_CREATED, 41388),
        ({"createTime": 1767965610929.0, "costTime": 41388.5}, STATUS_CREATED, 41388.5),
        ({"createTime": "1767965610929", "costTime": "41388"}, STATUS_CREATED, 41388),
    ],
)
def test_numbers_are_read_as_integers_floats_or_numeric_strings(
    fields: dict[str, Any], created: datetime, cost_ms: float
) -> None:
    """``createTime`` and ``costTime`` (seed 003 integers) are read whether integer, float or numeric
    string, without an anomaly; a fractional ``costTime`` keeps its fraction."""
    update = ADAPTER.parse_callback(success(json.dumps({"resultUrls": [URL_A]}), **fields), {})
    assert update.created_at == created and update.extra["costTime"] == cost_ms
    assert update.cost == PRICE and update.compute_ms == round(cost_ms) and update.anomalies == ()
    assert [o.url for o in update.outputs] == [URL_A]


@pytest.mark.parametrize(
    "result_json",
    [
        json.dumps({"resultUrls": [URL_A, URL_B]}),  # the page's JSON string, several URLs
        {"resultUrls": [URL_A, URL_B]},  # already an object
        json.dumps({"resultUrls": [URL_A, URL_B], "seed": 1}),  # a key beside resultUrls
        json.dumps([URL_A, URL_B]),  # the array alone
    ],
)
def test_result_json_as_a_string_or_an_object_keeps_every_url(result_json: Any) -> None:
    """``resultJson`` as a JSON string or an object gives one output per URL, in order."""
    for update in (
        ADAPTER.parse_callback(success(result_json), {}),
        ADAPTER.parse_status(200, success(result_json)),
    ):
        assert update.state is JobState.SUCCEEDED
        assert [(o.url, o.mime_type) for o in update.outputs] == [(URL_A, "image/jpeg"), (URL_B, "image/png")]
        assert update.anomalies == ()


@pytest.mark.parametrize(
    ("result_json", "anomalies"),
    [
        ("", []),
        (None, []),
        ("{}", [("data.resultJson.resultUrls", "null")]),
        ('{"resultUrls": []}', []),
        ("not json", [("data.resultJson", '"not json"')]),
        ("[" * 100_000, [("data.resultJson", '"' + "[" * 118 + "…")]),
        (
            '{"resultUrls": [7, ""]}',
            [("data.resultJson.resultUrls[0]", "7"), ("data.resultJson.resultUrls[1]", '""')],
        ),
        (
            '{"resultUrls": ["javascript:alert(1)", "/rel.jpg"]}',
            [
                ("data.resultJson.resultUrls[0]", '"javascript:alert(1)"'),
                ("data.resultJson.resultUrls[1]", '"/rel.jpg"'),
            ],
        ),
    ],
)
def test_a_success_without_a_usable_url_has_no_output(
    result_json: Any, anomalies: list[tuple[str, str]]
) -> None:
    """A success whose ``resultJson`` is ``""``, absent, unreadable or holds no ``http(s)`` URL is a
    success without output (``outputs == ()``), what could not be used listed as anomalies."""
    update = ADAPTER.parse_callback(success(result_json), {})
    assert update.state is JobState.SUCCEEDED and update.outputs == () and update.awaiting_output
    assert [(a.path, a.seen) for a in update.anomalies] == anomalies


def test_only_http_urls_are_kept_beside_bad_ones() -> None:
    """Of several result URLs, the ``http(s)`` ones are kept and the others left out as anomalies."""
    raw = success(json.dumps({"resultUrls": ["data:image/png;base64,AAAA", URL_A]}))
    update = ADAPTER.parse_callback(raw, {})
    assert [o.url for o in update.outputs] == [URL_A]
    assert [a.path for a in update.anomalies] == ["data.resultJson.resultUrls[0]"]


@pytest.mark.parametrize(
    "task_id",
    ["3f2b9c1e-8d4a-4e6f-9b1c-2a3d4e5f6a7b", "8123456789", "task.2026.01", "a/../b", "x?y=1", "tâche-画像"],
)
def test_task_ids_are_opaque_in_submit_answers_callbacks_and_status_urls(task_id: str) -> None:
    """Any task id shape is read from the submit answer and the callback, and the status request keeps it
    whole as the ``taskId`` query value (httpx encodes it)."""
    answer = body({"code": 200, "message": "success", "data": {"taskId": task_id}})
    assert ADAPTER.parse_submit_response(200, answer, {}).vendor_job_id == task_id
    callback = body({"code": 200, "data": {"taskId": task_id, "state": "processing"}})
    assert ADAPTER.parse_callback(callback, {}).vendor_job_id == task_id
    request = ADAPTER.status_request(task_id)
    assert request is not None
    assert (request.path, request.query) == ("/api/v1/statusTask/image-upscaler", {"taskId": task_id})


def test_a_numeric_task_id_is_read_as_its_digits() -> None:
    """A JSON integer task id is read as its decimal text."""
    answer = body({"code": 200, "message": "success", "data": {"taskId": 12345678}})
    assert ADAPTER.parse_submit_response(200, answer, {}).vendor_job_id == "12345678"
    callback = body({"data": {"taskId": 12345678, "state": "processing"}})
    assert ADAPTER.parse_callback(callback, {}).vendor_job_id == "12345678"


def test_a_numeric_fail_code_is_kept_as_text() -> None:
    """A ``failCode`` sent as a number still names the failure."""
    update = ADAPTER.parse_callback(envelope(state="failed", failCode=2043), {})
    assert update.error == JobError("2043", None) and update.anomalies == ()


# --- robustness ---------------------------------------------------------------------------------

RESULT_JSON = (
    st.builds(
        lambda urls, extra: json.dumps({"resultUrls": urls, **extra}),
        JSON_VALUES | st.lists(st.text(max_size=30), max_size=3),
        st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=2),
    )
    | JSON_VALUES.map(json.dumps)
    | st.text()
)
FIELD_VALUES = (
    JSON_VALUES
    | st.sampled_from(["pending", "processing", "success", "failed", "task_1", "Unknown error"])
    | st.integers(min_value=-(10**18), max_value=10**18)
    | RESULT_JSON
)
DATA = st.dictionaries(
    st.sampled_from(
        ["taskId", "state", "resultJson", "failCode", "failMsg", "createTime", "completeTime", "costTime"]
    ),
    FIELD_VALUES,
    max_size=8,
)
ENVELOPES = st.fixed_dictionaries(
    {},
    optional={
        "code": st.sampled_from([200, 400, 404, 500, "200", None]) | JSON_VALUES,
        "data": DATA | JSON_VALUES,
    },
)


@settings(deadline=None, max_examples=500)
@given(ENVELOPES)
def test_envelope_shaped_json_raises_only_payload_errors(value: dict[str, Any]) -> None:
    """Envelopes with arbitrary ``data`` fields parse or raise PayloadError (or a status UpstreamError)."""
    check_parsers(ADAPTER, json.dumps(value).encode())


@settings(deadline=None, max_examples=300)
@given(st.integers(min_value=100, max_value=599), ENVELOPES.map(lambda v: json.dumps(v).encode()))
def test_envelope_shaped_submit_answers_raise_only_payload_or_upstream_errors(
    status: int, raw: bytes
) -> None:
    """Envelope-shaped submit answers under any status parse or raise PayloadError or UpstreamError."""
    check_submit_response(ADAPTER, status, raw)
