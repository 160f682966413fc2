"""The useapi.net LTX Studio adapter: request model, submit/status requests, body parsing, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import BaseModel, ValidationError

from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import JobError, JobState, JobUpdate, Output
from fixtures import payload, payload_names
from receiver.vendors import ltxstudio
from receiver.vendors.base import SubmitResult
from tests.properties import JSON_VALUES, check_parsers, check_submit_response

ADAPTER = ltxstudio.ADAPTER
JOB_ID = "email:demo@example.com:8b45c932-0fe1-316f-e32c-5bcd7g8940f8-type:image"
VIDEO_JOB_ID = "email:demo@example.com:7a34b821-9fd0-205e-d21b-4abc6f7839e7-type:video"
EXPIRES = datetime(2025, 6, 3, 2, 57, 57, 350000, tzinfo=UTC)  # 1748919477350 ms
CALLBACK_URL = "https://relay.example.com/v1/callbacks/ltxstudio/cbt_abc?x=1"


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def job(**status: Any) -> bytes:
    return body({"status": status, "jobId": JOB_ID})


# --- adapter attributes -------------------------------------------------------------------------


def test_adapter_attributes() -> None:
    """The adapter declares the protocol attributes the relay reads (name, model, settings...)."""
    assert ADAPTER.name == "ltxstudio"
    assert ADAPTER.params_model is ltxstudio.LtxUpscaleParams
    assert ADAPTER.reserved_fields == frozenset({"replyUrl", "replyRef"})
    assert ADAPTER.synchronous is False
    assert ADAPTER.idempotent_submit is False
    assert ADAPTER.credential_setting == "useapi_token"
    assert ADAPTER.base_url_setting == "useapi_base_url"


def test_auth_headers_send_the_token_whole() -> None:
    """The useapi token is sent as a Bearer token, unencoded."""
    assert ADAPTER.auth_headers("user:12345-abc") == {"Authorization": "Bearer user:12345-abc"}


def test_every_fixture_is_present() -> None:
    """The fixture directory holds exactly the LTX payloads these tests exercise."""
    assert payload_names("ltxstudio") == [
        "callback_active",
        "callback_completed",
        "callback_completed_no_asset",
        "callback_failed",
        "error_400",
        "error_401",
        "error_402",
        "submit_ok",
        "submit_polled_completed",
    ]


# --- request model ------------------------------------------------------------------------------


def validate(**fields: Any) -> BaseModel:
    return ADAPTER.params_model.model_validate({"jobId": JOB_ID, **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"pollForResult": 1},
        {"pollForResult": 20},
        {"maxJobs": 1},
        {"maxJobs": 100},
        {"maxJobs": 101},
        {"maxJobs": 500},
        {"email": "demo@example.com"},
        {"email": "demo@example.com", "pollForResult": 10, "maxJobs": 5},
    ],
)
def test_request_model_accepts_documented_values(fields: dict[str, Any]) -> None:
    """Values at the documented bounds (and any positive ``maxJobs``: no cap) are accepted and kept."""
    model = validate(**fields)
    assert model.model_dump(exclude_unset=True) == {"jobId": JOB_ID, **fields}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"pollForResult": 0}, "pollForResult"),
        ({"pollForResult": 21}, "pollForResult"),
        ({"pollForResult": "5"}, "pollForResult"),
        ({"pollForResult": 5.0}, "pollForResult"),
        ({"pollForResult": True}, "pollForResult"),
        ({"maxJobs": 0}, "maxJobs"),
        ({"maxJobs": -1}, "maxJobs"),
        ({"maxJobs": "5"}, "maxJobs"),
        ({"maxJobs": 5.0}, "maxJobs"),
        ({"maxJobs": True}, "maxJobs"),
        ({"email": 7}, "email"),
        ({"email": ""}, "email"),
        ({"jobId": ""}, "jobId"),
        ({"jobId": 12}, "jobId"),
        ({"scale": 2}, "scale"),
        ({"replyUrl": "https://evil.example.com"}, "replyUrl"),
        ({"replyRef": "mine"}, "replyRef"),
    ],
)
def test_request_model_refuses_bad_fields(fields: dict[str, Any], field: str) -> None:
    """A value past a bound, a wrong type, an unknown or a relay-owned field is refused by name."""
    with pytest.raises(ValidationError) as caught:
        validate(**fields)
    assert [err["loc"] for err in caught.value.errors()] == [(field,)]


def test_max_jobs_has_no_upper_cap() -> None:
    """seed:000 documents no range for the per-request ``maxJobs``: 500 is sent as given, 0 is refused."""
    request = ADAPTER.submit_request(validate(maxJobs=500), callback_url=None, job_id="job_01")
    assert request.json is not None
    assert request.json["maxJobs"] == 500
    with pytest.raises(ValidationError) as caught:
        validate(maxJobs=0)
    [error] = caught.value.errors()
    assert (error["loc"], error["type"]) == (("maxJobs",), "greater_than_equal")


def test_request_model_requires_job_id() -> None:
    """``jobId`` is required."""
    with pytest.raises(ValidationError) as caught:
        ADAPTER.params_model.model_validate({"pollForResult": 5})
    assert caught.value.errors()[0]["loc"] == ("jobId",)
    assert caught.value.errors()[0]["type"] == "missing"


# --- requests -----------------------------------------------------------------------------------


def test_submit_request_injects_reply_fields() -> None:
    """The submit is a JSON POST of the client's fields plus ``replyUrl`` and ``replyRef``."""
    request = ADAPTER.submit_request(validate(pollForResult=10), callback_url=CALLBACK_URL, job_id="job_01")
    assert request.method == "POST"
    assert request.path == "/v1/ltxstudio/images/upscale"
    assert request.json == {
        "jobId": JOB_ID,
        "pollForResult": 10,
        "replyUrl": CALLBACK_URL,
        "replyRef": "job_01",
    }
    assert request.headers == {"Content-Type": "application/json"}
    assert request.query is None


