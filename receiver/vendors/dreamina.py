"""useapi.net Dreamina image upscale: ``POST /v1/dreamina/images/upscale``.

Source: https://useapi.net/docs/api-dreamina-v1/post-dreamina-images-upscale (VENDORS.md §2) and the
job record at https://www.useapi.net/docs/api-dreamina-v1/get-dreamina-images-jobid. The submit response,
``GET /v1/dreamina/images/{jobid}`` and (by inference, VENDORS.md §2 "Callback") the ``replyUrl`` callback
all carry the job record::

    {"jobid": "j0302140630123456789I-u12345-US:demo@example.com:dreamina", "type": "upscale",
     "status": "completed", "created": "2026-03-02T14:06:30.123Z", "updated": "2026-03-02T14:07:02.456Z",
     "response": {"images": [{"imageUrl": "https://p9-sign.douyinpic.com/…", "width": 3840,
                              "height": 2160, "format": "jpeg"}]}}

Normalization (VENDORS.md §6): ``created`` → running; ``completed`` → succeeded with one output per
``response.images`` entry (one for an ``upscale`` job, up to four for an ``image`` generation job);
``failed`` → failed (code from ``error`` such as ``"fail_code: 2043"``, message ``errorDetails``);
any other word → unknown state. Cost: ``response.forecastCost`` (seed:001) is useapi's credit *forecast*
(``0`` in the examples), not a bill → ``Cost(0.0, "credits", estimate=True)``; no body says what was
billed; a non-numeric value is left out as an anomaly.
Polling: seed:001's example polls every 10 s; so does the polling fallback, 10 s after the submit and
then every 10 s for the first minute, then backing off (``poll_timing``).

Read liberally (issue 20): only ``status``, the job id and each image's ``imageUrl`` (which must be
``http(s)``) carry the outcome; numbers (``width``, ``height``, ``forecastCost``) are read as integers,
floats or numeric strings, and any field that cannot be used is left out as an anomaly. A ``completed``
record without any usable image URL is succeeded without outputs (the relay keeps polling for it). The
job id is opaque and goes into the status path percent-encoded except ``:`` and ``@``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from dispatch.model import Cost, JobError, JobState, JobUpdate, Output
from receiver.vendors import _fields as f
from receiver.vendors._useapi import UseapiAdapter
from receiver.vendors.base import PollTiming, SubmitResult, VendorAdapter

SUBMIT_PATH = "/v1/dreamina/images/upscale"
STATUS_PATH = "/v1/dreamina/images/{job_id}"

_STATES = {"created": JobState.RUNNING, "completed": JobState.SUCCEEDED, "failed": JobState.FAILED}
_MIME_TYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_MAX_CODE_LENGTH = 64


class DreaminaUpscaleParams(BaseModel):
    """The client's Dreamina upscale fields, validated strictly (unknown fields are refused, so is the
    relay-owned ``replyUrl``/``replyRef``). Only fields the client sets are sent; useapi applies the
    defaults shown here.

    Example: ``{"jobid": "j0302140530123456789i-u12345-US:demo@example.com:dreamina", "imageIndex": 0,
    "upscaleResolution": "4k"}``.

    - ``jobid`` (lower-case ``id``): a *completed* ``POST /images`` generation job (not an image URL).
    - ``imageIndex``: 0-3, which of that job's up to four images to upscale.
    - ``upscaleResolution``: ``"2k"``, ``"4k"`` or ``"8k"``.
    - ``originalImageStrength``, ``detailStrength``: numbers 0-1 (integers 0 and 1 allowed).
    - ``maxJobs``: 1-50 concurrent jobs for this request.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    jobid: str = Field(min_length=1)
    imageIndex: int = Field(default=0, ge=0, le=3)
    upscaleResolution: Literal["2k", "4k", "8k"] = "4k"
    originalImageStrength: float = Field(default=0.65, ge=0, le=1)
    detailStrength: float = Field(default=0.5, ge=0, le=1)
    maxJobs: int | None = Field(default=None, ge=1, le=50)


class DreaminaAdapter(UseapiAdapter):
    """The :class:`~receiver.vendors.base.VendorAdapter` for useapi.net Dreamina: a useapi adapter whose
    submit answer is already the job record (``status: "created"``), which reports a credit forecast."""

    name: ClassVar[str] = "dreamina"
    params_model: ClassVar[type[BaseModel]] = DreaminaUpscaleParams
    params_example: ClassVar[dict[str, Any]] = {
        "jobid": "j0302140530123456789i-u12345-US:demo@example.com:dreamina",
        "imageIndex": 0,
        "upscaleResolution": "4k",
    }
    cost_field: ClassVar[str | None] = "response.forecastCost"
    # seed:001's own example polls ``GET /images/{jobid}`` every 10 s (``setTimeout(r, 10000)``,
    # ``time.sleep(10)``): first poll 10 s after the submit, then every 10 s for the first minute (the
    # published image job completes 36.7 s after ``created``), then backing off x1.5 per poll up to 60 s
    poll_timing: ClassVar[PollTiming | None] = PollTiming(first=10.0, every=10.0, steady_for=60.0)
    submit_path: ClassVar[str] = SUBMIT_PATH
    status_path: ClassVar[str] = STATUS_PATH

    def submit_result(self, data: dict[str, Any]) -> SubmitResult:
        """A 2xx body is the new job record (``{"jobid": "j…I-…:dreamina", "type": "upscale", "status":
        "created", ...}``) → ``SubmitResult(vendor_job_id=jobid, update=<running update>)``. Raises
        :class:`PayloadError` for a body without ``jobid`` or ``status`` (``jobid: missing``)."""
        vendor_job_id = f.job_id(data, "jobid", required=True)
        return SubmitResult(vendor_job_id, parse_job(data))

    def parse_job(self, data: Mapping[str, Any]) -> JobUpdate:
        """See :func:`parse_job`."""
        return parse_job(data)


