"""The Apiframe v2 adapter: request model, submit/status requests, body parsing, signatures, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import BaseModel, ValidationError

from dispatch.errors import PayloadError, SignatureInvalid, UpstreamError
from dispatch.model import Cost, JobError, JobState, JobUpdate, Output
from fixtures import payload, payload_names
from receiver.vendors import apiframe
from receiver.vendors.base import SubmitResult
from tests.properties import JSON_VALUES, check_parsers, check_submit_response

ADAPTER = apiframe.ADAPTER
JOB = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
IMAGE = "https://example.com/photo.jpg"
CALLBACK_URL = "https://relay.example.com/v1/callbacks/apiframe/cbt_abc"
CREATED = datetime(2026, 3, 15, 10, 0, 0, tzinfo=UTC)
COMPLETED = datetime(2026, 3, 15, 10, 0, 32, tzinfo=UTC)
CDN2_URL = f"https://cdn2.apiframe.ai/images/{JOB}-1.png"

# The SDK's test key and body; the digest is the one VENDORS.md §3 pins (Node crypto and Python hmac agree).
VECTOR_KEY = "afk_0000000000000000000000000000000000000000"
VECTOR_BODY = b'{"jobId":"abc","status":"COMPLETED"}'
VECTOR_SIGNATURE = "sha256=58e6d7af820911d918b1b43ade255ec260002ca8b24ba46dd057a99d192c89f4"


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def callback(**fields: Any) -> bytes:
    return body({"event": "completed", "jobId": JOB, "status": "COMPLETED", "result": CDN2_URL, **fields})


# --- adapter attributes -------------------------------------------------------------------------


def test_adapter_attributes() -> None:
    """The adapter declares the protocol attributes the relay reads (name, model, reserved fields...)."""
    assert ADAPTER.name == "apiframe"
    assert ADAPTER.params_model is apiframe.ApiframeUpscaleRequest
    assert ADAPTER.reserved_fields == frozenset({"webhookUrl", "webhookEvents"})
    assert ADAPTER.synchronous is False
    assert ADAPTER.idempotent_submit is True
    assert ADAPTER.credential_setting == "apiframe_api_key"
    assert ADAPTER.base_url_setting == "apiframe_base_url"


def test_auth_headers_use_x_api_key() -> None:
    """Apiframe authenticates with ``X-API-Key``, not a Bearer token."""
    assert ADAPTER.auth_headers("afk_abc") == {"X-API-Key": "afk_abc"}


def test_every_fixture_is_present() -> None:
    """The fixture directory holds exactly the Apiframe payloads these tests exercise."""
    assert payload_names("apiframe") == [
        "callback_completed_images",
        "callback_completed_string",
        "callback_failed",
        "callback_progress",
        "error_400",
        "error_402",
        "status_cancelled",
        "status_completed",
        "status_failed",
        "status_processing",
        "status_queued",
        "submit_accepted",
    ]


# --- request model ------------------------------------------------------------------------------


def topaz(**fields: Any) -> dict[str, Any]:
    return {"model": "topaz-image-upscale", "topazUpscaleParams": {"image": IMAGE, **fields}}


def clarity(**fields: Any) -> dict[str, Any]:
    return {"model": "clarity-upscale", "clarityUpscaleParams": {"image": IMAGE, **fields}}


def validate(data: dict[str, Any]) -> BaseModel:
    return ADAPTER.params_model.model_validate(data)


ACCEPTED = [
    topaz(),
    topaz(upscale_factor=1),
    topaz(upscale_factor=2),
    topaz(upscale_factor=4),
    topaz(upscale_factor=6),
    topaz(upscale_factor=4.0),
    *(
        topaz(model_type=t)
        for t in ("standard-v2", "low-res-v2", "cgi", "high-fidelity-v2", "text-refine", "redefine")
    ),
    topaz(output_format="jpg"),
    topaz(output_format="png"),
    topaz(face_enhance=True),
    topaz(face_enhance=False),
    topaz(face_enhance_creativity=0),
    topaz(face_enhance_creativity=1),
    topaz(face_enhance_creativity=0.5),
    topaz(face_enhance_strength=0),
    topaz(face_enhance_strength=1),
    topaz(seed=0),
    topaz(seed=-7),
    topaz(seed=2**40),
    topaz(image="http://example.com/a.png"),
    clarity(),
    clarity(prompt=""),
    clarity(prompt="x" * 2000),
    clarity(negative_prompt="x" * 2000),
    clarity(scale_factor=1),
    clarity(scale_factor=2),
    clarity(scale_factor=4),
    clarity(scale_factor=8),
    clarity(creativity=0),
    clarity(creativity=1),
    clarity(resemblance=0),
    clarity(resemblance=3),
    clarity(dynamic=1),
    clarity(dynamic=50),
    clarity(num_inference_steps=1),
    clarity(num_inference_steps=100),
    clarity(sharpen=0),
    clarity(sharpen=10),
    clarity(output_format="png"),
    clarity(output_format="jpg"),
    clarity(output_format="webp"),
    clarity(seed=123),
]


@pytest.mark.parametrize("data", ACCEPTED)
def test_request_model_accepts_documented_values(data: dict[str, Any]) -> None:
    """Every documented value, at each bound, is accepted and sent as given (numbers as numbers)."""
    model = validate(data)
    assert model.model_dump(exclude_none=True) == data


def test_request_model_accepts_json_text() -> None:
    """The model validates JSON text too, the way the HTTP layer may hand it over."""
    model = ADAPTER.params_model.model_validate_json(
        json.dumps(clarity(creativity=0.35, num_inference_steps=18))
    )
    assert model.model_dump(exclude_none=True) == clarity(creativity=0.35, num_inference_steps=18)


REFUSED = [
    (topaz(upscale_factor=0), ("topazUpscaleParams", "upscale_factor")),
    (topaz(upscale_factor=3), ("topazUpscaleParams", "upscale_factor")),
    (topaz(upscale_factor=8), ("topazUpscaleParams", "upscale_factor")),
    (topaz(upscale_factor="2"), ("topazUpscaleParams", "upscale_factor")),
    (topaz(upscale_factor=True), ("topazUpscaleParams", "upscale_factor")),
    (topaz(model_type="standard"), ("topazUpscaleParams", "model_type")),
    (topaz(output_format="webp"), ("topazUpscaleParams", "output_format")),
    (topaz(output_format="jpeg"), ("topazUpscaleParams", "output_format")),
    (topaz(face_enhance=1), ("topazUpscaleParams", "face_enhance")),
    (topaz(face_enhance="true"), ("topazUpscaleParams", "face_enhance")),
    (topaz(face_enhance_creativity=-0.01), ("topazUpscaleParams", "face_enhance_creativity")),
    (topaz(face_enhance_creativity=1.01), ("topazUpscaleParams", "face_enhance_creativity")),
    (topaz(face_enhance_creativity="0.5"), ("topazUpscaleParams", "face_enhance_creativity")),
    (topaz(face_enhance_strength=-0.01), ("topazUpscaleParams", "face_enhance_strength")),
    (topaz(face_enhance_strength=1.01), ("topazUpscaleParams", "face_enhance_strength")),
    (topaz(face_enhance_strength=float("nan")), ("topazUpscaleParams", "face_enhance_strength")),
    (topaz(seed=1.5), ("topazUpscaleParams", "seed")),
    (topaz(seed="1"), ("topazUpscaleParams", "seed")),
    (topaz(seed=True), ("topazUpscaleParams", "seed")),
    (topaz(image=""), ("topazUpscaleParams", "image")),
    (topaz(image="ftp://example.com/a.png"), ("topazUpscaleParams", "image")),
    (topaz(image="example.com/a.png"), ("topazUpscaleParams", "image")),
    (topaz(image=7), ("topazUpscaleParams", "image")),
    (topaz(prompt="clarity only"), ("topazUpscaleParams", "prompt")),
    (clarity(prompt="x" * 2001), ("clarityUpscaleParams", "prompt")),
    (clarity(prompt=5), ("clarityUpscaleParams", "prompt")),
    (clarity(negative_prompt="x" * 2001), ("clarityUpscaleParams", "negative_prompt")),
    (clarity(scale_factor=0), ("clarityUpscaleParams", "scale_factor")),
    (clarity(scale_factor=3), ("clarityUpscaleParams", "scale_factor")),
    (clarity(scale_factor=6), ("clarityUpscaleParams", "scale_factor")),
    (clarity(scale_factor=16), ("clarityUpscaleParams", "scale_factor")),
    (clarity(scale_factor="2"), ("clarityUpscaleParams", "scale_factor")),
    (clarity(creativity=-0.01), ("clarityUpscaleParams", "creativity")),
    (clarity(creativity=1.01), ("clarityUpscaleParams", "creativity")),
    (clarity(resemblance=-0.01), ("clarityUpscaleParams", "resemblance")),
    (clarity(resemblance=3.01), ("clarityUpscaleParams", "resemblance")),
    (clarity(dynamic=0.99), ("clarityUpscaleParams", "dynamic")),
    (clarity(dynamic=50.01), ("clarityUpscaleParams", "dynamic")),
    (clarity(num_inference_steps=0), ("clarityUpscaleParams", "num_inference_steps")),
    (clarity(num_inference_steps=101), ("clarityUpscaleParams", "num_inference_steps")),
    (clarity(num_inference_steps=50.0), ("clarityUpscaleParams", "num_inference_steps")),
    (clarity(sharpen=-0.01), ("clarityUpscaleParams", "sharpen")),
    (clarity(sharpen=10.01), ("clarityUpscaleParams", "sharpen")),
    (clarity(output_format="gif"), ("clarityUpscaleParams", "output_format")),
    (clarity(seed=0.5), ("clarityUpscaleParams", "seed")),
    (clarity(upscale_factor=2), ("clarityUpscaleParams", "upscale_factor")),
    ({**topaz(), "webhookUrl": "https://evil.example.com"}, ("webhookUrl",)),
    ({**topaz(), "webhookEvents": ["completed"]}, ("webhookEvents",)),
    ({**topaz(), "reference": "mine"}, ("reference",)),
    ({**topaz(), "model": "midjourney"}, ("model",)),
    ({"topazUpscaleParams": {"image": IMAGE}}, ("model",)),
    ({"model": "topaz-image-upscale", "topazUpscaleParams": {}}, ("topazUpscaleParams", "image")),
    ({"model": "topaz-image-upscale", "topazUpscaleParams": IMAGE}, ("topazUpscaleParams",)),
]


@pytest.mark.parametrize(("data", "loc"), REFUSED)
def test_request_model_refuses_bad_fields(data: dict[str, Any], loc: tuple[str, ...]) -> None:
    """A value past a bound, a wrong type, an unknown or relay-owned field is refused, naming the field."""
    with pytest.raises(ValidationError) as caught:
        validate(data)
    assert [err["loc"] for err in caught.value.errors()] == [loc]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"model": "topaz-image-upscale", "clarityUpscaleParams": {"image": IMAGE}},
            "clarityUpscaleParams: not allowed with model 'topaz-image-upscale'",
        ),
        (
            {"model": "clarity-upscale", "topazUpscaleParams": {"image": IMAGE}},
            "topazUpscaleParams: not allowed with model 'clarity-upscale'",
        ),
        (
            {**topaz(), "clarityUpscaleParams": {"image": IMAGE}},
            "clarityUpscaleParams: not allowed with model 'topaz-image-upscale'",
        ),
        ({"model": "clarity-upscale"}, "clarityUpscaleParams: required when model is 'clarity-upscale'"),
        (
            {"model": "topaz-image-upscale", "topazUpscaleParams": None},
            "topazUpscaleParams: required when model is 'topaz-image-upscale'",
        ),
    ],
)
def test_request_model_refuses_mismatched_model_and_params(data: dict[str, Any], message: str) -> None:
    """The params object must be exactly the one matching ``model``; the error names the offending field."""
    with pytest.raises(ValidationError) as caught:
        validate(data)
    assert len(caught.value.errors()) == 1
    assert message in caught.value.errors()[0]["msg"]


# --- requests -----------------------------------------------------------------------------------


def test_submit_request_injects_webhook_fields_and_idempotency_key() -> None:
    """The submit POSTs the set fields, ``webhookUrl``/``webhookEvents`` and ``Idempotency-Key: job id``."""
    params = validate(topaz(upscale_factor=2, output_format="png", face_enhance=False))
    request = ADAPTER.submit_request(params, callback_url=CALLBACK_URL, job_id="job_01")
    assert request.method == "POST"
    assert request.path == "/v2/images/upscale"
    assert request.headers == {"Idempotency-Key": "job_01"}
    assert request.query is None
    assert request.json == {
        "model": "topaz-image-upscale",
        "topazUpscaleParams": {
            "image": IMAGE,
            "upscale_factor": 2,
            "output_format": "png",
            "face_enhance": False,
        },
        "webhookUrl": CALLBACK_URL,
        "webhookEvents": ["progress", "completed", "failed"],
    }


def test_submit_request_sends_only_fields_the_client_set() -> None:
    """Unset and null optional fields are left out, and so is the other model's params object."""
    params = validate(clarity(prompt=None, seed=None, sharpen=2.5))
    request = ADAPTER.submit_request(params, callback_url=CALLBACK_URL, job_id="job_02")
    assert request.json is not None
    assert request.json["clarityUpscaleParams"] == {"image": IMAGE, "sharpen": 2.5}
    assert "topazUpscaleParams" not in request.json


