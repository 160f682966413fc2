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
any other word → unknown state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from dispatch.model import JobError, JobState, JobUpdate, Output
from receiver.vendors import _useapi
from receiver.vendors.base import (
    SubmitResult,
    VendorAdapter,
    VendorRequest,
    invalid,
    json_kind,
    load_object,
    path_segment,
)

SUBMIT_PATH = "/v1/dreamina/images/upscale"
STATUS_PATH = "/v1/dreamina/images/{jobid}"

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


class DreaminaAdapter:
    """The :class:`~receiver.vendors.base.VendorAdapter` for useapi.net Dreamina (asynchronous, unsigned
    callbacks, no idempotency key: a re-sent submit starts a second job)."""

    name: ClassVar[str] = "dreamina"
    params_model: ClassVar[type[BaseModel]] = DreaminaUpscaleParams
    reserved_fields: ClassVar[frozenset[str]] = _useapi.RESERVED_FIELDS
    synchronous: ClassVar[bool] = False
    idempotent_submit: ClassVar[bool] = False
    signs_callbacks: ClassVar[bool] = False
    credential_setting: ClassVar[str] = "useapi_token"
    transient_fail_codes: ClassVar[frozenset[str]] = frozenset()
    base_url_setting: ClassVar[str] = "useapi_base_url"
    # ``j<digits><letter>-u<digits>-<region>:<address>:dreamina`` or ``...-bot:dreamina`` (VENDORS.md §2)
    job_id_pattern: ClassVar[re.Pattern[str]] = re.compile(
        r"j[0-9]{6,32}[A-Za-z]?-u[0-9]+-[A-Za-z0-9._+\-@:]{1,400}"
    )

    def auth_headers(self, credential: str) -> dict[str, str]:
        """``{"Authorization": "Bearer user:12345-abc"}``."""
        return _useapi.auth_headers(credential)

    def submit_request(self, params: BaseModel, *, callback_url: str | None, job_id: str) -> VendorRequest:
        """``POST /v1/dreamina/images/upscale`` with the fields the client set plus
        ``replyUrl=callback_url`` (when given) and ``replyRef=job_id``.

        Example JSON: ``{"jobid": "j…i-u12345-US:demo@example.com:dreamina", "upscaleResolution": "8k",
        "replyUrl": "https://relay/v1/callbacks/dreamina/t", "replyRef": "job_01"}``. Raises ``TypeError``
        if ``params`` is not :class:`DreaminaUpscaleParams`.
        """
        if not isinstance(params, DreaminaUpscaleParams):
            raise TypeError(f"expected DreaminaUpscaleParams, got {type(params).__name__}")
        body: dict[str, Any] = params.model_dump(exclude_unset=True, exclude_none=True)
        if callback_url is not None:
            body["replyUrl"] = callback_url
        body["replyRef"] = job_id
        return VendorRequest("POST", SUBMIT_PATH, json=body, headers={"Content-Type": "application/json"})

    def parse_submit_response(
        self, status_code: int, body: bytes, headers: Mapping[str, str]
    ) -> SubmitResult:
        """A 2xx body is the new job record (``{"jobid": "j…I-…:dreamina", "type": "upscale", "status":
        "created", ...}``) → ``SubmitResult(vendor_job_id=jobid, update=<running update>)``.

        Raises :class:`UpstreamError` for an error status (``404 {"error": "Source image job not found"}``
        → ``vendor_not_found``) and :class:`PayloadError` for a 2xx body without ``jobid`` or ``status``.
        """
        if not _useapi.is_success(status_code):
            raise _useapi.error_from_response(status_code, body, headers)
        data = load_object(body)
        vendor_job_id = _useapi.required_str(data, "jobid", "jobid")
        return SubmitResult(vendor_job_id, parse_job(data))

    def status_request(self, vendor_job_id: str) -> VendorRequest:
        """``GET /v1/dreamina/images/{jobid}`` with the id verbatim: its ``:`` and ``@`` stay unencoded,
        as in useapi's own examples."""
        return VendorRequest("GET", STATUS_PATH.format(jobid=path_segment(vendor_job_id, safe=":@")))

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> JobUpdate:
        """The ``replyUrl`` POST body, i.e. the job record. Raises :class:`PayloadError`."""
        return parse_job(load_object(body))

    def parse_status(self, status_code: int, body: bytes) -> JobUpdate:
        """The ``GET images/{jobid}`` response. Raises :class:`UpstreamError` for an error status
        (``410 {"error": "Job has expired"}`` → ``vendor_expired``) and :class:`PayloadError` for a body
        that is not a job record."""
        if not _useapi.is_success(status_code):
            raise _useapi.error_from_response(status_code, body)
        return parse_job(load_object(body))

    def verify_callback(self, body: bytes, headers: Mapping[str, str], credential: str | None) -> None:
        """Nothing to verify: useapi documents no callback signature."""


