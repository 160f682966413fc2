"""Apiframe v2 image upscale: ``POST /v2/images/upscale``, ``GET /v2/jobs/{id}``, signed webhooks.

Source: https://apiframe.ai/docs/image-upscale (VENDORS.md §3, seed:002), with the field tables of the
v2 OpenAPI document and the webhook verifier of the official Node SDK (``apiframe-ai/apiframe-nodejs-sdk``,
``src/webhooks.ts``).

- Auth: ``X-API-Key: afk_…``. A submit carries ``Idempotency-Key`` (the relay's job id): Apiframe returns
  the original job when the same key is replayed within 24 h, so a submit may be re-sent safely.
- Body: ``{"model": "topaz-image-upscale", "topazUpscaleParams": {...}}`` or
  ``{"model": "clarity-upscale", "clarityUpscaleParams": {...}}``, ``additionalProperties: false`` at both
  levels; the relay adds ``webhookUrl`` and ``webhookEvents``.
- Callback ``{event, jobId, status, progress?, result?, error?, model, creditCost?, completedAt?}``, job
  ``{id, status, progress, result, error, webhookStatus, createdAt, completedAt, expired}``.
  ``QUEUED → queued``, ``PROCESSING → running``, ``COMPLETED → succeeded``, ``FAILED``/``CANCELLED → failed``.
- Result URLs get no ``expires_at``: the sources disagree (seed:002 "standard 90-day retention" vs the
  schema's ``expired`` flag, "default 24h retention"; VENDORS.md §3 Vocabulary and §6 "output expiry") and
  no body states a date. A job showing ``"expired": true`` (its CDN assets purged) is reported as
  ``extra["expired"] = True``.
- ``X-Webhook-Signature: sha256=<hex HMAC-SHA256(key=SHA-256(api key) raw bytes, msg=raw body)>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from dispatch.errors import PayloadError, SignatureInvalid, UpstreamError
from dispatch.model import JobError, JobState, JobUpdate, Output
from receiver.vendors.base import (
    SubmitResult,
    VendorAdapter,
    VendorRequest,
    error_message,
    invalid as _invalid,
    json_kind as _kind,
    load_object,
    mime_from_url as _mime_type,
    path_segment,
    upstream_error,
)

TOPAZ = "topaz-image-upscale"
CLARITY = "clarity-upscale"
WEBHOOK_EVENTS = ("progress", "completed", "failed")
SIGNATURE_HEADER = "X-Webhook-Signature"

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("must be an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


#: A source image: an absolute ``http://`` or ``https://`` URL (the schema's ``format: uri``; Apiframe
#: downloads it, so other schemes cannot work).
ImageUrl = Annotated[str, AfterValidator(_http_url)]


class TopazUpscaleParams(BaseModel):
    """``topazUpscaleParams`` (OpenAPI ``ImageUpscaleRequest``; defaults are Apiframe's, undocumented).

    Example: ``{"image": "https://example.com/a.jpg", "upscale_factor": 2, "output_format": "png"}``.
    ``upscale_factor`` is 1, 2, 4 or 6; ``face_enhance_*`` are 0-1.
    """

    model_config = _STRICT

    image: ImageUrl
    upscale_factor: float | None = None
    model_type: (
        Literal["standard-v2", "low-res-v2", "cgi", "high-fidelity-v2", "text-refine", "redefine"] | None
    ) = None
    output_format: Literal["jpg", "png"] | None = None
    face_enhance: bool | None = None
    face_enhance_creativity: float | None = Field(default=None, ge=0, le=1)
    face_enhance_strength: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None

    @field_validator("upscale_factor")
    @classmethod
    def _factor(cls, value: float | None) -> float | None:
        if value is not None and value not in (1, 2, 4, 6):
            raise ValueError("must be one of 1, 2, 4, 6")
        return value


class ClarityUpscaleParams(BaseModel):
    """``clarityUpscaleParams`` (https://docs-v2.apiframe.ai/docs/image-edits/clarity-upscale).

    Example: ``{"image": "https://example.com/a.png", "prompt": "crisp detail", "scale_factor": 4}``.
    ``prompt``/``negative_prompt`` ≤ 2000 chars, ``scale_factor`` 1, 2, 4 or 8, ``creativity`` 0-1,
    ``resemblance`` 0-3, ``dynamic`` 1-50, ``num_inference_steps`` 1-100 (integer), ``sharpen`` 0-10.
    """

    model_config = _STRICT

    image: ImageUrl
    prompt: str | None = Field(default=None, max_length=2000)
    negative_prompt: str | None = Field(default=None, max_length=2000)
    scale_factor: float | None = None
    creativity: float | None = Field(default=None, ge=0, le=1)
    resemblance: float | None = Field(default=None, ge=0, le=3)
    dynamic: float | None = Field(default=None, ge=1, le=50)
    num_inference_steps: int | None = Field(default=None, ge=1, le=100)
    sharpen: float | None = Field(default=None, ge=0, le=10)
    output_format: Literal["png", "jpg", "webp"] | None = None
    seed: int | None = None

    @field_validator("scale_factor")
    @classmethod
    def _factor(cls, value: float | None) -> float | None:
        if value is not None and value not in (1, 2, 4, 8):
            raise ValueError("must be one of 1, 2, 4, 8")
        return value


class ApiframeUpscaleRequest(BaseModel):
    """The client's ``params`` for Apiframe: a model and exactly its params object.

    Example: ``{"model": "topaz-image-upscale", "topazUpscaleParams": {"image": "https://…/a.jpg"}}``.
    Sending ``clarityUpscaleParams`` with the Topaz model (or the reverse), or omitting the matching
    object, is a validation error naming the field.
    """

    model_config = _STRICT

    model: Literal["topaz-image-upscale", "clarity-upscale"]
    topazUpscaleParams: TopazUpscaleParams | None = None
    clarityUpscaleParams: ClarityUpscaleParams | None = None

    @model_validator(mode="after")
    def _params_match_model(self) -> Self:
        wanted, other = (
            ("topazUpscaleParams", "clarityUpscaleParams")
            if self.model == TOPAZ
            else ("clarityUpscaleParams", "topazUpscaleParams")
        )
        if getattr(self, other) is not None:
            raise ValueError(f"{other}: not allowed with model {self.model!r} (send {wanted})")
        if getattr(self, wanted) is None:
            raise ValueError(f"{wanted}: required when model is {self.model!r}")
        return self


def sign(api_key: str, body: bytes) -> str:
    """The ``X-Webhook-Signature`` value Apiframe sends for ``body``: ``"sha256=<64 lower-case hex>"``.

    The HMAC-SHA256 key is the 32 raw bytes of SHA-256 of the API key string (the SDK's
    ``createHash('sha256').update(apiKey).digest()``), the message the raw body bytes. Test vector
    (VENDORS.md §3): ``sign("afk_" + "0" * 40, b'{"jobId":"abc","status":"COMPLETED"}') ==
    "sha256=58e6d7af820911d918b1b43ade255ec260002ca8b24ba46dd057a99d192c89f4"``.
    """
    secret = hashlib.sha256(api_key.encode()).digest()
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


_STATES = {
    "QUEUED": JobState.QUEUED,
    "PROCESSING": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.FAILED,
}
_FAILURE_CODES = {"FAILED": "vendor_failed", "CANCELLED": "cancelled"}


def _required_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if key not in obj:
        raise _invalid(key, "missing (expected a non-empty string)")
    if not isinstance(value, str) or not value:
        got = "an empty string" if value == "" else _kind(value)
        raise _invalid(key, f"expected a non-empty string, got {got}")
    return value


def _optional(obj: dict[str, Any], key: str, kind: type, name: str) -> Any:
    value = obj.get(key)
    if value is None or (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        return value
    raise _invalid(key, f"expected {name} or null, got {_kind(value)}")


def _optional_time(obj: dict[str, Any], key: str) -> datetime | None:
    text: str | None = _optional(obj, key, str, "an ISO-8601 string")
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise _invalid(key, f"expected an ISO-8601 date-time, got {text[:40]!r}") from None


def _progress(obj: dict[str, Any]) -> int | None:
    value: int | None = _optional(obj, "progress", int, "an integer 0-100")
    if value is not None and not 0 <= value <= 100:
        raise _invalid("progress", f"expected an integer 0-100, got {value}")
    return value


def _result_urls(result: Any) -> tuple[list[str], str | None]:
    """``(image URLs, gridUrl)`` from a ``result`` that is a URL string or ``{"images": [...]}``."""
    if isinstance(result, str) and result:
        return [result], None
    if isinstance(result, dict):
        images = result.get("images")
        grid = result.get("gridUrl")
        if (
            isinstance(images, list)
            and images
            and all(isinstance(url, str) and url for url in images)
            and (grid is None or isinstance(grid, str))
        ):
            return list(images), grid
    raise _invalid(
        "result",
        f'expected an image URL string or {{"images": [URL, ...]}} on a COMPLETED job, got {_kind(result)}',
    )


def _job_update(obj: dict[str, Any], id_key: str) -> JobUpdate:
    """One normalized update from a webhook body (``id_key="jobId"``) or a job (``id_key="id"``).

    Outputs carry ``expires_at=None``: no Apiframe body states when its URLs expire and the documented
    retentions disagree (VENDORS.md §6). ``event``, ``model``, ``creditCost``, ``webhookStatus`` and
    ``expired`` are copied to ``extra`` when present, so ``{"expired": true}`` gives
    ``extra["expired"] is True`` (the CDN assets are purged; ``result`` URLs may 404).
    """
    vendor_job_id = _required_str(obj, id_key)
    raw_state = _required_str(obj, "status")
    state = _STATES.get(raw_state)
    progress = _progress(obj)
    message: str | None = _optional(obj, "error", str, "a string")
    created_at = _optional_time(obj, "createdAt")
    completed_at = _optional_time(obj, "completedAt")
    extra: dict[str, Any] = {}
    for key, kind, name in (
        ("event", str, "a string"),
        ("model", str, "a string"),
        ("creditCost", int, "an integer"),
        ("webhookStatus", str, "a string"),
        ("expired", bool, "a boolean"),
    ):
        value = _optional(obj, key, kind, name)
        if key in obj:
            extra[key] = value

    outputs: tuple[Output, ...] = ()
    error: JobError | None = None
    if state is JobState.SUCCEEDED:
        urls, grid = _result_urls(obj.get("result"))
        if grid is not None:
            extra["gridUrl"] = grid
        outputs = tuple(Output(url, _mime_type(url), expires_at=None) for url in urls)
        if progress is None:
            progress = 100
    elif raw_state in _FAILURE_CODES:
        error = JobError(_FAILURE_CODES[raw_state], message)
    return JobUpdate(
        state=state,
        raw_state=raw_state,
        vendor_job_id=vendor_job_id,
        progress=progress,
        outputs=outputs,
        error=error,
        created_at=created_at,
        completed_at=completed_at,
        extra=extra,
    )


def _upstream(status_code: int, body: bytes, headers: Mapping[str, str] | None) -> UpstreamError:
    """An error answer ``{"error": "...", "details"?: {"<json.path>": ["msg"]}}`` as an UpstreamError."""
    try:
        message = error_message(body)
    except (ValueError, RecursionError):
        message = body[:200].decode("utf-8", "replace").strip() or None
    try:
        data = load_object(body)
    except PayloadError:
        data = {}
    details = data.get("details")
    if isinstance(details, dict) and details:
        parts = [
            f"{path}: {', '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
            for path, msgs in details.items()
        ]
        message = f"{message or 'Validation error'} ({'; '.join(parts)})"
    exc = upstream_error(status_code, message, headers)
    exc.details = details if isinstance(details, dict) else None
    return exc


class ApiframeAdapter:
    """Apiframe v2 upscale (Topaz or Clarity): async, signed webhooks, idempotent submits."""

    name: ClassVar[str] = "apiframe"
    params_model: ClassVar[type[BaseModel]] = ApiframeUpscaleRequest
    reserved_fields: ClassVar[frozenset[str]] = frozenset({"webhookUrl", "webhookEvents"})
    synchronous: ClassVar[bool] = False
    idempotent_submit: ClassVar[bool] = True
    signs_callbacks: ClassVar[bool] = True
    credential_setting: ClassVar[str] = "apiframe_api_key"
    transient_fail_codes: ClassVar[frozenset[str]] = frozenset()
    base_url_setting: ClassVar[str] = "apiframe_base_url"
    # a UUID: "GET /v2/jobs/{id} (id = UUID; 400 if not a UUID)" [VENDORS.md §3, AF-OAS]
    job_id_pattern: ClassVar[re.Pattern[str]] = re.compile(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    )

    def auth_headers(self, credential: str) -> dict[str, str]:
        """``{"X-API-Key": "afk_…"}`` (Apiframe does not use Bearer auth)."""
        return {"X-API-Key": credential}

    def submit_request(self, params: BaseModel, *, callback_url: str | None, job_id: str) -> VendorRequest:
        """``POST /v2/images/upscale`` with the set fields of ``params`` plus ``webhookUrl`` and
        ``webhookEvents: ["progress", "completed", "failed"]``, and ``Idempotency-Key: <job_id>``.

        Raises ``TypeError`` if ``params`` is not an :class:`ApiframeUpscaleRequest`.
        """
        if not isinstance(params, ApiframeUpscaleRequest):
            raise TypeError(f"expected ApiframeUpscaleRequest, got {type(params).__name__}")
        body = params.model_dump(exclude_none=True)
        if callback_url is not None:
            body["webhookUrl"] = callback_url
            body["webhookEvents"] = list(WEBHOOK_EVENTS)
        return VendorRequest("POST", "/v2/images/upscale", json=body, headers={"Idempotency-Key": job_id})

    def parse_submit_response(
        self, status_code: int, body: bytes, headers: Mapping[str, str]
    ) -> SubmitResult:
        """``202 {"jobId": "a1b2…", "status": "QUEUED"}`` → ``SubmitResult("a1b2…", <queued update>)``.

        A replayed ``Idempotency-Key`` may answer with the original job's later status; a terminal one
        carries no result here, so the update is then ``None`` and polling supplies the outcome.
        Raises :class:`UpstreamError` for a non-2xx status (message from ``error``, ``details`` kept),
        :class:`PayloadError` for a 2xx body without ``jobId``.
        """
        if not 200 <= status_code < 300:
            raise _upstream(status_code, body, headers)
        obj = load_object(body)
        vendor_job_id = _required_str(obj, "jobId")
        raw_state: str | None = _optional(obj, "status", str, "a string")
        state = _STATES.get(raw_state) if raw_state is not None else None
        update = None
        if state in (JobState.QUEUED, JobState.RUNNING):
            update = JobUpdate(state=state, raw_state=raw_state, vendor_job_id=vendor_job_id)
        return SubmitResult(vendor_job_id, update)

    def status_request(self, vendor_job_id: str) -> VendorRequest:
        """``GET /v2/jobs/{id}``."""
        return VendorRequest("GET", f"/v2/jobs/{path_segment(vendor_job_id)}")

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> JobUpdate:
        """A webhook body, e.g. ``{"event": "completed", "jobId": "a1b2…", "status": "COMPLETED",
        "progress": 100, "result": "https://cdn.apiframe.ai/results/a1b2.png", "completedAt": "…Z"}``
        → succeeded, one ``image/png`` output with ``expires_at=None`` (no expiry is stated).

        ``event``, ``model`` and ``creditCost`` are kept in ``extra``. Raises :class:`PayloadError`.
        """
        return _job_update(load_object(body), "jobId")

    def parse_status(self, status_code: int, body: bytes) -> JobUpdate:
        """A ``GET /v2/jobs/{id}`` answer (``id`` instead of ``jobId``, plus ``createdAt``,
        ``webhookStatus`` and ``expired``, kept in ``extra``): ``{"id": "a1b2…", "status": "COMPLETED",
        "result": {"images": [URL]}, "expired": true, …}`` → succeeded, outputs with ``expires_at=None``,
        ``extra["expired"] is True``. Raises :class:`UpstreamError` for a non-2xx status and
        :class:`PayloadError` for a body that cannot be parsed."""
        if not 200 <= status_code < 300:
            raise _upstream(status_code, body, None)
        return _job_update(load_object(body), "id")

    def verify_callback(self, body: bytes, headers: Mapping[str, str], credential: str | None) -> None:
        """Check ``X-Webhook-Signature`` (header name case-insensitive; ``sha256=`` prefix optional;
        hex in either case) against :func:`sign` of the raw ``body``, in constant time.

        Raises :class:`SignatureInvalid` when the header or the API key is missing, or on mismatch.
        """
        given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
        if given is None:
            raise SignatureInvalid(f"apiframe callback has no {SIGNATURE_HEADER} header")
        if not credential:
            raise SignatureInvalid("apiframe callback cannot be verified: no Apiframe API key is configured")
        expected = sign(credential, body).removeprefix("sha256=").encode()
        candidate = given.strip().lower().removeprefix("sha256=").encode("utf-8", "replace")
        if not hmac.compare_digest(expected, candidate):
            raise SignatureInvalid(f"apiframe callback {SIGNATURE_HEADER} does not match the body")


ADAPTER: VendorAdapter = ApiframeAdapter()