def test_submit_request_without_callback_url_has_no_webhook_fields() -> None:
    """With no callback URL nothing webhook-related is sent, but the idempotency key still is."""
    request = ADAPTER.submit_request(validate(topaz()), callback_url=None, job_id="job_03")
    assert request.json == topaz()
    assert request.headers == {"Idempotency-Key": "job_03"}


def test_status_request_gets_the_job() -> None:
    """The status request is ``GET /v2/jobs/{id}`` with no body or query."""
    request = ADAPTER.status_request(JOB)
    assert request is not None
    assert (request.method, request.path, request.json, request.query) == (
        "GET",
        f"/v2/jobs/{JOB}",
        None,
        None,
    )


# --- submit responses ---------------------------------------------------------------------------


def test_submit_accepted_gives_job_id_and_queued_update() -> None:
    """The 202 ``{jobId, status: QUEUED}`` answer gives the vendor job id and a queued update."""
    result = ADAPTER.parse_submit_response(202, payload("apiframe", "submit_accepted"), {})
    assert result == SubmitResult(
        JOB, JobUpdate(state=JobState.QUEUED, raw_state="QUEUED", vendor_job_id=JOB)
    )


def test_submit_replay_reporting_processing_gives_running_update() -> None:
    """A replayed idempotency key answering with a later ``PROCESSING`` status gives a running update."""
    result = ADAPTER.parse_submit_response(200, body({"jobId": JOB, "status": "PROCESSING"}), {})
    assert result == SubmitResult(
        JOB, JobUpdate(state=JobState.RUNNING, raw_state="PROCESSING", vendor_job_id=JOB)
    )


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "CANCELLED", "SOMETHING_NEW", None])
def test_submit_replay_reporting_a_terminal_or_unknown_status_has_no_update(status: str | None) -> None:
    """A replay with a terminal (result-less) or unknown status gives only the job id: polling decides."""
    data = {"jobId": JOB} if status is None else {"jobId": JOB, "status": status}
    assert ADAPTER.parse_submit_response(202, body(data), {}) == SubmitResult(JOB, None)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (body({"status": "QUEUED"}), "jobId"),
        (body({"jobId": [5], "status": "QUEUED"}), "jobId"),
        (body({"jobId": "", "status": "QUEUED"}), "jobId"),
    ],
)
def test_submit_response_without_job_id_is_a_payload_error(raw: bytes, field: str) -> None:
    """A 2xx answer without a usable ``jobId`` or with a non-string status is a PayloadError naming it."""
    with pytest.raises(PayloadError, match=f"^{field}: "):
        ADAPTER.parse_submit_response(202, raw, {})