def parse_job(data: Mapping[str, Any]) -> JobUpdate:
    """Normalize a Dreamina job record (submit response, status response or callback).

    ``status`` is required; ``jobid``, ``type``, ``created``/``updated`` (ISO-8601), ``response.images``,
    ``error`` and ``errorDetails`` are optional but must have their documented types. ``created_at`` is
    ``created``; ``completed_at`` is ``updated`` once the job is terminal. A ``completed`` record without
    any image stays running (like LTX's out-of-sync ``completed``). ``extra`` keeps ``type`` and
    ``replyRef`` when present. Raises :class:`PayloadError` naming the field, e.g.
    ``response.images[0].width: expected an integer, got string``.
    """
    raw_state = _useapi.required_str(data, "status", "status")
    vendor_job_id = _useapi.optional_str(data, "jobid", "jobid")
    created_at = _useapi.optional_iso_time(data, "created", "created")
    updated_at = _useapi.optional_iso_time(data, "updated", "updated")
    outputs = _outputs(data)
    error_text = _useapi.optional_str(data, "error", "error")
    error_details = _useapi.optional_str(data, "errorDetails", "errorDetails")
    extra = {
        key: value
        for key in ("type", "replyRef")
        if (value := _useapi.optional_str(data, key, key)) is not None
    }

    state = _STATES.get(raw_state)
    progress: int | None = None
    error: JobError | None = None
    if state is JobState.SUCCEEDED:
        if outputs:
            progress = 100
        else:
            state = JobState.RUNNING
    elif state is JobState.FAILED:
        error = JobError(_error_code(error_text), error_details or error_text)
    return JobUpdate(
        state=state,
        raw_state=raw_state,
        vendor_job_id=vendor_job_id,
        progress=progress,
        outputs=outputs if state is JobState.SUCCEEDED else (),
        error=error,
        created_at=created_at,
        completed_at=updated_at if state is not None and state.terminal else None,
        extra=extra,
    )


def _outputs(data: Mapping[str, Any]) -> tuple[Output, ...]:
    """``response.images[*]`` as outputs (``format`` ``"jpeg"`` → ``image/jpeg``; unknown formats →
    ``None``). Raises :class:`PayloadError` for a malformed entry."""
    response = _useapi.optional_object(data, "response", "response")
    if response is None:
        return ()
    images = _useapi.optional_list(response, "images", "response.images")
    if images is None:
        return ()
    outputs = []
    for index, image in enumerate(images):
        path = f"response.images[{index}]"
        if not isinstance(image, dict):
            raise invalid(path, f"expected an object, got {json_kind(image)}")
        fmt = _useapi.optional_str(image, "format", f"{path}.format")
        outputs.append(
            Output(
                url=_useapi.required_str(image, "imageUrl", f"{path}.imageUrl"),
                mime_type=None if fmt is None else _MIME_TYPES.get(fmt.lower()),
                width=_useapi.optional_dimension(image, "width", f"{path}.width"),
                height=_useapi.optional_dimension(image, "height", f"{path}.height"),
            )
        )
    return tuple(outputs)


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
