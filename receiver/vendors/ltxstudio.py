"""useapi.net LTX Studio image upscale: ``POST /v1/ltxstudio/images/upscale``.

Source: https://useapi.net/docs/api-ltxstudio-v1/post-ltxstudio-images-upscale (VENDORS.md §1) and
its job model at https://useapi.net/docs/api-ltxstudio-v1/get-ltxstudio-assets-jobId. useapi has retired
the LTX Studio API (page stamp March 9, 2026), so expect submits to fail unless useapi re-enables it.

The callback (to ``replyUrl``) and ``GET /v1/ltxstudio/assets/{jobId}`` both carry the job model::

    {"status": {"type": "completed", "progress": 100,
                "artifact": {"assetUrl": "https://storage.googleapis.com/…",
                             "expirationDateString": "1748919477350",
                             "asset": {"mimeType": "image/png", ...}}},
     "jobId": "email:demo@example.com:8b45…-type:image", "replyRef": "job_…"}

Normalization (VENDORS.md §6): ``active`` → running; ``completed`` with ``artifact.assetUrl`` →
succeeded; ``completed`` without it → still running (the docs warn the two can be out of sync);
``failed`` → failed (``vendor_failed``, message ``status.message``); any other word → unknown state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from dispatch.model import JobError, JobState, JobUpdate, Output
from receiver.vendors import _useapi
from receiver.vendors.base import (
    SubmitResult,
    VendorAdapter,
    VendorRequest,
    invalid,
    load_object,
    path_segment,
)

SUBMIT_PATH = "/v1/ltxstudio/images/upscale"
STATUS_PATH = "/v1/ltxstudio/assets/{jobId}"
POLL_ATTEMPT_SECONDS = 3.0  # seed 000: each pollForResult attempt waits 3 seconds
POLL_MARGIN_SECONDS = 15.0  # network and useapi's own overhead on top of the attempts

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATES = {"active": JobState.RUNNING, "completed": JobState.SUCCEEDED, "failed": JobState.FAILED}


class LtxUpscaleParams(BaseModel):
    """The client's LTX Studio upscale fields, validated strictly (unknown fields are refused, so is
    the relay-owned ``replyUrl``/``replyRef``).

    Example: ``{"jobId": "email:demo@example.com:7a34…-type:image", "pollForResult": 10}``.

    - ``jobId``: id of a *completed* ``images/create`` or ``images/edit`` job (not an image URL).
    - ``email``: the linked LTX account; required by useapi only when more than one is configured.
    - ``pollForResult``: 1-20 attempts of 3 seconds each that useapi waits before answering (seed:000,
      "Supported values: 1-20").
    - ``maxJobs``: a positive integer overriding the account's maximum of concurrent jobs. seed:000 states
      no range for this per-request override (VENDORS.md §1 Submit), so no upper cap is invented here;
      useapi refuses a value it does not support with its ``400 {"error": …}`` envelope.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    jobId: str = Field(min_length=1)
    email: str | None = Field(default=None, min_length=1)
    pollForResult: int | None = Field(default=None, ge=1, le=20)
    maxJobs: int | None = Field(default=None, ge=1)


