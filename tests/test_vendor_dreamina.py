"""The useapi.net Dreamina adapter: request model, submit/status requests, body parsing, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import BaseModel, ValidationError

from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import Cost, JobError, JobState, JobUpdate, Output
from fixtures import payload, payload_names
from receiver.vendors import dreamina
from receiver.vendors.base import SubmitResult
from tests.properties import JSON_VALUES, check_parsers, check_submit_response

ADAPTER = dreamina.ADAPTER
SOURCE_ID = "j0302140530123456789i-u12345-US:demo@example.com:dreamina"
UPSCALE_ID = "j0302140630123456789I-u12345-US:demo@example.com:dreamina"
REPLY_REF = "job_0199a9f2c3b1e4f0a1b2c3d4e5f6"
CALLBACK_URL = "https://relay.example.com/v1/callbacks/dreamina/cbt_abc?x=1"
UPSCALE_CREATED = datetime(2026, 3, 2, 14, 6, 30, 123000, tzinfo=UTC)


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def record(**fields: Any) -> bytes:
    return body({"jobid": UPSCALE_ID, "type": "upscale", "status": "completed", **fields})


def image(**fields: Any) -> dict[str, Any]:
    return {
        "imageUrl": "https://p9-sign.douyinpic.com/a",
        "width": 3840,
        "height": 2160,
        "format": "jpeg",
        **fields,
    }


# --- adapter attributes -------------------------------------------------------------------------


def test_adapter_attributes() -> None:
    """The adapter declares the protocol attributes the relay reads (name, model, settings...)."""
    assert ADAPTER.name == "dreamina"
    assert ADAPTER.params_model is dreamina.DreaminaUpscaleParams
    assert ADAPTER.reserved_fields == frozenset({"replyUrl", "replyRef"})
    assert ADAPTER.synchronous is False
    assert ADAPTER.idempotent_submit is False
    assert ADAPTER.credential_setting == "useapi_token"
    assert ADAPTER.base_url_setting == "useapi_base_url"


def test_auth_headers_send_the_token_whole() -> None:
    """The useapi token is sent as a Bearer token, unencoded."""
    assert ADAPTER.auth_headers("user:12345-abc") == {"Authorization": "Bearer user:12345-abc"}


def test_every_fixture_is_present() -> None:
    """The fixture directory holds exactly the Dreamina payloads these tests exercise."""
    assert payload_names("dreamina") == [
        "callback_upscale_completed",
        "callback_upscale_created",
        "callback_upscale_failed",
        "error_400",
        "error_404",
        "status_completed_image",
        "status_created",
        "submit_ok",
    ]


# --- request model ------------------------------------------------------------------------------


def validate(**fields: Any) -> BaseModel:
    return ADAPTER.params_model.model_validate({"jobid": SOURCE_ID, **fields})


def test_request_model_defaults_match_the_docs() -> None:
    """Omitted fields take the documented defaults: image 0, 4k, strengths 0.65 and 0.5."""
    model = validate()
    assert model.model_dump() == {
        "jobid": SOURCE_ID,
        "imageIndex": 0,
        "upscaleResolution": "4k",
        "originalImageStrength": 0.65,
        "detailStrength": 0.5,
        "maxJobs": None,
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"imageIndex": 0},
        {"imageIndex": 3},
        {"upscaleResolution": "2k"},
        {"upscaleResolution": "8k"},
        {"originalImageStrength": 0.0},
        {"originalImageStrength": 1.0},
        {"detailStrength": 0},
        {"detailStrength": 1},
        {"maxJobs": 1},
        {"maxJobs": 50},
    ],
)
def test_request_model_accepts_documented_values(fields: dict[str, Any]) -> None:
    """Values at the documented bounds are accepted, integers included where a number is documented."""
    model = validate(**fields)
    assert model.model_dump(exclude_unset=True) == {"jobid": SOURCE_ID, **fields}


def test_request_model_accepts_integer_strengths_from_json() -> None:
    """A JSON body with ``"detailStrength": 1`` validates, as a client would send it."""
    model = ADAPTER.params_model.model_validate_json(f'{{"jobid": "{SOURCE_ID}", "detailStrength": 1}}')
    assert model.model_dump(exclude_unset=True) == {"jobid": SOURCE_ID, "detailStrength": 1.0}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"imageIndex": -1}, "imageIndex"),
        ({"imageIndex": 4}, "imageIndex"),
        ({"imageIndex": "0"}, "imageIndex"),
        ({"imageIndex": 1.0}, "imageIndex"),
        ({"imageIndex": None}, "imageIndex"),
        ({"upscaleResolution": "16k"}, "upscaleResolution"),
        ({"upscaleResolution": "4K"}, "upscaleResolution"),
        ({"upscaleResolution": 4}, "upscaleResolution"),
        ({"originalImageStrength": -0.01}, "originalImageStrength"),
        ({"originalImageStrength": 1.01}, "originalImageStrength"),
        ({"originalImageStrength": "0.5"}, "originalImageStrength"),
        ({"originalImageStrength": float("nan")}, "originalImageStrength"),
        ({"detailStrength": -0.01}, "detailStrength"),
        ({"detailStrength": 1.01}, "detailStrength"),
        ({"detailStrength": True}, "detailStrength"),
        ({"maxJobs": 0}, "maxJobs"),
        ({"maxJobs": 51}, "maxJobs"),
        ({"jobid": ""}, "jobid"),
        ({"jobid": 5}, "jobid"),
        ({"jobId": SOURCE_ID}, "jobId"),
        ({"resolution": "4k"}, "resolution"),
        ({"replyUrl": "https://evil.example.com"}, "replyUrl"),
        ({"replyRef": "mine"}, "replyRef"),
    ],
)
def test_request_model_refuses_bad_fields(fields: dict[str, Any], field: str) -> None:
    """A value past a bound, a wrong type, an unknown or a relay-owned field is refused by name."""
    with pytest.raises(ValidationError) as caught:
        validate(**fields)
    assert [err["loc"] for err in caught.value.errors()] == [(field,)]


def test_request_model_requires_jobid() -> None:
    """``jobid`` (lower-case) is required."""
    with pytest.raises(ValidationError) as caught:
        ADAPTER.params_model.model_validate({"imageIndex": 1})
    assert [(err["loc"], err["type"]) for err in caught.value.errors()] == [(("jobid",), "missing")]


# --- requests -----------------------------------------------------------------------------------


def test_submit_request_sends_only_set_fields_plus_reply_fields() -> None:
    """The submit JSON holds just the fields the client set, then ``replyUrl`` and ``replyRef``."""
    request = ADAPTER.submit_request(validate(), callback_url=CALLBACK_URL, job_id="job_01")
    assert request.method == "POST"
    assert request.path == "/v1/dreamina/images/upscale"
    assert request.json == {"jobid": SOURCE_ID, "replyUrl": CALLBACK_URL, "replyRef": "job_01"}
    assert request.headers == {"Content-Type": "application/json"}
    assert request.query is None


def test_submit_request_sends_every_field_the_client_set() -> None:
    """Explicitly set fields are sent with the client's values, even when equal to a default."""
    params = validate(
        imageIndex=0, upscaleResolution="8k", originalImageStrength=1, detailStrength=0.25, maxJobs=3
    )
    request = ADAPTER.submit_request(params, callback_url=CALLBACK_URL, job_id="job_02")
    assert request.json == {
        "jobid": SOURCE_ID,
        "imageIndex": 0,
        "upscaleResolution": "8k",
        "originalImageStrength": 1.0,
        "detailStrength": 0.25,
        "maxJobs": 3,
        "replyUrl": CALLBACK_URL,
        "replyRef": "job_02",
    }