def test_submit_error_400_keeps_the_validation_details() -> None:
    """A 400 is ``vendor_rejected`` with the vendor's message and its per-field details."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(400, payload("apiframe", "error_400"), {})
    error = caught.value
    assert (error.code, error.http_status, error.retryable) == ("vendor_rejected", 400, False)
    assert error.message == (
        "Validation error (topazUpscaleParams.upscale_factor: "
        "Invalid enum value. Expected 1 | 2 | 4 | 6, received 3)"
    )
    assert error.details == {
        "topazUpscaleParams.upscale_factor": ["Invalid enum value. Expected 1 | 2 | 4 | 6, received 3"]
    }


def test_submit_error_402_is_insufficient_credits() -> None:
    """A 402 is ``insufficient_credits`` with the vendor's message, not retryable."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(402, payload("apiframe", "error_402"), {})
    error = caught.value
    assert (error.code, error.message, error.http_status, error.retryable) == (
        "insufficient_credits",
        "Insufficient credits",
        402,
        False,
    )


@pytest.mark.parametrize(
    ("status", "raw", "headers", "code", "message", "retryable", "retry_after"),
    [
        (401, b'{"error":"Invalid API key"}', {}, "vendor_unauthorized", "Invalid API key", False, None),
        (403, b'{"error":"API key is inactive"}', {}, "vendor_forbidden", "API key is inactive", False, None),
        (
            429,
            b'{"error":"Too many requests"}',
            {"Retry-After": "7"},
            "rate_limited",
            "Too many requests",
            True,
            7.0,
        ),
        (503, b"<html>down</html>", {}, "vendor_unavailable", "<html>down</html>", True, None),
        (503, b"", {}, "vendor_unavailable", "vendor answered HTTP 503", True, None),
    ],
)
def test_submit_errors_map_to_relay_codes(
    status: int,
    raw: bytes,
    headers: dict[str, str],
    code: str,
    message: str,
    retryable: bool,
    retry_after: float | None,
) -> None:
    """Each error status maps to its relay code, keeps the vendor's message and honours ``Retry-After``."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(status, raw, headers)
    error = caught.value
    assert (error.code, error.message, error.http_status) == (code, message, status)
    assert (error.retryable, error.retry_after) == (retryable, retry_after)


# --- callbacks ----------------------------------------------------------------------------------


def test_callback_progress() -> None:
    """A ``progress`` webhook is a running update with its percentage."""
    assert ADAPTER.parse_callback(payload("apiframe", "callback_progress"), {}) == JobUpdate(
        state=JobState.RUNNING,
        raw_state="PROCESSING",
        vendor_job_id=JOB,
        progress=45,
        extra={"event": "progress", "model": "topaz-image-upscale"},
    )


def test_callback_completed_with_a_url_string() -> None:
    """A ``completed`` webhook whose ``result`` is a URL string gives one PNG output with no stated expiry."""
    assert ADAPTER.parse_callback(payload("apiframe", "callback_completed_string"), {}) == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="COMPLETED",
        vendor_job_id=JOB,
        progress=100,
        outputs=(Output("https://cdn.apiframe.ai/results/a1b2c3d4.png", "image/png", expires_at=None),),
        completed_at=COMPLETED,
        extra={"event": "completed", "model": "topaz-image-upscale", "creditCost": 10},
        cost=Cost(10.0, "credits"),
    )


def test_callback_completed_with_an_images_array() -> None:
    """A ``completed`` webhook whose ``result`` is ``{"images": [...]}`` gives the same kind of output."""
    assert ADAPTER.parse_callback(payload("apiframe", "callback_completed_images"), {}) == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="COMPLETED",
        vendor_job_id=JOB,
        progress=100,
        outputs=(Output(CDN2_URL, "image/png", expires_at=None),),
        completed_at=COMPLETED,
        extra={"event": "completed", "model": "topaz-image-upscale", "creditCost": 10},
        cost=Cost(10.0, "credits"),
    )


def test_callback_failed() -> None:
    """A ``failed`` webhook is a failed update with code ``vendor_failed`` and the vendor's message."""
    assert ADAPTER.parse_callback(payload("apiframe", "callback_failed"), {}) == JobUpdate(
        state=JobState.FAILED,
        raw_state="FAILED",
        vendor_job_id=JOB,
        error=JobError("vendor_failed", "Provider returned an error: content policy violation"),
        extra={"event": "failed", "model": "topaz-image-upscale"},
    )