def test_submit_request_sends_only_fields_the_client_set() -> None:
    """Unset and null optional fields are not sent, so useapi applies its own defaults."""
    params = ADAPTER.params_model.model_validate({"jobId": JOB_ID, "email": None, "maxJobs": None})
    request = ADAPTER.submit_request(params, callback_url=CALLBACK_URL, job_id="job_02")
    assert request.json == {"jobId": JOB_ID, "replyUrl": CALLBACK_URL, "replyRef": "job_02"}


def test_submit_request_without_callback_url_sends_only_reply_ref() -> None:
    """With no callback URL the request carries ``replyRef`` but no ``replyUrl``."""
    request = ADAPTER.submit_request(validate(), callback_url=None, job_id="job_03")
    assert request.json == {"jobId": JOB_ID, "replyRef": "job_03"}


def test_status_request_keeps_the_job_id_unencoded() -> None:
    """The job id goes into the GET path verbatim, ``:`` and ``@`` included."""
    request = ADAPTER.status_request(JOB_ID)
    assert request is not None
    assert request.method == "GET"
    assert request.path == f"/v1/ltxstudio/assets/{JOB_ID}"
    assert "%" not in request.path
    assert request.json is None


# --- submit responses ---------------------------------------------------------------------------


def test_submit_ok_gives_the_job_id_without_update() -> None:
    """The plain ``{jobId, generationId}`` answer gives the vendor job id and no state."""
    assert ADAPTER.parse_submit_response(200, payload("ltxstudio", "submit_ok"), {}) == SubmitResult(JOB_ID)


def test_submit_polled_completed_gives_the_result() -> None:
    """A ``pollForResult`` answer with the finished job model carries the succeeded update."""
    result = ADAPTER.parse_submit_response(200, payload("ltxstudio", "submit_polled_completed"), {})
    assert result.vendor_job_id == JOB_ID
    assert result.update == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="completed",
        vendor_job_id=JOB_ID,
        progress=100,
        outputs=(
            Output(
                url="https://storage.googleapis.com/lt-infinity-prd/artifacts/vertex-ai/…",
                mime_type="image/png",
                width=None,
                height=None,
                expires_at=EXPIRES,
            ),
        ),
        extra={"replyRef": "custom-reference-123"},
    )


