"""APIXO Image Upscaler: ``POST /api/v1/generateTask/image-upscaler``, ``GET /api/v1/statusTask/...``.

Source: the APIXO "Image Upscaler" model page (VENDORS.md §4, seed:003), with
https://apixo.ai/docs/api-reference/webhooks, https://apixo.ai/docs/api-reference/status-task and
https://apixo.ai/docs/api-reference/response-format.

- Auth: ``Authorization: Bearer <key>``. No idempotency key: a re-sent submit starts a second task, yet
  the page says to retry a submit answered 429, 500, 502 or 504 with backoff, so the relay does (through
  its submit outbox; ``submit_retry_statuses``); other 5xx stay ambiguous and are not re-sent.
- Transient failures: ``failCode`` ``RateLimited``, ``Timeout`` and ``Unknown error`` ("Retry with
  backoff", "Retry or use callback mode") resubmit the job after a backoff (``transient_fail_codes``).
- Submit ``{"request_type": "callback", "callback_url": "https://…", "input": {"image_urls": [URL],
  "resolution": "4k", "output_format": "jpg"}}`` → ``{"code": 200, "message": "success",
  "data": {"taskId": "task_12345678"}}``.
- Status answers and callbacks share one envelope ``{code, message, data: {taskId, state, resultJson?,
  failCode?, failMsg?, createTime?, completeTime?, costTime?}}``. The envelope's ``code``/``message`` say
  200/"success" even for a failed task, so only ``data`` decides the outcome. ``resultJson`` is a JSON
  *string* ``'{"resultUrls": [URL]}'`` on the page; it is also read as an object, and every URL of
  ``resultUrls`` becomes an output. A success whose ``resultJson`` is ``""``, absent or unreadable has
  no output yet (``JobUpdate(state=SUCCEEDED, outputs=())``: the relay keeps polling for it). Times are
  epoch **milliseconds** (integers, floats or digit strings are read); result URLs expire 24 h after
  completion. ``pending → queued``, ``processing → running``, ``success → succeeded``,
  ``failed → failed`` (code ``failCode``, opaque and possibly with spaces such as ``"Unknown error"``).
- The task id is opaque (the page shows ``task_12345678``; a UUID or a number works the same) and goes
  into the status URL as an encoded query value.
- What carries the outcome (``data.taskId``, ``data.state``, the result URLs, ``failCode``) is read
  strictly; every other field best-effort: a value that cannot be used is left out as an anomaly.
- Cost: "Image Upscaler is billed per submitted image at ``$0.01 / image``" whatever the options
  (seed:003 "Billing"), and no body reports a price: every task costs :data:`PRICE`, ``Cost(0.01,
  "usd")``, a resubmitted job once per task. ``costTime`` is not a cost but the task's compute time in
  **milliseconds** (seed:003: ``41388`` between ``createTime`` ``1767965610929`` and ``completeTime``
  ``1767965652317``) → ``JobUpdate.compute_ms``.
- Callbacks are not signed; the relay's per-job callback token authenticates them.
- Polling (seed:003 "Latency and polling": first poll 10-15 s after task creation, then every 5-10 s;
  10 s or longer for 8k): the polling fallback asks 12 s after the submit, then every 10 s for the first
  minute, then backs off (``poll_timing``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import Cost, JobError, JobState, JobUpdate, Output
from receiver.vendors import _fields as f
from receiver.vendors.base import (
    AdapterBase,
    PollTiming,
    SubmitResult,
    VendorAdapter,
    VendorRequest,
    error_message,
    expect_params,
    is_success,
    load_object,
    mime_from_url,
    upstream_error,
)

MODEL_ID = "image-upscaler"
SUBMIT_PATH = f"/api/v1/generateTask/{MODEL_ID}"
STATUS_PATH = f"/api/v1/statusTask/{MODEL_ID}"
#: Result URLs stop working 24 h after ``completeTime`` (https://apixo.ai/docs/api-reference/response-format).
RESULT_TTL = timedelta(hours=24)
#: What each submitted image is billed: "billed per submitted image at $0.01 / image" (seed:003 "Billing").
PRICE = Cost(0.01, "usd")

_STRICT = ConfigDict(extra="forbid", strict=True)
_RESOLUTIONS = ("2k", "4k", "8k")
_FORMATS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp"}


def _image_url(value: str) -> str:
    """``value`` when it is a non-empty ``http://`` or ``https://`` URL with a host, without whitespace or
    control characters (``"https://example.com/input.jpg"``); else ``ValueError``, so ``"not a url"`` or
    ``"ftp://x"`` is a 422 naming ``params.input.image_urls.0``. seed:003: "exactly 1 non-empty public
    image URL"; APIXO downloads it, so no other scheme can work."""
    if not value.strip():
        raise ValueError("must not be an empty string")
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError("must be an http(s) URL without whitespace or control characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ValueError("must be an http(s) URL with a host, e.g. https://example.com/input.jpg") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("must be an http(s) URL with a host, e.g. https://example.com/input.jpg")
    return value


#: One source image: an absolute ``http(s)://host/…`` URL (see :func:`_image_url`).
ImageUrl = Annotated[str, AfterValidator(_image_url)]


class ApixoInput(BaseModel):
    """The upscaler's ``input`` object.

    Example: ``{"image_urls": ["https://example.com/input.jpg"], "resolution": "8K",
    "output_format": "jpeg"}`` → resolution ``"8k"``, output_format ``"jpg"``.

    - ``mode``: only ``"image-to-image"`` (APIXO's default when omitted).
    - ``image_urls``: exactly one non-empty public image URL (seed:003), each an ``http://`` or
      ``https://`` URL with a host; a bad element is refused at ``image_urls.0``.
    - ``resolution``: ``2k``, ``4k`` (default) or ``8k``, any case, stored lower-case.
    - ``output_format``: ``jpg`` (default), ``png`` or ``webp``; ``jpeg`` is stored as ``jpg``.
    """

    model_config = _STRICT

    mode: Literal["image-to-image"] | None = None
    image_urls: list[ImageUrl]
    resolution: str = "4k"
    output_format: str = "jpg"

    @field_validator("image_urls")
    @classmethod
    def _one_image(cls, value: list[str]) -> list[str]:
        if len(value) != 1:
            raise ValueError(f"must contain exactly 1 image URL, got {len(value)}")
        return value

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, value: str) -> str:
        if value.lower() not in _RESOLUTIONS:
            raise ValueError("must be one of '2k', '4k', '8k' (any case)")
        return value.lower()

    @field_validator("output_format")
    @classmethod
    def _output_format(cls, value: str) -> str:
        if value.lower() not in _FORMATS:
            raise ValueError("must be one of 'jpg', 'png', 'webp' ('jpeg' is read as 'jpg')")
        return _FORMATS[value.lower()]