@pytest.mark.parametrize(
    ("url", "mime"),
    [
        ("https://cdn.apiframe.ai/r/a.png", "image/png"),
        ("https://cdn.apiframe.ai/r/a.PNG", "image/png"),
        ("https://cdn.apiframe.ai/r/a.jpg", "image/jpeg"),
        ("https://cdn.apiframe.ai/r/a.jpeg", "image/jpeg"),
        ("https://cdn.apiframe.ai/r/a.webp", "image/webp"),
        ("https://cdn.apiframe.ai/r/a.webp?sig=abc.png", "image/webp"),
        ("https://cdn.apiframe.ai/r/a.gif", None),
        ("https://cdn.apiframe.ai/r/a", None),
    ],
)
def test_output_mime_type_comes_from_the_url_extension(url: str, mime: str | None) -> None:
    """The MIME type is read from the URL path's extension (query ignored); anything else is unknown."""
    update = ADAPTER.parse_callback(callback(result=url), {})
    assert update.outputs == (Output(url, mime),)


def test_completed_with_several_images_and_a_grid_url() -> None:
    """Every ``images`` entry is an output; a Midjourney ``gridUrl`` is kept in ``extra``, not output."""
    result = {
        "images": ["https://cdn2.apiframe.ai/a-1.png", "https://cdn2.apiframe.ai/a-2.jpg"],
        "gridUrl": "g.png",
    }
    update = ADAPTER.parse_callback(callback(result=result, completedAt="2026-03-15T10:00:32Z"), {})
    assert update.outputs == (
        Output("https://cdn2.apiframe.ai/a-1.png", "image/png", expires_at=None),
        Output("https://cdn2.apiframe.ai/a-2.jpg", "image/jpeg", expires_at=None),
    )
    assert update.extra["gridUrl"] == "g.png"