def test_submit_polled_active_gives_a_running_update() -> None:
    """A ``pollForResult`` answer that is still active carries a running update."""
    result = ADAPTER.parse_submit_response(200, job(type="active", progress=30), {})
    assert result.vendor_job_id == JOB_ID
    assert result.update is not None
    assert (result.update.state, result.update.progress) == (JobState.RUNNING, 30)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body({"generationId": "gen_xyz789abc012"}), "jobId: missing"),
        (body({"jobId": ""}), "jobId: must not be empty"),
        (body({"jobId": {"id": 42}}), "jobId: expected a string, got object"),
    ],
)
def test_submit_response_without_job_id_is_a_payload_error(raw: bytes, message: str) -> None:
    """A 2xx submit answer that is neither a job id nor a job model is a :class:`PayloadError`."""
    with pytest.raises(PayloadError) as caught:
        ADAPTER.parse_submit_response(200, raw, {})
    assert message in caught.value.message


# --- callbacks and status -----------------------------------------------------------------------


def test_callback_active_is_running_with_progress() -> None:
    """``active`` maps to running and keeps the vendor's progress."""
    assert ADAPTER.parse_callback(payload("ltxstudio", "callback_active"), {}) == JobUpdate(
        state=JobState.RUNNING,
        raw_state="active",
        vendor_job_id=JOB_ID,
        progress=45,
        extra={"replyRef": "custom-reference-123"},
    )


def test_callback_completed_is_succeeded_with_the_asset() -> None:
    """``completed`` with an ``assetUrl`` is succeeded, with mime type and expiry from the artifact."""
    update = ADAPTER.parse_callback(payload("ltxstudio", "callback_completed"), {})
    assert update == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="completed",
        vendor_job_id=VIDEO_JOB_ID,
        progress=100,
        outputs=(
            Output(
                url="https://storage.googleapis.com/lt-infinity-prd/artifacts/model-serving/…",
                mime_type="video/mp4",
                expires_at=EXPIRES,
            ),
        ),
        extra={"replyRef": "custom-reference-123"},
    )
    assert update.outputs[0].to_json()["expires_at"] == "2025-06-03T02:57:57.350Z"
    assert update.error is None and update.created_at is None and update.completed_at is None


def test_callback_completed_without_asset_is_a_success_without_output() -> None:
    """``completed`` without ``assetUrl`` is a success without output (the relay keeps such a job
    running and polls for the URL), raw state kept."""
    assert ADAPTER.parse_callback(payload("ltxstudio", "callback_completed_no_asset"), {}) == JobUpdate(
        state=JobState.SUCCEEDED,
        raw_state="completed",
        vendor_job_id=JOB_ID,
        progress=100,
        extra={"replyRef": "custom-reference-123"},
    )


@pytest.mark.parametrize(
    "artifact",
    [
        None,
        {},
        {"assetUrl": ""},
        {"assetUrl": None, "expirationDateString": "1748919477350"},
        {"expirationDateString": "1748919477350", "asset": {"mimeType": "image/png"}},
    ],
)
def test_completed_with_empty_artifact_has_no_output(artifact: dict[str, Any] | None) -> None:
    """A missing, null or empty ``assetUrl`` makes ``completed`` a success without output, no anomaly."""
    update = ADAPTER.parse_callback(job(type="completed", artifact=artifact), {})
    assert (update.state, update.raw_state, update.outputs) == (JobState.SUCCEEDED, "completed", ())
    assert update.awaiting_output and update.anomalies == ()


def test_completed_artifact_without_expiry_or_mime_has_unknowns() -> None:
    """An artifact with only ``assetUrl`` gives an output whose mime type and expiry are unknown."""
    update = ADAPTER.parse_callback(job(type="completed", artifact={"assetUrl": "https://x.test/a.png"}), {})
    assert update.state is JobState.SUCCEEDED
    assert update.outputs == (Output(url="https://x.test/a.png"),)


def test_callback_failed_has_vendor_failed_error() -> None:
    """``failed`` maps to failed with code ``vendor_failed`` and the vendor's ``status.message``."""
    assert ADAPTER.parse_callback(payload("ltxstudio", "callback_failed"), {}) == JobUpdate(
        state=JobState.FAILED,
        raw_state="failed",
        vendor_job_id=JOB_ID,
        progress=0,
        error=JobError("vendor_failed", "Upscale failed"),
        extra={"replyRef": "custom-reference-123"},
    )


