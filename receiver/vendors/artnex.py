"""Artnex image upscale: ``POST /v1/upscale``, synchronous.

Source: https://docs.artnex.app/api/upscale (VENDORS.md §5, seed:004), with
https://docs.artnex.app/api/overview and https://docs.artnex.app/api/authentication.

- Auth: ``Authorization: Bearer <key>``. No callback, no status endpoint, no idempotency key.
- Request ``{"image": "https://…" | "data:image/png;base64,…", "scale": 2}``: a JPEG/PNG/WebP data URI
  (``image/jpeg``, ``image/jpg``, ``image/png``, ``image/webp``) of at most 10 MB, and a positive ``scale``
  whose supported range Artnex does not document (seed:004 "Common values: 2, 4").
- The HTTP response is the outcome: ``200 {"success": true, "image_url": "https://cdn.artnex.ai/…/
  upscaled.jpg", "request_id": "req_ups_abc123xyz", "credits_used": 100}`` (``image_url`` available 24 h),
  or an error ``{"success": false, "error": "invalid_scale", "message": "…"}`` with 400/401/402/422/429/
  500. ``429 rate_limit_exceeded`` is the plan's *daily* quota, so it is not retryable. ``invalid_scale``
  ("The scale value is outside the supported range", seed:004 Error codes) is reported against
  ``params.scale``.
- Cost: ``credits_used`` (integer credits, seed:004 "100 credits per request") → ``Cost(100.0,
  "credits")``; ``100.0`` and ``"100"`` are read too.
- What carries the outcome is ``success`` and ``image_url`` (seed:004 marks both required): a 200 with
  ``success: true`` and an ``http(s)`` ``image_url`` succeeds whatever ``credits_used`` or
  ``request_id`` look like (issue 20, finding 4). ``request_id`` is an opaque id (``req_ups_abc123xyz``,
  ``req.ups.1``, a UUID); a ``credits_used`` or ``request_id`` that cannot be used is left out as an
  anomaly. ``success: true`` without a usable ``image_url`` is a success without output.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import JobState, JobUpdate, Output, utcnow
from receiver.vendors import _fields as f
from receiver.vendors.base import (
    AdapterBase,
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

SUBMIT_PATH = "/v1/upscale"
#: Largest accepted input image, in bytes (decoded size of a data URI): 10 MB = 10 * 1024 * 1024.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: ``image_url`` is "available for 24 hours" after the response.
RESULT_TTL = timedelta(hours=24)

# seed:004: "JPEG, PNG, WebP" with the example prefix ``data:image/jpeg;base64,``; ``image/jpg`` is the
# common (non-IANA) spelling of the same JPEG type, accepted too.
_DATA_URI_PREFIX = re.compile(r"data:image/(jpeg|jpg|png|webp);base64", re.IGNORECASE)
#: Artnex error codes that are about one request field (seed:004 Error codes), as the relay names it.
_FIELD_OF_CODE = {"invalid_scale": "params.scale"}
_SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]*")


class ArtnexUpscaleRequest(BaseModel):
    """The client's ``params`` for Artnex.

    Example: ``{"image": "https://example.com/product-photo.jpg", "scale": 4}``.

    - ``image``: an ``https://`` URL, or a ``data:image/(jpeg|jpg|png|webp);base64,…`` URI whose decoded
      image is at most 10 MB (10,485,760 bytes). ``http://`` and other schemes are refused.
    - ``scale``: any finite number > 0 (``3`` and ``8.5`` pass; ``0`` and ``-1`` do not), default 2.
      seed:004 names 2 and 4 as "common values" and documents no range, so no upper bound is invented;
      a value Artnex refuses comes back as its ``invalid_scale`` error naming ``params.scale``.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    image: str
    scale: float = Field(default=2, gt=0)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        prefix, comma, payload = value.partition(",")
        if comma and _DATA_URI_PREFIX.fullmatch(prefix):
            try:
                size = len(base64.b64decode(payload, validate=True))
            except (binascii.Error, ValueError):
                raise ValueError("data URI payload is not valid base64") from None
            if size > MAX_IMAGE_BYTES:
                raise ValueError(f"image is {size} bytes; Artnex accepts at most {MAX_IMAGE_BYTES} (10 MB)")
            return value
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or parts.scheme.lower() != "https" or not parts.netloc:
            raise ValueError("must be an https:// URL or a data:image/(jpeg|jpg|png|webp);base64,… URI")
        return value