def test_completed_without_completed_at_has_no_expiry_and_progress_100() -> None:
    """Without ``completedAt`` the expiry is unknown (``None``); a completed job is at 100 % regardless."""
    update = ADAPTER.parse_callback(callback(progress=None), {})
    assert update.progress == 100
    assert update.completed_at is None
    assert update.outputs == (Output(CDN2_URL, "image/png", expires_at=None),)


@pytest.mark.parametrize("completed_at", ["2026-03-15T10:00:32.000Z", "2026-03-15T10:00:32Z", None])
def test_outputs_have_no_expiry(completed_at: str | None) -> None:
    """No body states an expiry and the sources disagree (90 days vs 24 h), so ``expires_at`` is ``None``."""
    update = ADAPTER.parse_callback(callback(completedAt=completed_at), {})
    assert update.state is JobState.SUCCEEDED
    assert [output.expires_at for output in update.outputs] == [None]


def test_completed_at_with_offset_is_converted_to_utc() -> None:
    """A ``completedAt`` with an offset (or none at all) becomes an aware UTC datetime."""
    assert (
        ADAPTER.parse_callback(callback(completedAt="2026-03-15T12:00:32+02:00"), {}).completed_at
        == COMPLETED
    )
    assert ADAPTER.parse_callback(callback(completedAt="2026-03-15T10:00:32"), {}).completed_at == COMPLETED


def test_unknown_status_keeps_raw_state_and_no_state() -> None:
    """A status word the adapter does not know gives state ``None`` and keeps the word, without guessing."""
    update = ADAPTER.parse_callback(body({"jobId": JOB, "status": "PAUSED", "progress": 10}), {})
    assert update == JobUpdate(state=None, raw_state="PAUSED", vendor_job_id=JOB, progress=10)


# --- status (GET /v2/jobs/{id}) -----------------------------------------------------------------

STATUS_EXTRA = {"model": "topaz-image-upscale", "webhookStatus": None}


def test_status_queued() -> None:
    """A ``QUEUED`` job is queued, with its progress, ``createdAt`` and ``webhookStatus`` kept."""
    assert ADAPTER.parse_status(200, payload("apiframe", "status_queued")) == JobUpdate(
        state=JobState.QUEUED,
        raw_state="QUEUED",
        vendor_job_id=JOB,
        progress=0,
        created_at=CREATED,
        extra={**STATUS_EXTRA, "creditCost": 10},
        cost=Cost(10.0, "credits"),
    )


def test_status_processing() -> None:
    """A ``PROCESSING`` job is running at its progress."""
    assert ADAPTER.parse_status(200, payload("apiframe", "status_processing")) == JobUpdate(
        state=JobState.RUNNING,
        raw_state="PROCESSING",
        vendor_job_id=JOB,
        progress=65,
        created_at=CREATED,
        extra={**STATUS_EXTRA, "creditCost": 10},
        cost=Cost(10.0, "credits"),
    )


def test_status_completed() -> None:
    """A ``COMPLETED`` job gives its single image output, both times and ``webhookStatus``/``expired``."""
    assert ADAPTER.parse_status(200, payload("apiframe", "status_completed")) == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="COMPLETED",
        vendor_job_id=JOB,
        progress=100,
        outputs=(Output(CDN2_URL, "image/png", expires_at=None),),
        created_at=CREATED,
        completed_at=COMPLETED,
        extra={
            "model": "topaz-image-upscale",
            "creditCost": 0,
            "webhookStatus": "delivered",
            "expired": False,
        },
        cost=Cost(0.0, "credits"),
    )


def test_status_failed() -> None:
    """A ``FAILED`` job is failed with ``vendor_failed`` and the vendor's message; keeps ``webhookStatus``."""
    assert ADAPTER.parse_status(200, payload("apiframe", "status_failed")) == JobUpdate(
        state=JobState.FAILED,
        raw_state="FAILED",
        vendor_job_id=JOB,
        progress=0,
        error=JobError("vendor_failed", "Provider returned an error: content policy violation"),
        created_at=CREATED,
        completed_at=datetime(2026, 3, 15, 10, 0, 5, tzinfo=UTC),
        extra={"model": "topaz-image-upscale", "creditCost": 0, "webhookStatus": "sent"},
        cost=Cost(0.0, "credits"),
    )