def test_submit_request_without_callback_url_sends_only_reply_ref() -> None:
    """With no callback URL the request carries ``replyRef`` but no ``replyUrl``."""
    request = ADAPTER.submit_request(validate(), callback_url=None, job_id="job_03")
    assert request.json == {"jobid": SOURCE_ID, "replyRef": "job_03"}


def test_status_request_keeps_the_job_id_unencoded() -> None:
    """The jobid goes into the GET path verbatim, ``:`` and ``@`` included."""
    request = ADAPTER.status_request(UPSCALE_ID)
    assert request is not None
    assert request.method == "GET"
    assert request.path == "/v1/dreamina/images/j0302140630123456789I-u12345-US:demo@example.com:dreamina"
    assert request.json is None


# --- submit responses ---------------------------------------------------------------------------


def test_submit_ok_gives_the_job_id_and_a_running_update() -> None:
    """The ``created`` job record answer gives the upscale job's id and a running update."""
    assert ADAPTER.parse_submit_response(200, payload("dreamina", "submit_ok"), {}) == SubmitResult(
        UPSCALE_ID,
        JobUpdate(
            state=JobState.RUNNING,
            raw_state="created",
            vendor_job_id=UPSCALE_ID,
            created_at=UPSCALE_CREATED,
            extra={"type": "upscale"},
            cost=Cost(0.0, "credits", estimate=True),
        ),
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body({"status": "created"}), "jobid: missing"),
        (body({"jobid": None, "status": "created"}), "jobid: missing"),
        (body({"jobid": ["x"], "status": "created"}), "jobid: expected a string, got array"),
        (body({"jobid": UPSCALE_ID}), "status: missing"),
    ],
)
def test_submit_response_without_job_record_is_a_payload_error(raw: bytes, message: str) -> None:
    """A 2xx submit answer that is not a job record with ``jobid`` and ``status`` is refused."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_submit_response(200, raw, {})
    assert message in caught.value.message


# --- callbacks and status -----------------------------------------------------------------------


def test_status_created_generation_job_is_running() -> None:
    """A ``created`` generation job is running, with its creation time and no outputs."""
    assert ADAPTER.parse_status(200, payload("dreamina", "status_created")) == JobUpdate(
        state=JobState.RUNNING,
        raw_state="created",
        vendor_job_id=SOURCE_ID,
        created_at=datetime(2026, 3, 2, 14, 5, 30, 123000, tzinfo=UTC),
        extra={"type": "image"},
        cost=Cost(0.0, "credits", estimate=True),
    )


def test_status_completed_generation_job_has_its_image() -> None:
    """A ``completed`` generation job succeeds with its image's URL, mime type and size."""
    assert ADAPTER.parse_status(200, payload("dreamina", "status_completed_image")) == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="completed",
        vendor_job_id=SOURCE_ID,
        progress=100,
        outputs=(
            Output(
                url="https://p9-sign.douyinpic.com/...",
                mime_type="image/jpeg",
                width=2560,
                height=1440,
                expires_at=None,
            ),
        ),
        created_at=datetime(2026, 3, 2, 14, 5, 30, 123000, tzinfo=UTC),
        completed_at=datetime(2026, 3, 2, 14, 6, 6, 789000, tzinfo=UTC),
        extra={"type": "image"},
    )


