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
succeeded; ``completed`` without it (the docs warn the two can be out of sync) → succeeded without
outputs, which the relay keeps running and polls again for the URL; ``failed`` → failed
(``vendor_failed``, message ``status.message``); any other word → unknown state.

Read liberally (issue 20): the model is "all fields optional", so only ``status.type``, the job id and
``assetUrl`` (which must be ``http(s)``) carry the outcome; ``progress`` is read as an integer, float or
numeric string, ``expirationDateString`` as epoch milliseconds (the page's digit string, or a number)
or an ISO-8601 time, and any field that cannot be used is left out as an anomaly (an expiry that is
neither gives ``expires_at: null``). The job id is opaque and goes into the status path
percent-encoded except ``:`` and ``@`` (see :meth:`UseapiAdapter.status_request`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from dispatch.model import JobError, JobState, JobUpdate, Output
from receiver.vendors import _fields as f
from receiver.vendors._useapi import UseapiAdapter
from receiver.vendors.base import SubmitResult, VendorAdapter

SUBMIT_PATH = "/v1/ltxstudio/images/upscale"
STATUS_PATH = "/v1/ltxstudio/assets/{job_id}"
POLL_ATTEMPT_SECONDS = 3.0  # seed 000: each pollForResult attempt waits 3 seconds
POLL_MARGIN_SECONDS = 15.0  # network and useapi's own overhead on top of the attempts

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


class LtxStudioAdapter(UseapiAdapter):
    """The :class:`~receiver.vendors.base.VendorAdapter` for useapi.net LTX Studio: a useapi adapter whose
    submit may wait for the result (``pollForResult``). LTX documents no cost."""

    name: ClassVar[str] = "ltxstudio"
    params_model: ClassVar[type[BaseModel]] = LtxUpscaleParams
    params_example: ClassVar[dict[str, Any]] = {
        "jobId": "email:demo@example.com:7a34b821-9fd0-205e-d21b-4abc6f7839e7-type:image"
    }
    submit_path: ClassVar[str] = SUBMIT_PATH
    status_path: ClassVar[str] = STATUS_PATH

    def submit_timeout(self, params: BaseModel) -> float | None:
        """With ``pollForResult: n`` useapi holds the answer for up to 3 s per attempt ("each attempt waits
        3 seconds, up to 60 seconds total max", seed 000), so the submit's read timeout is ``3 * n + 15``
        seconds (at least ``RELAY_VENDOR_TIMEOUT``): the relay does not give up on an answer useapi is still
        allowed to be preparing. ``None`` without ``pollForResult``."""
        polls = getattr(params, "pollForResult", None)
        return POLL_ATTEMPT_SECONDS * polls + POLL_MARGIN_SECONDS if polls else None

    def submit_result(self, data: dict[str, Any]) -> SubmitResult:
        """A 2xx body is ``{"jobId": "email:…-type:image", "generationId": "gen_…"}`` →
        ``SubmitResult(vendor_job_id=jobId)``, or, when ``pollForResult`` saw the job finish, the full job
        model → ``SubmitResult(vendor_job_id=jobId, update=<its update>)``. Raises :class:`PayloadError`
        for a body that is neither shape (``jobId: missing``)."""
        if data.get("status") is not None:
            update = parse_job(data)
            return SubmitResult(update.vendor_job_id, update)
        return SubmitResult(f.job_id(data, "jobId", required=True))

    def parse_job(self, data: Mapping[str, Any]) -> JobUpdate:
        """See :func:`parse_job`."""
        return parse_job(data)


def parse_job(data: Mapping[str, Any]) -> JobUpdate:
    """Normalize an LTX job model (callback, status response or polled submit response).

    ``status`` and ``status.type`` are required, and ``jobId`` must be a usable id when present;
    every other field is read best-effort (a value that cannot be used is left out and listed in
    ``JobUpdate.anomalies``). ``extra`` keeps ``replyRef`` and ``generationId`` when present. A
    ``completed`` model without a usable ``assetUrl`` is ``succeeded`` without outputs (the relay
    keeps such a job running). Raises :class:`PayloadError` naming the field, e.g. ``status.type:
    missing``.
    """
    notes = f.Notes()
    status = f.obj(data, "status", required=True)
    raw_state = f.text(status, "type", at="status", required=True)
    progress = notes.read(f.percent, status, "progress", at="status")
    message = notes.read(f.text, status, "message", at="status")
    vendor_job_id = f.job_id(data, "jobId")
    extra = {key: value for key in ("replyRef", "generationId") if (value := notes.read(f.text, data, key))}

    state = _STATES.get(raw_state)
    outputs: tuple[Output, ...] = ()
    error: JobError | None = None
    if state is JobState.SUCCEEDED:
        output = _artifact_output(status, notes)
        if output is not None:
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
        anomalies=notes.anomalies,
    )


def _artifact_output(status: Mapping[str, Any], notes: f.Notes) -> Output | None:
    """``status.artifact`` as an :class:`Output`, or ``None`` when there is no usable ``assetUrl``
    (absent: no anomaly; not ``http(s)``: an anomaly). Its ``expirationDateString`` is epoch
    **milliseconds** as a digit string (``"1748919477350"`` → ``2025-06-03T02:57:57.350Z``); a number of
    milliseconds or an ISO-8601 time is read too, anything else gives ``expires_at=None`` and an
    anomaly."""
    at = "status.artifact"
    artifact = notes.read(f.obj, status, "artifact", at="status")
    if artifact is None:
        return None
    raw_url = artifact.get("assetUrl")
    if raw_url is None or raw_url == "":
        return None
    url = notes.url(raw_url, f"{at}.assetUrl")
    if url is None:
        return None
    expires_at = notes.read(f.epoch_ms_or_iso, artifact, "expirationDateString", at=at)
    asset = notes.read(f.obj, artifact, "asset", at=at)
    mime_type = None if asset is None else notes.read(f.text, asset, "mimeType", at=f"{at}.asset")
    return Output(url=url, mime_type=mime_type, expires_at=expires_at)


ADAPTER: VendorAdapter = LtxStudioAdapter()
"""The module's adapter instance, as registered by the vendor registry."""