def test_status_cancelled() -> None:
    """A ``CANCELLED`` job is failed with error code ``cancelled`` and no message."""
    assert ADAPTER.parse_status(200, payload("apiframe", "status_cancelled")) == JobUpdate(
        state=JobState.FAILED,
        raw_state="CANCELLED",
        vendor_job_id=JOB,
        progress=None,
        error=JobError("cancelled", None),
        created_at=CREATED,
        completed_at=datetime(2026, 3, 15, 10, 0, 3, tzinfo=UTC),
        extra={"model": "topaz-image-upscale", "creditCost": 0, "webhookStatus": None, "expired": False},
        cost=Cost(0.0, "credits"),
    )


def test_status_expired_true_is_in_extra() -> None:
    """A completed job showing ``"expired": true`` (CDN assets purged) reports ``extra["expired"] is True``."""
    job = json.loads(payload("apiframe", "status_completed"))
    job["expired"] = True
    update = ADAPTER.parse_status(200, body(job))
    assert update.state is JobState.SUCCEEDED
    assert update.extra["expired"] is True
    assert update.outputs == (Output(CDN2_URL, "image/png", expires_at=None),)


@pytest.mark.parametrize("status", ["QUEUED", "FAILED", "CANCELLED"])
def test_expired_true_is_in_extra_whatever_the_status(status: str) -> None:
    """``"expired": true`` reaches ``extra`` on any job status, in a poll answer or a webhook."""
    update = ADAPTER.parse_status(200, body({"id": JOB, "status": status, "expired": True}))
    assert update.extra["expired"] is True
    assert ADAPTER.parse_callback(body({"jobId": JOB, "status": status, "expired": True}), {}).extra == {
        "expired": True
    }


def test_status_not_expired_is_not_reported_as_expired() -> None:
    """``"expired": false`` stays ``False`` in ``extra``; a body without the key has none."""
    assert ADAPTER.parse_status(200, payload("apiframe", "status_completed")).extra["expired"] is False
    assert "expired" not in ADAPTER.parse_status(200, payload("apiframe", "status_queued")).extra


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [(400, "vendor_rejected", False), (404, "vendor_not_found", False), (429, "rate_limited", True)],
)
def test_status_error_statuses_raise_upstream_errors(status: int, code: str, retryable: bool) -> None:
    """An error status on a status answer is an UpstreamError with the mapped code and vendor message."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_status(status, b'{"error":"Job not found"}')
    assert (caught.value.code, caught.value.message, caught.value.retryable) == (
        code,
        "Job not found",
        retryable,
    )


def test_status_body_needs_id_not_job_id() -> None:
    """The GET job is keyed by ``id``; a webhook-shaped body (``jobId``) is a PayloadError naming ``id``."""
    with pytest.raises(PayloadError, match=r"^id: missing"):
        ADAPTER.parse_status(200, payload("apiframe", "callback_completed_string"))


# --- malformed bodies ---------------------------------------------------------------------------

MALFORMED = [
    (body({"status": "COMPLETED"}), "jobId: missing"),
    (body({"jobId": [7], "status": "COMPLETED"}), "jobId: expected a string, got array"),
    (body({"jobId": "", "status": "COMPLETED"}), "jobId: must not be empty"),
    (body({"jobId": "a\u0000b", "status": "COMPLETED"}), "jobId: contains a control character"),
    (body({"jobId": JOB}), "status: missing"),
    (body({"jobId": JOB, "status": None}), "status: missing"),
    (body({"jobId": JOB, "status": ["COMPLETED"]}), "status: expected a string, got array"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_callbacks_are_payload_errors(raw: bytes, message: str) -> None:
    """Empty, non-UTF-8, non-JSON, non-object bodies and a missing or unusable job id or status (what
    carries the outcome) raise PayloadError."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_callback(raw, {})
    assert message in caught.value.message


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_status_bodies_are_payload_errors(raw: bytes, message: str) -> None:
    """The same malformed bodies, read as a GET job (``id`` instead of ``jobId``), raise a PayloadError."""
    raw = raw.replace(b'"jobId"', b'"id"')
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_status(200, raw)
    assert message.replace("jobId", "id") in caught.value.message