def test_failed_without_message_has_no_message() -> None:
    """A ``failed`` job without ``status.message`` has an error with an unknown message."""
    update = ADAPTER.parse_callback(job(type="failed"), {})
    assert update.error == JobError("vendor_failed", None)
    assert update.progress is None


def test_unknown_status_type_is_unknown_state() -> None:
    """A status word the adapter does not know gives state ``None`` and keeps the raw word."""
    update = ADAPTER.parse_callback(body({"status": {"type": "queued", "progress": 0}}), {})
    assert update == JobUpdate(state=None, raw_state="queued", progress=0)


def test_fractional_progress_is_rounded() -> None:
    """A fractional progress number is rounded to a whole percentage."""
    assert ADAPTER.parse_callback(job(type="active", progress=45.6), {}).progress == 46


def test_status_response_parses_like_the_callback() -> None:
    """A 200 ``GET assets/{jobId}`` response parses to the same update as the callback body."""
    for name in ("callback_active", "callback_completed", "callback_completed_no_asset", "callback_failed"):
        raw = payload("ltxstudio", name)
        assert ADAPTER.parse_status(200, raw) == ADAPTER.parse_callback(raw, {})


# --- malformed bodies ---------------------------------------------------------------------------

MALFORMED: list[tuple[bytes, str]] = [
    (body({}), "status: missing"),
    (body({"status": None}), "status: missing"),
    (body({"status": "completed"}), "status: expected an object, got string"),
    (body({"status": {}}), "status.type: missing"),
    (body({"status": {"type": 3}}), "status.type: expected a string, got number"),
    (body({"status": {"type": ""}}), "status.type: must not be empty"),
    (body({"status": {"type": "active"}, "jobId": ["x"]}), "jobId: expected a string, got array"),
    (body({"status": {"type": "active"}, "jobId": "x\u007fy"}), "jobId: contains a control character"),
]


ASSET = "https://x.test/a"
AUXILIARY_LEFT_OUT: list[tuple[bytes, str, str]] = [
    (job(type="active", progress="a lot"), "status.progress", '"a lot"'),
    (job(type="active", progress=True), "status.progress", "true"),
    (job(type="active", progress=150), "status.progress", "150"),
    (job(type="active", progress=-1), "status.progress", "-1"),
    (b'{"status": {"type": "active", "progress": NaN}}', "status.progress", "NaN"),
    (job(type="failed", message=["x"]), "status.message", '["x"]'),
    (job(type="completed", artifact=[]), "status.artifact", "[]"),
    (job(type="completed", artifact={"assetUrl": 7}), "status.artifact.assetUrl", "7"),
    (
        job(type="completed", artifact={"assetUrl": "javascript:alert(1)"}),
        "status.artifact.assetUrl",
        '"javascript:alert(1)"',
    ),
    (
        job(type="completed", artifact={"assetUrl": ASSET, "expirationDateString": "soon"}),
        "status.artifact.expirationDateString",
        '"soon"',
    ),
    (
        job(type="completed", artifact={"assetUrl": ASSET, "expirationDateString": "-1"}),
        "status.artifact.expirationDateString",
        '"-1"',
    ),
    (
        job(type="completed", artifact={"assetUrl": ASSET, "expirationDateString": "١٢٣"}),
        "status.artifact.expirationDateString",
        '"١٢٣"',
    ),
    (
        job(type="completed", artifact={"assetUrl": ASSET, "expirationDateString": "9" * 17}),
        "status.artifact.expirationDateString",
        '"' + "9" * 17 + '"',
    ),
    (
        job(type="completed", artifact={"assetUrl": ASSET, "expirationDateString": "9" * 16}),
        "status.artifact.expirationDateString",
        '"' + "9" * 16 + '"',
    ),
    (
        job(type="completed", artifact={"assetUrl": ASSET, "expirationDateString": {"ms": 1}}),
        "status.artifact.expirationDateString",
        '{"ms":1}',
    ),
    (
        job(type="completed", artifact={"assetUrl": ASSET, "asset": "image/png"}),
        "status.artifact.asset",
        '"image/png"',
    ),
    (
        job(type="completed", artifact={"assetUrl": ASSET, "asset": {"mimeType": 1}}),
        "status.artifact.asset.mimeType",
        "1",
    ),
    (body({"status": {"type": "active"}, "replyRef": {}}), "replyRef", "{}"),
]