def test_generation_job_keeps_all_four_images() -> None:
    """A generation job's four images all become outputs, in order."""
    images = [image(imageUrl=f"https://p9-sign.douyinpic.com/{n}", width=2560, height=1440) for n in range(4)]
    update = ADAPTER.parse_status(200, record(type="image", response={"images": images}))
    assert [output.url for output in update.outputs] == [
        f"https://p9-sign.douyinpic.com/{n}" for n in range(4)
    ]
    assert {(o.mime_type, o.width, o.height) for o in update.outputs} == {("image/jpeg", 2560, 1440)}


def test_callback_upscale_created_is_running() -> None:
    """A ``created`` upscale callback is running and keeps the echoed ``replyRef``."""
    assert ADAPTER.parse_callback(payload("dreamina", "callback_upscale_created"), {}) == JobUpdate(
        state=JobState.RUNNING,
        raw_state="created",
        vendor_job_id=UPSCALE_ID,
        created_at=UPSCALE_CREATED,
        extra={"type": "upscale", "replyRef": REPLY_REF},
        cost=Cost(0.0, "credits", estimate=True),
    )


def test_callback_upscale_completed_is_succeeded() -> None:
    """A ``completed`` upscale callback succeeds with the one upscaled image and its times."""
    assert ADAPTER.parse_callback(payload("dreamina", "callback_upscale_completed"), {}) == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="completed",
        vendor_job_id=UPSCALE_ID,
        progress=100,
        outputs=(
            Output(
                url="https://p9-sign.douyinpic.com/upscaled...",
                mime_type="image/jpeg",
                width=3840,
                height=2160,
            ),
        ),
        created_at=UPSCALE_CREATED,
        completed_at=datetime(2026, 3, 2, 14, 7, 2, 456000, tzinfo=UTC),
        extra={"type": "upscale", "replyRef": REPLY_REF},
    )