def test_payload_error_details_name_the_field() -> None:
    """A field error carries ``{"field": path}`` in ``details`` for the inbound record."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_callback(body({"jobId": JOB, "status": 3}), {})
    assert caught.value.details == {"field": "status"}


# --- liberal reading (issue 20) -------------------------------------------------------------------

AUXILIARY_LEFT_OUT = [
    (body({"jobId": JOB, "status": "PROCESSING", "progress": True}), "progress", "true"),
    (body({"jobId": JOB, "status": "PROCESSING", "progress": "x"}), "progress", '"x"'),
    (body({"jobId": JOB, "status": "PROCESSING", "progress": 101}), "progress", "101"),
    (body({"jobId": JOB, "status": "PROCESSING", "progress": -1}), "progress", "-1"),
    (body({"jobId": JOB, "status": "FAILED", "error": {"msg": "x"}}), "error", '{"msg":"x"}'),
    (body({"jobId": JOB, "status": "FAILED", "completedAt": "yesterday"}), "completedAt", '"yesterday"'),
    (body({"jobId": JOB, "status": "FAILED", "completedAt": 1710496832}), "completedAt", "1710496832"),
    (body({"jobId": JOB, "status": "QUEUED", "createdAt": "2026-13-01T00:00:00Z"}), "createdAt", None),
    (body({"jobId": JOB, "status": "QUEUED", "creditCost": "ten"}), "creditCost", '"ten"'),
    (body({"jobId": JOB, "status": "QUEUED", "webhookStatus": 1}), "webhookStatus", "1"),
    (body({"jobId": JOB, "status": "QUEUED", "expired": "no"}), "expired", '"no"'),
    (body({"jobId": JOB, "status": "QUEUED", "event": 3}), "event", "3"),
    (
        body({"jobId": JOB, "status": "COMPLETED", "result": {"images": [CDN2_URL], "gridUrl": 1}}),
        "result.gridUrl",
        "1",
    ),
]


@pytest.mark.parametrize(("raw", "path", "seen"), AUXILIARY_LEFT_OUT)
def test_an_unusable_auxiliary_field_is_left_out_as_an_anomaly(
    raw: bytes, path: str, seen: str | None
) -> None:
    """A progress, message, time, cost or webhook field that cannot be used no longer fails the message:
    it is left out and recorded as an anomaly (path and what was seen); the state still counts."""
    for update in (
        ADAPTER.parse_callback(raw, {}),
        ADAPTER.parse_status(200, raw.replace(b'"jobId"', b'"id"')),
    ):
        assert update.state is not None and update.vendor_job_id == JOB
        assert [a.path for a in update.anomalies] == [path]
        assert seen is None or update.anomalies[0].seen == seen


@pytest.mark.parametrize(
    ("progress", "read"), [(45, 45), (45.5, 46), (100.0, 100), ("45", 45), (" 70.0 ", 70)]
)
def test_progress_is_read_as_an_integer_float_or_numeric_string(progress: Any, read: int) -> None:
    """``progress`` (an integer in the schema) is also read as a float or numeric string, no anomaly."""
    update = ADAPTER.parse_callback(body({"jobId": JOB, "status": "PROCESSING", "progress": progress}), {})
    assert update.progress == read and update.anomalies == ()


def test_completed_at_progress_100_float_with_images_as_objects_succeeds() -> None:
    """``progress: 100.0``, ``creditCost: 8.0`` and ``result.images`` entries that are objects with a
    ``url`` give a success with every URL."""
    result = {"images": [{"url": CDN2_URL}, {"url": "https://cdn2.apiframe.ai/images/b.jpg", "width": 1}]}
    raw = body({"jobId": JOB, "status": "COMPLETED", "progress": 100.0, "creditCost": 8.0, "result": result})
    for update in (
        ADAPTER.parse_callback(raw, {}),
        ADAPTER.parse_status(200, raw.replace(b'"jobId"', b'"id"')),
    ):
        assert update.state is JobState.SUCCEEDED and update.progress == 100
        assert [o.url for o in update.outputs] == [CDN2_URL, "https://cdn2.apiframe.ai/images/b.jpg"]
        assert update.cost == Cost(8.0, "credits") and update.anomalies == ()


@pytest.mark.parametrize(
    ("result", "anomalies"),
    [
        (None, []),
        ("", []),
        (5, [("result", "5")]),
        ({"images": []}, []),
        ({"images": [3]}, [("result.images[0]", "3")]),
        ({"url": CDN2_URL}, [("result.images", "null")]),
        ({"images": [{"href": CDN2_URL}]}, [("result.images[0].url", "null")]),
        ("javascript:alert(1)", [("result", '"javascript:alert(1)"')]),
        ({"images": ["/relative.png"]}, [("result.images[0]", '"/relative.png"')]),
        ("https://[broken/a.png", [("result", '"https://[broken/a.png"')]),
    ],
)
def test_completed_without_a_usable_url_has_no_output(result: Any, anomalies: list[tuple[str, str]]) -> None:
    """A ``COMPLETED`` job without any usable ``http(s)`` result URL is a success without output; what
    could not be used is listed as anomalies (a ``javascript:`` or relative URL is never kept)."""
    data: dict[str, Any] = {"jobId": JOB, "status": "COMPLETED"}
    if result is not None:
        data["result"] = result
    update = ADAPTER.parse_callback(body(data), {})
    assert update.state is JobState.SUCCEEDED and update.outputs == () and update.awaiting_output
    assert [(a.path, a.seen) for a in update.anomalies] == anomalies


@pytest.mark.parametrize(
    "job_id",
    [
        "3f2b9c1e-8d4a-4e6f-9b1c-2a3d4e5f6a7b",
        "8123456789",
        "job.2026.01",
        "a/../b",
        "x?y=1#z%41",
        "tâche-画像",
    ],
)
def test_job_ids_are_opaque_and_one_path_segment(job_id: str) -> None:
    """Any job id shape is read from the submit answer and the webhook, and the status request puts it
    into ``/v2/jobs/{id}`` percent-encoded as exactly one segment."""
    assert (
        ADAPTER.parse_submit_response(202, body({"jobId": job_id, "status": "QUEUED"}), {}).vendor_job_id
        == job_id
    )
    assert ADAPTER.parse_callback(body({"jobId": job_id, "status": "QUEUED"}), {}).vendor_job_id == job_id
    request = ADAPTER.status_request(job_id)
    assert request is not None
    path = request.path
    segment = path.removeprefix("/v2/jobs/")
    assert path.startswith("/v2/jobs/") and "/" not in segment and "?" not in segment and "#" not in segment
    assert unquote(segment) == job_id


# --- signatures ---------------------------------------------------------------------------------


def test_sign_matches_the_known_answer_vector() -> None:
    """``sign`` reproduces the digest pinned from the official SDK's test key and body."""
    assert apiframe.sign(VECTOR_KEY, VECTOR_BODY) == VECTOR_SIGNATURE