@pytest.mark.parametrize(("raw", "path", "seen"), AUXILIARY_LEFT_OUT)
def test_an_unusable_auxiliary_field_is_left_out_as_an_anomaly(raw: bytes, path: str, seen: str) -> None:
    """A progress, message, expiry or asset field that cannot be used (or an asset URL that is not
    ``http(s)``) no longer fails the message: it is left out and recorded as an anomaly, the state kept."""
    for update in (ADAPTER.parse_callback(raw, {}), ADAPTER.parse_status(200, raw)):
        assert update.state is not None
        assert [(a.path, a.seen) for a in update.anomalies] == [(path, seen)]


@pytest.mark.parametrize(
    "expiry",
    [
        "1748919477350",
        1748919477350,
        1748919477350.0,
        "2025-06-03T02:57:57.350Z",
        "2025-06-03T04:57:57.350+02:00",
    ],
)
def test_expiry_is_read_as_epoch_ms_or_iso_8601(expiry: Any) -> None:
    """``expirationDateString`` as the page's epoch-ms digit string, a number of ms or an ISO-8601 time
    gives the same ``expires_at``, without an anomaly."""
    update = ADAPTER.parse_callback(
        job(type="completed", artifact={"assetUrl": ASSET, "expirationDateString": expiry}), {}
    )
    assert update.outputs == (Output(ASSET, None, expires_at=EXPIRES),) and update.anomalies == ()


def test_an_unreadable_expiry_gives_a_null_expiry_and_keeps_the_success() -> None:
    """An expiry that is neither epoch ms nor ISO 8601 gives ``expires_at: None`` and an anomaly; the
    output is still delivered."""
    update = ADAPTER.parse_callback(
        job(type="completed", artifact={"assetUrl": ASSET, "expirationDateString": "tomorrow"}), {}
    )
    assert update.state is JobState.SUCCEEDED and update.outputs == (Output(ASSET, None, expires_at=None),)
    assert [a.path for a in update.anomalies] == ["status.artifact.expirationDateString"]


@pytest.mark.parametrize(("progress", "read"), [(100.0, 100), ("50", 50), (" 45.6 ", 46)])
def test_progress_is_read_as_a_number_or_numeric_string(progress: Any, read: int) -> None:
    """``progress`` is read as an integer, float or numeric string, without an anomaly."""
    update = ADAPTER.parse_callback(job(type="active", progress=progress), {})
    assert update.progress == read and update.anomalies == ()


@pytest.mark.parametrize(
    ("job_id", "segment"),
    [
        ("3f2b9c1e-8d4a-4e6f-9b1c-2a3d4e5f6a7b", "3f2b9c1e-8d4a-4e6f-9b1c-2a3d4e5f6a7b"),
        ("8123456789", "8123456789"),
        ("ltx.2026.01", "ltx.2026.01"),
        ("a/../b", "a%2F..%2Fb"),
        ("x?y=1#z%41", "x%3Fy%3D1%23z%2541"),
        ("tâche-画像", "t%C3%A2che-%E7%94%BB%E5%83%8F"),
        ("..", "%2E%2E"),
        (JOB_ID, JOB_ID),
    ],
)
def test_job_ids_are_opaque_and_one_path_segment(job_id: str, segment: str) -> None:
    """Any job id is read from the submit answer and the callback, and the status path carries it as one
    percent-encoded segment, ``:`` and ``@`` kept as useapi shows them (RFC 3986 pchar)."""
    assert ADAPTER.parse_submit_response(200, body({"jobId": job_id}), {}).vendor_job_id == job_id
    assert (
        ADAPTER.parse_callback(body({"status": {"type": "active"}, "jobId": job_id}), {}).vendor_job_id
        == job_id
    )
    request = ADAPTER.status_request(job_id)
    assert request is not None and request.path == f"/v1/ltxstudio/assets/{segment}"


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_callback_is_a_payload_error(raw: bytes, message: str) -> None:
    """A malformed callback body raises :class:`PayloadError` whose message names what is wrong."""
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
        ADAPTER.parse_callback(body({"status": {"type": 3}}), {})
    assert caught.value.details == {"field": "status.type"}
    assert caught.value.code == "invalid_payload"