def _error(status_code: int, data: dict[str, Any], body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """``{"success": false, "error": "invalid_scale", "message": "The scale value is outside the supported
    range."}`` → UpstreamError with code ``invalid_scale`` (the relay's status mapping when ``error`` is not
    a snake_case word).

    A code about one field (``invalid_scale``) names it: the message becomes ``"params.scale: The scale
    value is outside the supported range."`` and ``details`` ``[{"field": "params.scale", "message":
    "The scale value is outside the supported range."}]`` (the shape of the relay's own 422 details)."""
    code = data.get("error")
    code = code if isinstance(code, str) and _SNAKE_CASE.fullmatch(code) else None
    message = data.get("message")
    if not isinstance(message, str) or not message:
        try:
            message = error_message(body)
        except (ValueError, RecursionError):
            message = None
    if status_code == 429:
        code = code or "rate_limit_exceeded"
        message = f"Artnex daily quota exhausted: {message or 'rate limit exceeded'}"
    field = _FIELD_OF_CODE.get(code) if code is not None else None
    details: list[dict[str, str]] | None = None
    if field is not None and code is not None:  # a field-specific code such as ``invalid_scale``
        detail = message or code
        details = [{"field": field, "message": detail}]
        message = f"{field}: {detail}"
    exc = upstream_error(status_code, message, headers, code=code)
    exc.details = details
    if status_code == 429:
        exc.retryable = False  # a daily quota: retrying within the day only fails again
    return exc


class ArtnexAdapter(AdapterBase):
    """Artnex upscale: synchronous, the submit response is the job's outcome.

    ``clock`` gives the response time (UTC) used for ``completed_at`` and the 24 h ``expires_at``.
    """

    name: ClassVar[str] = "artnex"
    params_model: ClassVar[type[BaseModel]] = ArtnexUpscaleRequest
    params_example: ClassVar[dict[str, Any]] = {"image": "https://example.com/product-photo.jpg", "scale": 4}
    synchronous: ClassVar[bool] = True
    credential_setting: ClassVar[str] = "artnex_api_key"
    base_url_setting: ClassVar[str] = "artnex_base_url"
    cost_field: ClassVar[str | None] = "credits_used"

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock

    def submit_request(self, params: BaseModel, *, callback_url: str | None, job_id: str) -> VendorRequest:
        """``POST /v1/upscale`` with ``{"image": …, "scale": …}``; ``callback_url`` and ``job_id`` are
        unused (no callback, no idempotency key). Raises ``TypeError`` for a foreign params model."""
        return VendorRequest(
            "POST", SUBMIT_PATH, json=expect_params(params, ArtnexUpscaleRequest).model_dump()
        )

    def parse_submit_response(
        self, status_code: int, body: bytes, headers: Mapping[str, str]
    ) -> SubmitResult:
        """The outcome. ``200 {"success": true, "image_url": "https://…/upscaled.jpg", "request_id":
        "req_ups_abc123xyz", "credits_used": 100}`` → ``SubmitResult("req_ups_abc123xyz", update)`` with
        ``update`` succeeded, progress 100, one ``image/jpeg`` output expiring 24 h from now,
        ``completed_at`` now, ``extra={"credits_used": 100.0}``, ``cost=Cost(100.0, "credits")``. A
        ``credits_used`` or ``request_id`` that cannot be used is left out (``update.anomalies``); without
        a usable ``image_url`` the update is succeeded without outputs.

        Raises :class:`UpstreamError` for a non-2xx status or ``success: false`` (code = the body's
        snake_case ``error``, e.g. ``invalid_scale``, whose message and details name ``params.scale``;
        429 → ``rate_limit_exceeded``, not retryable);
        :class:`PayloadError` for a 2xx body that is not such an object.
        """
        if not is_success(status_code):
            try:
                data = load_object(body)
            except PayloadError:
                data = {}
            raise _error(status_code, data, body, headers)
        data = load_object(body)
        success = f.boolean(data, "success")
        if success is None:
            raise f.invalid("success", "missing")
        if not success:
            raise _error(status_code, data, body, headers)
        notes = f.Notes()
        raw_url = data.get("image_url")
        image_url = None if raw_url is None or raw_url == "" else notes.url(raw_url, "image_url")
        request_id = notes.read(f.job_id, data, "request_id")
        credits_used = notes.read(f.number, data, "credits_used")
        now = self._clock()
        outputs = (
            ()
            if image_url is None
            else (Output(image_url, mime_from_url(image_url), expires_at=now + RESULT_TTL),)
        )
        update = JobUpdate(
            state=JobState.SUCCEEDED,
            raw_state="success",
            vendor_job_id=request_id,
            progress=100,
            outputs=outputs,
            completed_at=now,
            extra={} if credits_used is None else {"credits_used": credits_used},
            cost=f.cost(credits_used, "credits"),
            anomalies=notes.anomalies,
        )
        return SubmitResult(request_id, update)

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> JobUpdate:
        """Always raises :class:`PayloadError`: Artnex does not call back."""
        raise PayloadError("artnex does not call back")

    def parse_status(self, status_code: int, body: bytes) -> JobUpdate:
        """Always raises :class:`PayloadError`: Artnex has no status endpoint to poll."""
        raise PayloadError("artnex does not call back")


ADAPTER: VendorAdapter = ArtnexAdapter()