class ApixoUpscaleRequest(BaseModel):
    """The client's ``params`` for APIXO: ``{"input": {...}}`` (see :class:`ApixoInput`).
    ``request_type`` and ``callback_url`` belong to the relay."""

    model_config = _STRICT

    input: ApixoInput


_STATES = {
    "pending": JobState.QUEUED,
    "processing": JobState.RUNNING,
    "success": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
}


def _result_urls(data: dict[str, Any], notes: f.Notes) -> list[str]:
    """The output URLs of a success: ``resultJson`` (a JSON string, or already an object) holding
    ``{"resultUrls": [URL, ...]}``, every ``http(s)`` URL kept in order. ``""``, absent or ``null``
    gives ``[]`` (no output yet); what cannot be read, or a URL that is not ``http(s)``, is left out
    with an anomaly in ``notes``. Never raises."""
    raw = data.get("resultJson")
    path = "data.resultJson"
    if raw is None or raw == "":
        return []
    parsed: Any = raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            notes.add(path, raw)
            return []
    if isinstance(parsed, dict):
        path, parsed = f"{path}.resultUrls", parsed.get("resultUrls")
    if isinstance(parsed, str):  # a single URL where an array was documented
        parsed = [parsed]
    if not isinstance(parsed, list):
        notes.add(path, parsed)
        return []
    urls = [notes.url(url, f"{path}[{index}]") for index, url in enumerate(parsed)]
    return [url for url in urls if url is not None]