@pytest.mark.parametrize(
    "header",
    [
        VECTOR_SIGNATURE,
        VECTOR_SIGNATURE.removeprefix("sha256="),
        VECTOR_SIGNATURE.upper().replace("SHA256=", "sha256="),
        VECTOR_SIGNATURE.removeprefix("sha256=").upper(),
        f"  {VECTOR_SIGNATURE} ",
    ],
)
def test_verify_accepts_the_vector_in_every_documented_spelling(header: str) -> None:
    """The vector verifies with or without ``sha256=``, in lower or upper case hex, with stray spaces."""
    ADAPTER.verify_callback(VECTOR_BODY, {"X-Webhook-Signature": header}, VECTOR_KEY)


def test_verify_reads_the_header_case_insensitively() -> None:
    """The header is found whatever its case (Starlette lower-cases header names)."""
    ADAPTER.verify_callback(VECTOR_BODY, {"x-webhook-signature": VECTOR_SIGNATURE}, VECTOR_KEY)


@pytest.mark.parametrize(
    ("raw", "headers", "credential", "message"),
    [
        (
            b'{"jobId":"abd","status":"COMPLETED"}',
            {"X-Webhook-Signature": VECTOR_SIGNATURE},
            VECTOR_KEY,
            "match",
        ),
        (VECTOR_BODY + b" ", {"X-Webhook-Signature": VECTOR_SIGNATURE}, VECTOR_KEY, "does not match"),
        (VECTOR_BODY, {"X-Webhook-Signature": VECTOR_SIGNATURE}, "afk_other", "does not match"),
        (VECTOR_BODY, {"X-Webhook-Event": "completed"}, VECTOR_KEY, "no X-Webhook-Signature header"),
        (VECTOR_BODY, {}, VECTOR_KEY, "no X-Webhook-Signature header"),
        (VECTOR_BODY, {"X-Webhook-Signature": ""}, VECTOR_KEY, "does not match"),
        (VECTOR_BODY, {"X-Webhook-Signature": "sha256="}, VECTOR_KEY, "does not match"),
        (VECTOR_BODY, {"X-Webhook-Signature": "sha256=é✓"}, VECTOR_KEY, "does not match"),
        (VECTOR_BODY, {"X-Webhook-Signature": VECTOR_SIGNATURE}, None, "no Apiframe API key"),
        (VECTOR_BODY, {"X-Webhook-Signature": VECTOR_SIGNATURE}, "", "no Apiframe API key"),
    ],
)
def test_verify_refuses_tampered_unsigned_or_unverifiable_callbacks(
    raw: bytes, headers: dict[str, str], credential: str | None, message: str
) -> None:
    """A tampered body, wrong key, missing or garbled header, or missing API key is SignatureInvalid."""
    with pytest.raises(SignatureInvalid, match=message):
        ADAPTER.verify_callback(raw, headers, credential)


@settings(deadline=None, max_examples=200)
@given(st.text(min_size=1), st.binary())
def test_sign_and_verify_round_trip(api_key: str, raw: bytes) -> None:
    """Whatever the key and body, what ``sign`` produces is what ``verify_callback`` accepts."""
    ADAPTER.verify_callback(raw, {"X-Webhook-Signature": apiframe.sign(api_key, raw)}, api_key)


# --- robustness ---------------------------------------------------------------------------------

FIELD_VALUES = (
    JSON_VALUES
    | st.sampled_from(
        ["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED", "completed", JOB, CDN2_URL]
    )
    | st.sampled_from(["2026-03-15T10:00:32.000Z", "9999-12-31T23:59:59", "0001-01-01T00:00:00+01:00"])
    | st.fixed_dictionaries(
        {"images": st.lists(st.text() | st.integers(), max_size=3)}, optional={"gridUrl": JSON_VALUES}
    )
    | st.integers(min_value=-5, max_value=105)
)
KEYS = st.sampled_from(
    [
        "event",
        "jobId",
        "id",
        "status",
        "progress",
        "result",
        "error",
        "model",
        "creditCost",
        "completedAt",
        "createdAt",
        "webhookStatus",
        "expired",
    ]
)
JOB_BODIES = st.dictionaries(KEYS, FIELD_VALUES, max_size=10)


@settings(deadline=None, max_examples=500)
@given(JOB_BODIES)
def test_job_shaped_json_raises_only_payload_errors(value: dict[str, Any]) -> None:
    """Job-shaped objects with arbitrary field values parse or raise PayloadError, never anything else."""
    check_parsers(ADAPTER, json.dumps(value).encode())


@settings(deadline=None, max_examples=300)
@given(st.integers(min_value=100, max_value=599), JOB_BODIES.map(lambda v: json.dumps(v).encode()))
def test_job_shaped_submit_answers_raise_only_payload_or_upstream_errors(status: int, raw: bytes) -> None:
    """Job-shaped submit answers under any status parse or raise PayloadError or UpstreamError."""
    check_submit_response(ADAPTER, status, raw)