# --- upstream errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "code", "message"),
    [
        ("error_400", 400, "vendor_rejected", "Error message"),
        ("error_401", 401, "vendor_unauthorized", "Unauthorized"),
        ("error_402", 402, "insufficient_credits", "Insufficient credits"),
    ],
)
def test_submit_error_fixtures_map_to_relay_codes(name: str, status: int, code: str, message: str) -> None:
    """Each documented submit error envelope becomes an :class:`UpstreamError` with the mapped code."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(status, payload("ltxstudio", name), {})
    error = caught.value
    assert (error.code, error.message, error.http_status, error.retryable) == (code, message, status, False)


@pytest.mark.parametrize(
    ("status", "raw", "code", "message", "retryable"),
    [
        (
            404,
            b'{"error": "Job not found or has expired", "code": 404}',
            "vendor_not_found",
            "Job not found or has expired",
            False,
        ),
        (410, b'{"error": "Job has expired", "code": 410}', "vendor_expired", "Job has expired", False),
        (403, b'{"error": "Forbidden", "code": 403}', "vendor_forbidden", "Forbidden", False),
        (500, b"<html>oops</html>", "vendor_unavailable", "<html>oops</html>", True),
        (596, b'{"error": "Session broken", "code": 596}', "vendor_unavailable", "Session broken", True),
        (502, b"", "vendor_unavailable", "vendor answered HTTP 502", True),
        (400, b"\xff\xfe", "vendor_rejected", None, False),
    ],
)
def test_status_errors_map_to_relay_codes(
    status: int, raw: bytes, code: str, message: str | None, retryable: bool
) -> None:
    """A status error response becomes an :class:`UpstreamError` with the mapped code and body message."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_status(status, raw)
    error = caught.value
    assert (error.code, error.http_status, error.retryable) == (code, status, retryable)
    if message is not None:
        assert error.message == message
    else:
        assert error.message


def test_rate_limit_reads_retry_after() -> None:
    """A 429 submit answer is retryable and carries the ``Retry-After`` seconds."""
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_submit_response(
            429, b'{"error": "Too many requests", "code": 429}', {"Retry-After": "30"}
        )
    error = caught.value
    assert (error.code, error.retryable, error.retry_after) == ("rate_limited", True, 30.0)


# --- property: nothing but PayloadError ---------------------------------------------------------

STATUS_TYPES = st.sampled_from(["active", "completed", "failed", "queued"]) | JSON_VALUES
ARTIFACTS = (
    st.fixed_dictionaries(
        {},
        optional={
            "assetUrl": st.text() | JSON_VALUES,
            "expirationDateString": st.text("0123456789-", max_size=20) | JSON_VALUES,
            "asset": st.fixed_dictionaries({}, optional={"mimeType": JSON_VALUES}) | JSON_VALUES,
        },
    )
    | JSON_VALUES
)
JOB_MODELS = st.fixed_dictionaries(
    {
        "status": st.fixed_dictionaries(
            {"type": STATUS_TYPES},
            optional={"progress": JSON_VALUES, "message": JSON_VALUES, "artifact": ARTIFACTS},
        )
        | JSON_VALUES
    },
    optional={"jobId": JSON_VALUES, "replyRef": JSON_VALUES, "generationId": JSON_VALUES},
)


@settings(deadline=None, max_examples=500)
@given(JOB_MODELS)
def test_job_shaped_json_raises_only_payload_error(value: dict[str, Any]) -> None:
    """Job-model-shaped JSON with arbitrary field values parses or raises only :class:`PayloadError`."""
    check_parsers(ADAPTER, json.dumps(value).encode())
    check_submit_response(ADAPTER, 200, json.dumps(value).encode())