def test_callback_upscale_failed_keeps_vendor_code_and_details() -> None:
    """A ``failed`` upscale callback keeps ``error`` as the code and ``errorDetails`` as the message."""
    assert ADAPTER.parse_callback(payload("dreamina", "callback_upscale_failed"), {}) == JobUpdate(
        state=JobState.FAILED,
        raw_state="failed",
        vendor_job_id=UPSCALE_ID,
        error=JobError("fail_code: 2043", "Upscale generation failed on Dreamina"),
        created_at=UPSCALE_CREATED,
        completed_at=datetime(2026, 3, 2, 14, 6, 41, 2000, tzinfo=UTC),
        extra={"type": "upscale", "replyRef": REPLY_REF},
    )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"error": "fail_code: 2043"}, JobError("fail_code: 2043", "fail_code: 2043")),
        ({"error": "Cancelled by user"}, JobError("Cancelled by user", "Cancelled by user")),
        ({"error": "  fail_code: 7  ", "errorDetails": ""}, JobError("fail_code: 7", "  fail_code: 7  ")),
        ({"errorDetails": "It broke"}, JobError("vendor_failed", "It broke")),
        ({}, JobError("vendor_failed", None)),
        ({"error": "x" * 65}, JobError("vendor_failed", "x" * 65)),
        ({"error": "line one\nline two"}, JobError("vendor_failed", "line one\nline two")),
        ({"error": None, "errorDetails": None}, JobError("vendor_failed", None)),
    ],
)
def test_failed_error_code_and_message(fields: dict[str, Any], error: JobError) -> None:
    """A short one-line ``error`` is kept as the code, anything else gives ``vendor_failed``;
    the message is ``errorDetails`` with ``error`` as fallback."""
    update = ADAPTER.parse_callback(record(status="failed", **fields), {})
    assert (update.state, update.error) == (JobState.FAILED, error)


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("jpeg", "image/jpeg"),
        ("JPEG", "image/jpeg"),
        ("jpg", "image/jpeg"),
        ("png", "image/png"),
        ("webp", "image/webp"),
        ("heic", None),
        (None, None),
    ],
)
def test_image_format_maps_to_mime_type(fmt: str | None, mime: str | None) -> None:
    """``format`` maps to a mime type; an unknown or missing format gives an unknown mime type."""
    update = ADAPTER.parse_callback(record(response={"images": [image(format=fmt)]}), {})
    assert update.outputs[0].mime_type == mime


@pytest.mark.parametrize(("width", "height"), [(0, -5), (None, None)])
def test_unknown_dimensions_are_none(width: int | None, height: int | None) -> None:
    """A null or non-positive width/height is unknown rather than an error."""
    update = ADAPTER.parse_callback(record(response={"images": [image(width=width, height=height)]}), {})
    assert (update.outputs[0].width, update.outputs[0].height) == (None, None)