def _job_update(obj: dict[str, Any]) -> JobUpdate:
    """One normalized update from a status answer or callback body (same envelope). ``cost`` is the
    task's :data:`PRICE` (it was submitted, so it is billed); ``costTime`` (the task's compute time in
    **milliseconds**, seed:003) is kept in ``extra`` as read and is ``compute_ms`` (``41388``). Raises
    :class:`PayloadError` when ``data``, ``data.taskId`` or ``data.state`` is missing or mistyped; any
    other field that cannot be used is left out (``JobUpdate.anomalies``)."""
    notes = f.Notes()
    data = f.obj(obj, "data", required=True)
    task_id = f.job_id(data, "taskId", at="data", required=True)
    raw_state = f.text(data, "state", at="data", required=True)
    state = _STATES.get(raw_state)
    created_at = notes.read(f.epoch_ms, data, "createTime", at="data")
    completed_at = notes.read(f.epoch_ms, data, "completeTime", at="data")
    cost_ms = notes.read(f.number, data, "costTime", at="data")
    fail_code = _fail_code(data, notes)
    fail_message = notes.read(f.text, data, "failMsg", at="data")
    extra: dict[str, Any] = {} if cost_ms is None else {"costTime": cost_ms}

    outputs: tuple[Output, ...] = ()
    error: JobError | None = None
    progress: int | None = None
    if state is JobState.SUCCEEDED:
        expires_at = None
        if completed_at is not None:
            try:
                expires_at = completed_at + RESULT_TTL
            except OverflowError:
                expires_at = None
        urls = _result_urls(data, notes)
        outputs = tuple(Output(url, mime_from_url(url), expires_at=expires_at) for url in urls)
        progress = 100
    elif state is JobState.FAILED:
        error = JobError(fail_code or "vendor_failed", fail_message)
    return JobUpdate(
        state=state,
        raw_state=raw_state,
        vendor_job_id=task_id,
        progress=progress,
        outputs=outputs,
        error=error,
        created_at=created_at,
        completed_at=completed_at,
        extra=extra,
        cost=PRICE,
        compute_ms=None if cost_ms is None or not 0 <= cost_ms < 2**53 else round(cost_ms),
        anomalies=notes.anomalies,
    )


def _fail_code(data: dict[str, Any], notes: f.Notes) -> str | None:
    """``failCode`` as text (opaque: ``"Unknown error"``; a number is read as its digits); another type
    is left out as an anomaly, so the failure keeps the relay's ``vendor_failed``."""
    code = data.get("failCode")
    if isinstance(code, int | float) and not isinstance(code, bool):
        return str(code)
    return notes.read(f.text, data, "failCode", at="data")


def _error_text(body: bytes) -> str | None:
    """``{"code": 400, "message": "Invalid request", "data": {"error": "Missing …"}}`` →
    ``"Invalid request: Missing …"``; otherwise :func:`base.error_message`. Never raises."""
    try:
        data = load_object(body)
    except PayloadError:
        data = {}
    message = data.get("message")
    inner = data.get("data")
    detail = inner.get("error") if isinstance(inner, dict) else None
    if isinstance(message, str) and message and isinstance(detail, str) and detail:
        return f"{message}: {detail}"
    try:
        return error_message(body)
    except (ValueError, RecursionError):
        return body[:200].decode("utf-8", "replace").strip() or None


def _envelope_error(obj: dict[str, Any], headers: Mapping[str, str] | None) -> UpstreamError | None:
    """An error for an HTTP 2xx envelope whose ``code`` is an integer other than 200, else ``None``."""
    code = obj.get("code")
    if isinstance(code, bool) or not isinstance(code, int) or code == 200:
        return None
    message = obj.get("message")
    return upstream_error(code, message if isinstance(message, str) and message else None, headers)