class LtxStudioAdapter:
    """The :class:`~receiver.vendors.base.VendorAdapter` for useapi.net LTX Studio (asynchronous,
    unsigned callbacks, no idempotency key: a re-sent submit starts a second job)."""

    name: ClassVar[str] = "ltxstudio"
    params_model: ClassVar[type[BaseModel]] = LtxUpscaleParams
    reserved_fields: ClassVar[frozenset[str]] = _useapi.RESERVED_FIELDS
    synchronous: ClassVar[bool] = False
    idempotent_submit: ClassVar[bool] = False
    signs_callbacks: ClassVar[bool] = False
    credential_setting: ClassVar[str] = "useapi_token"
    transient_fail_codes: ClassVar[frozenset[str]] = frozenset()
    base_url_setting: ClassVar[str] = "useapi_base_url"
    # ``email:<address>-job:<uuid>-type:image`` (VENDORS.md §1: the docs obfuscate the middle, so the
    # address part is any run of address characters, ``:`` and ``@``)
    job_id_pattern: ClassVar[re.Pattern[str]] = re.compile(
        r"email:[A-Za-z0-9._+\-@:]{1,400}-type:(?:image|video)"
    )

    def auth_headers(self, credential: str) -> dict[str, str]:
        """``{"Authorization": "Bearer user:12345-abc"}``."""
        return _useapi.auth_headers(credential)

    def submit_request(self, params: BaseModel, *, callback_url: str | None, job_id: str) -> VendorRequest:
        """``POST /v1/ltxstudio/images/upscale`` with the fields the client set plus
        ``replyUrl=callback_url`` (when given) and ``replyRef=job_id``.

        Example JSON: ``{"jobId": "email:…-type:image", "replyUrl": "https://relay/v1/callbacks/ltxstudio/t",
        "replyRef": "job_01"}``. Raises ``TypeError`` if ``params`` is not :class:`LtxUpscaleParams`.

        With ``pollForResult: n`` useapi holds the answer for up to 3 s per attempt ("each attempt waits
        3 seconds, up to 60 seconds total max", seed 000), so the request's read timeout is
        ``3 * n + 15`` seconds (at least ``RELAY_VENDOR_TIMEOUT``): the relay does not give up on an
        answer useapi is still allowed to be preparing.
        """
        if not isinstance(params, LtxUpscaleParams):
            raise TypeError(f"expected LtxUpscaleParams, got {type(params).__name__}")
        body: dict[str, Any] = params.model_dump(exclude_unset=True, exclude_none=True)
        if callback_url is not None:
            body["replyUrl"] = callback_url
        body["replyRef"] = job_id
        timeout = (
            POLL_ATTEMPT_SECONDS * params.pollForResult + POLL_MARGIN_SECONDS
            if params.pollForResult
            else None
        )
        return VendorRequest(
            "POST", SUBMIT_PATH, json=body, headers={"Content-Type": "application/json"}, timeout=timeout
        )

    def parse_submit_response(
        self, status_code: int, body: bytes, headers: Mapping[str, str]
    ) -> SubmitResult:
        """A 2xx body is ``{"jobId": "email:…-type:image", "generationId": "gen_…"}`` →
        ``SubmitResult(vendor_job_id=jobId)``, or, when ``pollForResult`` saw the job finish, the full job
        model → ``SubmitResult(vendor_job_id=jobId, update=<its update>)``.

        Raises :class:`UpstreamError` for an error status (``402 {"error": "Insufficient credits"}`` →
        ``insufficient_credits``) and :class:`PayloadError` for a 2xx body that is neither shape.
        """
        if not _useapi.is_success(status_code):
            raise _useapi.error_from_response(status_code, body, headers)
        data = load_object(body)
        if data.get("status") is not None:
            update = parse_job(data)
            return SubmitResult(update.vendor_job_id, update)
        return SubmitResult(_useapi.required_str(data, "jobId", "jobId"))

    def status_request(self, vendor_job_id: str) -> VendorRequest:
        """``GET /v1/ltxstudio/assets/{jobId}`` with the id verbatim: its ``:`` and ``@`` stay unencoded,
        as in useapi's own examples."""
        return VendorRequest("GET", STATUS_PATH.format(jobId=path_segment(vendor_job_id, safe=":@")))

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> JobUpdate:
        """The ``replyUrl`` POST body, i.e. the job model. Raises :class:`PayloadError`."""
        return parse_job(load_object(body))

    def parse_status(self, status_code: int, body: bytes) -> JobUpdate:
        """The ``GET assets/{jobId}`` response. Raises :class:`UpstreamError` for an error status
        (``404 "Job not found or has expired"`` → ``vendor_not_found``, ``410`` → ``vendor_expired``) and
        :class:`PayloadError` for a body that is not a job model."""
        if not _useapi.is_success(status_code):
            raise _useapi.error_from_response(status_code, body)
        return parse_job(load_object(body))

    def verify_callback(self, body: bytes, headers: Mapping[str, str], credential: str | None) -> None:
        """Nothing to verify: useapi documents no callback signature."""


def parse_job(data: Mapping[str, Any]) -> JobUpdate:
    """Normalize an LTX job model (callback, status response or polled submit response).

    ``status`` and ``status.type`` are required; everything else is optional but must have its documented
    type. ``extra`` keeps ``replyRef`` and ``generationId`` when present. Raises :class:`PayloadError`
    naming the field, e.g. ``status.progress: expected a number, got string``.
    """
    status = _useapi.required_object(data, "status", "status")
    raw_state = _useapi.required_str(status, "type", "status.type")
    progress = _useapi.optional_percent(status, "progress", "status.progress")
    message = _useapi.optional_str(status, "message", "status.message")
    output = _artifact_output(status)
    vendor_job_id = _useapi.optional_str(data, "jobId", "jobId")
    extra = {
        key: value
        for key in ("replyRef", "generationId")
        if (value := _useapi.optional_str(data, key, key)) is not None
    }

    state = _STATES.get(raw_state)
    outputs: tuple[Output, ...] = ()
    error: JobError | None = None
    if state is JobState.SUCCEEDED:
        if output is None:
            state = JobState.RUNNING
        else:
            progress, outputs = 100, (output,)
    elif state is JobState.FAILED:
        error = JobError("vendor_failed", message)
    return JobUpdate(
        state=state,
        raw_state=raw_state,
        vendor_job_id=vendor_job_id,
        progress=progress,
        outputs=outputs,
        error=error,
        extra=extra,
    )


def _artifact_output(status: Mapping[str, Any]) -> Output | None:
    """``status.artifact`` as an :class:`Output`, or ``None`` when there is no ``assetUrl`` yet."""
    artifact = _useapi.optional_object(status, "artifact", "status.artifact")
    if artifact is None:
        return None
    url = _useapi.optional_str(artifact, "assetUrl", "status.artifact.assetUrl")
    expires_at = _expiry(artifact)
    asset = _useapi.optional_object(artifact, "asset", "status.artifact.asset")
    mime_type = (
        None if asset is None else _useapi.optional_str(asset, "mimeType", "status.artifact.asset.mimeType")
    )
    if url is None:
        return None
    return Output(url=url, mime_type=mime_type, expires_at=expires_at)


def _expiry(artifact: Mapping[str, Any]) -> datetime | None:
    """``expirationDateString`` (epoch **milliseconds** as a digit string, ``"1748919477350"``) as a UTC
    datetime (``2025-06-03T02:57:57.350Z``), or ``None`` when absent."""
    path = "status.artifact.expirationDateString"
    text = _useapi.optional_str(artifact, "expirationDateString", path)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise invalid(path, f"expected epoch milliseconds as a digit string, got {text[:40]!r}")
    try:
        if len(text) > 16:
            raise OverflowError
        return _EPOCH + timedelta(milliseconds=int(text))
    except OverflowError:
        raise invalid(path, f"epoch milliseconds out of range: {text[:40]}") from None


ADAPTER: VendorAdapter = LtxStudioAdapter()
"""The module's adapter instance, as registered by the vendor registry."""