@pytest.mark.parametrize("response", [None, {}, {"forecastCost": 0}, {"images": []}, {"images": None}])
def test_completed_without_images_is_a_success_without_output(response: dict[str, Any] | None) -> None:
    """A ``completed`` record without any image is a success without output (the relay keeps such a job
    running and polls for the URL), raw state kept, no anomaly."""
    update = ADAPTER.parse_callback(record(response=response, updated="2026-03-02T14:07:02.456Z"), {})
    assert (update.state, update.raw_state, update.progress) == (JobState.SUCCEEDED, "completed", None)
    assert update.outputs == () and update.awaiting_output and update.anomalies == ()


def test_created_job_has_no_outputs_or_completion_time() -> None:
    """A ``created`` record reports no outputs and no completion time even when it carries them."""
    update = ADAPTER.parse_callback(
        record(status="created", updated="2026-03-02T14:07:00Z", response={"images": [image()]}), {}
    )
    assert (update.state, update.outputs, update.completed_at) == (JobState.RUNNING, (), None)


def test_unknown_status_is_unknown_state() -> None:
    """A status word the adapter does not know gives state ``None``, raw word kept, no outputs or times."""
    update = ADAPTER.parse_callback(
        record(status="moderated", updated="2026-03-02T14:07:00Z", response={"images": [image()]}), {}
    )
    assert update == JobUpdate(
        state=None, raw_state="moderated", vendor_job_id=UPSCALE_ID, extra={"type": "upscale"}
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T16:06:30.123+02:00", UPSCALE_CREATED),
        ("2026-03-02T14:06:30.123", UPSCALE_CREATED),
        ("2026-03-02T14:06:30.123Z", UPSCALE_CREATED),
        ("", None),
    ],
)
def test_times_are_utc(text: str, expected: datetime | None) -> None:
    """``created`` with any offset, or none, becomes an aware UTC datetime; an empty one is unknown."""
    created_at = ADAPTER.parse_callback(record(status="created", created=text), {}).created_at
    assert created_at == expected
    assert created_at is None or created_at.utcoffset() is not None


def test_status_response_parses_like_the_callback() -> None:
    """A 200 ``GET images/{jobid}`` response parses to the same update as the callback body."""
    for name in ("callback_upscale_created", "callback_upscale_completed", "callback_upscale_failed"):
        raw = payload("dreamina", name)
        assert ADAPTER.parse_status(200, raw) == ADAPTER.parse_callback(raw, {})


# --- malformed bodies ---------------------------------------------------------------------------