def parse_job(data: Mapping[str, Any]) -> JobUpdate:
    """Normalize a Dreamina job record (submit response, status response or callback).

    ``status`` is required and ``jobid`` must be a usable id when present; ``type``,
    ``created``/``updated`` (ISO-8601), ``response.images``, ``response.forecastCost``, ``error`` and
    ``errorDetails`` are read best-effort (a value that cannot be used is left out and listed in
    ``JobUpdate.anomalies``). ``created_at`` is ``created``; ``completed_at`` is ``updated`` once the
    job is terminal. A ``completed`` record without any usable image is ``succeeded`` without outputs
    (like LTX's out-of-sync ``completed``: the relay keeps the job running). ``cost`` is
    ``response.forecastCost`` in credits as an ``estimate`` (useapi's forecast, seed:001), whatever the
    state. ``extra``
    keeps ``type`` and ``replyRef`` when present. Raises :class:`PayloadError` naming the field, e.g.
    ``status: missing``.
    """
    notes = f.Notes()
    raw_state = f.text(data, "status", required=True)
    vendor_job_id = f.job_id(data, "jobid")
    created_at = notes.read(f.iso_time, data, "created")
    updated_at = notes.read(f.iso_time, data, "updated")
    response = notes.read(f.obj, data, "response")
    state = _STATES.get(raw_state)
    outputs = () if response is None or state is not JobState.SUCCEEDED else _outputs(response, notes)
    forecast = None if response is None else notes.read(f.number, response, "forecastCost", at="response")
    error_text = _error_text(data, notes)
    error_details = notes.read(f.text, data, "errorDetails")
    extra = {key: value for key in ("type", "replyRef") if (value := notes.read(f.text, data, key))}

    progress: int | None = None
    error: JobError | None = None
    if state is JobState.SUCCEEDED and outputs:
        progress = 100
    elif state is JobState.FAILED:
        error = JobError(_error_code(error_text), error_details or error_text)
    return JobUpdate(
        state=state,
        raw_state=raw_state,
        vendor_job_id=vendor_job_id,
        progress=progress,
        outputs=outputs,
        error=error,
        created_at=created_at,
        completed_at=updated_at if state is not None and state.terminal else None,
        extra=extra,
        cost=None if forecast is None else Cost(forecast, "credits", estimate=True),  # a forecast, not a bill
        anomalies=notes.anomalies,
    )


def _outputs(response: Mapping[str, Any], notes: f.Notes) -> tuple[Output, ...]:
    """``response.images[*]`` as outputs (``format`` ``"jpeg"`` → ``image/jpeg``; unknown formats →
    ``None``). An entry that is not an object or has no ``http(s)`` ``imageUrl`` is left out with an
    anomaly, and so is a mistyped ``width``, ``height`` or ``format`` (the output keeps ``None``)."""
    images = notes.read(f.array, response, "images", at="response")
    if images is None:
        return ()
    outputs = []
    for index, image in enumerate(images):
        path = f"response.images[{index}]"
        if not isinstance(image, dict):
            notes.add(path, image)
            continue
        url = notes.url(image.get("imageUrl"), f"{path}.imageUrl")
        if url is None:
            continue
        fmt = notes.read(f.text, image, "format", at=path)
        outputs.append(
            Output(
                url=url,
                mime_type=None if fmt is None else _MIME_TYPES.get(fmt.lower()),
                width=notes.read(f.dimension, image, "width", at=path),
                height=notes.read(f.dimension, image, "height", at=path),
            )
        )
    return tuple(outputs)


def _error_text(data: Mapping[str, Any], notes: f.Notes) -> str | None:
    """The record's ``error`` (``"fail_code: 2043"``); a number is read as its digits, another type is
    left out as an anomaly."""
    error = data.get("error")
    if isinstance(error, int | float) and not isinstance(error, bool):
        return str(error)
    return notes.read(f.text, data, "error")


def _error_code(error: str | None) -> str:
    """The vendor's ``error`` kept as the code when it is short and on one line (``"fail_code: 2043"``,
    ``"Cancelled by user"``), else ``"vendor_failed"``."""
    if error is None:
        return "vendor_failed"
    error = error.strip()
    if not error or len(error) > _MAX_CODE_LENGTH or not error.isprintable():
        return "vendor_failed"
    return error


ADAPTER: VendorAdapter = DreaminaAdapter()
"""The module's adapter instance, as registered by the vendor registry."""