class ApixoAdapter(AdapterBase):
    """APIXO Image Upscaler: async, unsigned callbacks (one per task, retried up to 3 times)."""

    name: ClassVar[str] = "apixo"
    params_model: ClassVar[type[BaseModel]] = ApixoUpscaleRequest
    params_example: ClassVar[dict[str, Any]] = {
        "input": {"image_urls": ["https://example.com/input.jpg"], "resolution": "4k", "output_format": "jpg"}
    }
    reserved_fields: ClassVar[frozenset[str]] = frozenset({"request_type", "callback_url"})
    credential_setting: ClassVar[str] = "apixo_api_key"
    base_url_setting: ClassVar[str] = "apixo_base_url"
    # failCodes seed 003 answers with "Retry with backoff" / "Retry or use callback mode" (resubmitted
    # after RELAY_RESUBMIT_BACKOFF, doubling; the relay already uses callback mode)
    transient_fail_codes: ClassVar[frozenset[str]] = frozenset({"RateLimited", "Timeout", "Unknown error"})
    # seed 003 "HTTP errors": 500 "Retry with backoff", 502 "Retry with backoff", 504 "Retry or use
    # callback mode" (429 "Retry with exponential backoff" is retried for every vendor)
    submit_retry_statuses: ClassVar[frozenset[int]] = frozenset({500, 502, 504})
    # seed:003 "Latency and polling": "Normal workloads | 10s-15s after task creation | 5s-10s", "8k or
    # high-concurrency workloads | ... | If polling, use 10s or longer": first poll 12 s after the task is
    # created, then every 10 s (both rows at once) for the first minute (the seed's example task completes
    # 41.4 s after its createTime), then backing off x1.5 per poll up to 60 s
    poll_timing: ClassVar[PollTiming | None] = PollTiming(first=12.0, every=10.0, steady_for=60.0)
    price: ClassVar[Cost | None] = PRICE

    def submit_request(self, params: BaseModel, *, callback_url: str | None, job_id: str) -> VendorRequest:
        """``POST /api/v1/generateTask/image-upscaler`` with ``{"request_type": "callback",
        "callback_url": callback_url, "input": {...}}`` (``"async"`` and no URL when ``callback_url`` is
        ``None``). ``job_id`` is unused: APIXO has no idempotency key.

        Raises ``TypeError`` if ``params`` is not an :class:`ApixoUpscaleRequest`.
        """
        params = expect_params(params, ApixoUpscaleRequest)
        body: dict[str, Any] = {"request_type": "async"}
        if callback_url is not None:
            body = {"request_type": "callback", "callback_url": callback_url}
        body["input"] = params.input.model_dump(exclude_none=True)
        return VendorRequest("POST", SUBMIT_PATH, json=body)

    def parse_submit_response(
        self, status_code: int, body: bytes, headers: Mapping[str, str]
    ) -> SubmitResult:
        """``{"code": 200, "message": "success", "data": {"taskId": "task_12345678"}}`` →
        ``SubmitResult("task_12345678", None)``; the id is opaque (a UUID, ``"8123456789"`` or
        ``12345`` → ``"12345"`` work the same).

        Raises :class:`UpstreamError` for a non-2xx status, or for a 2xx envelope without ``taskId``
        whose ``code`` is not 200 (mapped like an HTTP status); :class:`PayloadError` for any other 2xx
        body without a usable ``data.taskId`` (not a string or integer, over 512 characters, control
        characters).
        """
        if not is_success(status_code):
            raise upstream_error(status_code, _error_text(body), headers)
        obj = load_object(body)
        data = obj.get("data")
        if isinstance(data, dict) and data.get("taskId") not in (None, ""):
            return SubmitResult(f.job_id(data, "taskId", at="data", required=True), None)
        envelope_error = _envelope_error(obj, headers)
        if envelope_error is not None:
            raise envelope_error
        raise f.invalid("data.taskId", "missing from the submit response (expected a non-empty string)")

    def status_request(self, vendor_job_id: str) -> VendorRequest:
        """``GET /api/v1/statusTask/image-upscaler?taskId=<id>`` (seed:003), the id percent-encoded as
        one query value by httpx (``x?y=1`` → ``taskId=x%3Fy%3D1``, ``a/../b`` → ``taskId=a%2F..%2Fb``)."""
        return VendorRequest("GET", STATUS_PATH, query={"taskId": vendor_job_id})

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> JobUpdate:
        """A callback body (same envelope as a status answer), e.g. ``{"code": 200, "data": {"taskId":
        "task_abc123xyz", "state": "failed", "failCode": "CONTENT_VIOLATION", "failMsg": "…",
        "createTime": 1704067200000, "completeTime": 1704067205000}}`` → failed, code
        ``CONTENT_VIOLATION``. The envelope ``code`` is ignored. Raises :class:`PayloadError`."""
        return _job_update(load_object(body))

    def parse_status(self, status_code: int, body: bytes) -> JobUpdate:
        """A status answer, e.g. ``data.state == "success"`` with ``resultJson``
        ``'{"resultUrls":["https://file.apixo.ai/upscaled-image.jpg"]}'`` → succeeded, progress 100, one
        ``image/jpeg`` output expiring 24 h after ``completeTime``.

        Raises :class:`UpstreamError` for a non-2xx status or a 2xx envelope with no ``data`` object and
        a ``code`` other than 200; :class:`PayloadError` for a body that cannot be parsed.
        """
        if not is_success(status_code):
            raise upstream_error(status_code, _error_text(body), None)
        obj = load_object(body)
        if not isinstance(obj.get("data"), dict):
            envelope_error = _envelope_error(obj, None)
            if envelope_error is not None:
                raise envelope_error
        return _job_update(obj)


ADAPTER: VendorAdapter = ApixoAdapter()