MALFORMED: list[tuple[bytes, str]] = [
    (body({"jobid": UPSCALE_ID}), "status: missing"),
    (body({"status": 1}), "status: expected a string, got number"),
    (body({"status": {"type": "completed"}}), "status: expected a string, got object"),
    (record(jobid=[5]), "jobid: expected a string, got array"),
    (record(jobid="j1\u0085x"), "jobid: contains a control character"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_callback_is_a_payload_error(raw: bytes, message: str) -> None:
    """A callback body without a usable ``status`` or job id raises :class:`PayloadError` naming it."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_callback(raw, {})
    assert message in caught.value.message


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_status_is_a_payload_error(raw: bytes, message: str) -> None:
    """A malformed 200 status body raises the same :class:`PayloadError` as the callback."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_status(200, raw)
    assert message in caught.value.message


def test_payload_error_details_name_the_field() -> None:
    """A field error carries the field's dotted path in ``details``."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_callback(body({"jobid": UPSCALE_ID, "status": ["completed"]}), {})
    assert caught.value.details == {"field": "status"}


# --- liberal reading (issue 20) -------------------------------------------------------------------

AUXILIARY_LEFT_OUT: list[tuple[bytes, list[tuple[str, str]]]] = [
    (record(type=[]), [("type", "[]")]),
    (record(created="yesterday"), [("created", '"yesterday"')]),
    (record(created=1772460390), [("created", "1772460390")]),
    (record(updated="2026-13-01T00:00:00Z"), [("updated", '"2026-13-01T00:00:00Z"')]),
    (record(updated="0001-01-01T00:00:00+05:00"), [("updated", '"0001-01-01T00:00:00+05:00"')]),
    (record(response="done"), [("response", '"done"')]),
    (record(response={"images": {}}), [("response.images", "{}")]),
    (record(response={"images": ["https://x.test/a"]}), [("response.images[0]", '"https://x.test/a"')]),
    (record(response={"images": [{"width": 1}]}), [("response.images[0].imageUrl", "null")]),
    (record(response={"images": [image(), image(imageUrl=5)]}), [("response.images[1].imageUrl", "5")]),
    (
        record(response={"images": [image(imageUrl="javascript:x()")]}),
        [("response.images[0].imageUrl", '"javascript:x()"')],
    ),
    (record(response={"images": [image(width="wide")]}), [("response.images[0].width", '"wide"')]),
    (record(response={"images": [image(height=2160.5)]}), [("response.images[0].height", "2160.5")]),
    (record(response={"images": [image(width=True)]}), [("response.images[0].width", "true")]),
    (record(response={"images": [image(format=1)]}), [("response.images[0].format", "1")]),
    (record(response={"images": [image()], "forecastCost": "free"}), [("response.forecastCost", '"free"')]),
    (record(status="failed", error=["x"]), [("error", '["x"]')]),
    (record(status="failed", errorDetails={"a": 1}), [("errorDetails", '{"a":1}')]),
    (record(replyRef=7), [("replyRef", "7")]),
]


@pytest.mark.parametrize(("raw", "anomalies"), AUXILIARY_LEFT_OUT)
def test_an_unusable_auxiliary_field_is_left_out_as_an_anomaly(
    raw: bytes, anomalies: list[tuple[str, str]]
) -> None:
    """A type, time, image entry, size, format, cost or error field that cannot be used (or an image
    URL that is not ``http(s)``) no longer fails the message: it is left out and recorded as an anomaly
    with its path and what was seen; the state still counts."""
    for update in (ADAPTER.parse_callback(raw, {}), ADAPTER.parse_status(200, raw)):
        assert update.state is not None
        assert [(a.path, a.seen) for a in update.anomalies] == anomalies


def test_numbers_are_read_as_floats_or_numeric_strings() -> None:
    """``width``/``height`` as ``3840.0``/``"2160"`` and ``forecastCost`` as ``"0.5"`` are read, no anomaly."""
    raw = record(response={"images": [image(width=3840.0, height="2160")], "forecastCost": "0.5"})
    update = ADAPTER.parse_callback(raw, {})
    assert (update.outputs[0].width, update.outputs[0].height) == (3840, 2160)
    assert update.cost == Cost(0.5, "credits", estimate=True) and update.anomalies == ()


def test_a_numeric_error_is_kept_as_the_code() -> None:
    """An ``error`` sent as a number still names the failure."""
    update = ADAPTER.parse_callback(record(status="failed", error=2043), {})
    assert update.error == JobError("2043", "2043") and update.anomalies == ()


@pytest.mark.parametrize(
    ("job_id", "segment"),
    [
        ("3f2b9c1e-8d4a-4e6f-9b1c-2a3d4e5f6a7b", "3f2b9c1e-8d4a-4e6f-9b1c-2a3d4e5f6a7b"),
        ("8123456789", "8123456789"),
        ("dreamina.2026.01", "dreamina.2026.01"),
        ("a/../b", "a%2F..%2Fb"),
        ("x?y=1#z%41", "x%3Fy%3D1%23z%2541"),
        ("tâche-画像", "t%C3%A2che-%E7%94%BB%E5%83%8F"),
        (UPSCALE_ID, UPSCALE_ID),
    ],
)
def test_job_ids_are_opaque_and_one_path_segment(job_id: str, segment: str) -> None:
    """Any ``jobid`` is read from the submit answer and the callback, and the status path carries it as
    one percent-encoded segment, ``:`` and ``@`` kept as in useapi's own examples."""
    answer = body({"jobid": job_id, "type": "upscale", "status": "created"})
    assert ADAPTER.parse_submit_response(200, answer, {}).vendor_job_id == job_id
    assert ADAPTER.parse_callback(answer, {}).vendor_job_id == job_id
    request = ADAPTER.status_request(job_id)
    assert request is not None and request.path == f"/v1/dreamina/images/{segment}"


# --- upstream errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "code", "message"),
    [
        ("error_400", 400, "vendor_rejected", "Parameter jobid is required"),
        ("error_404", 404, "vendor_not_found", "Source image job not found"),
    ],
)
def test_submit_error_fixtures_map_to_relay_codes(name: str, status: int, code: str, message: str) -> None:
    """Each documented submit error body (no ``code`` field) maps to an :class:`UpstreamError` code."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(status, payload("dreamina", name), {})
    error = caught.value
    assert (error.code, error.message, error.http_status, error.retryable) == (code, message, status, False)


@pytest.mark.parametrize(
    ("status", "raw", "code", "message", "retryable"),
    [
        (401, b'{"error": "Unauthorized"}', "vendor_unauthorized", "Unauthorized", False),
        (410, b'{"error": "Job has expired", "code": 410}', "vendor_expired", "Job has expired", False),
        (404, b'{"error": "Job not found"}', "vendor_not_found", "Job not found", False),
        (412, b'{"error": "Account out of credits"}', "vendor_rejected", "Account out of credits", False),
        (
            596,
            b'{"error": "Session expired, please re-link"}',
            "vendor_unavailable",
            "Session expired, please re-link",
            True,
        ),
        (503, b"Service Unavailable", "vendor_unavailable", "Service Unavailable", True),
        (500, b'{"error": 12}', "vendor_unavailable", "vendor answered HTTP 500", True),
    ],
)
def test_status_errors_map_to_relay_codes(
    status: int, raw: bytes, code: str, message: str, retryable: bool
) -> None:
    """A status error response becomes an :class:`UpstreamError` with the mapped code and body message."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_status(status, raw)
    error = caught.value
    assert (error.code, error.message, error.http_status, error.retryable) == (
        code,
        message,
        status,
        retryable,
    )


def test_rate_limit_reads_retry_after() -> None:
    """A 429 submit answer is retryable and carries the ``Retry-After`` seconds."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(
            429,
            b'{"error": "Too many requests", "retryAfter": "2026-03-02T14:07:00Z"}',
            {"retry-after": "12"},
        )
    error = caught.value
    assert (error.code, error.message, error.retryable, error.retry_after) == (
        "rate_limited",
        "Too many requests",
        True,
        12.0,
    )


# --- property: nothing but PayloadError ---------------------------------------------------------

IMAGES = st.fixed_dictionaries(
    {},
    optional={
        "imageUrl": st.text() | JSON_VALUES,
        "width": st.integers() | JSON_VALUES,
        "height": st.integers() | JSON_VALUES,
        "format": st.sampled_from(["jpeg", "png", "webp", "gif"]) | JSON_VALUES,
    },
)
JOB_RECORDS = st.fixed_dictionaries(
    {"status": st.sampled_from(["created", "completed", "failed", "moderated"]) | JSON_VALUES},
    optional={
        "jobid": st.text() | JSON_VALUES,
        "type": st.sampled_from(["image", "upscale"]) | JSON_VALUES,
        "created": st.datetimes().map(datetime.isoformat) | st.text(max_size=30) | JSON_VALUES,
        "updated": st.datetimes().map(lambda d: d.isoformat() + "Z") | st.text(max_size=30) | JSON_VALUES,
        "response": st.fixed_dictionaries({}, optional={"images": st.lists(IMAGES | JSON_VALUES, max_size=4)})
        | JSON_VALUES,
        "error": JSON_VALUES,
        "errorDetails": JSON_VALUES,
        "replyRef": JSON_VALUES,
    },
)


@settings(deadline=None, max_examples=500)
@given(JOB_RECORDS)
def test_record_shaped_json_raises_only_payload_error(value: dict[str, Any]) -> None:
    """Job-record-shaped JSON with arbitrary field values parses or raises only :class:`PayloadError`."""
    check_parsers(ADAPTER, json.dumps(value).encode())
    check_submit_response(ADAPTER, 200, json.dumps(value).encode())
