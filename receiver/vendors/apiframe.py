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
- Cost: ``creditCost`` (integer credits, AF-OAS ``Job.creditCost``; ``0`` once a failed job is refunded)
  → ``Cost(10.0, "credits")``; a float or numeric string is read too, anything else left out.
- Read liberally (issue 20): ``progress`` as an integer, a float (``100.0``) or a numeric string; the
  ``result`` as a URL string, or ``{"images": [...]}`` whose entries are URL strings or objects with a
  ``url``. Only ``jobId``/``id``, ``status`` and the result URLs carry the outcome; any other field that
  cannot be used is left out as an anomaly (``JobUpdate.anomalies``), and so is a result URL that is not
  ``http(s)``. A ``COMPLETED`` job without any usable URL has no output yet (the relay polls for it).
- The job id is opaque (a UUID on the page) and goes into ``GET /v2/jobs/{id}`` percent-encoded.
- A polled job showing ``webhookStatus: "failed"`` means Apiframe gave up on its webhook: see
  :meth:`ApiframeAdapter.callback_lost`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dispatch.errors import PayloadError, SignatureInvalid, UpstreamError
from dispatch.model import JobError, JobState, JobUpdate, Output
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


def _one_of(*allowed: float) -> AfterValidator:
    """A validator refusing any number but ``allowed`` (``_one_of(1, 2, 4, 6)``: "must be one of 1, 2,
    4, 6"), for the schema's numeric enums."""

    def check(value: float) -> float:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}")
        return value

    return AfterValidator(check)


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
    upscale_factor: Annotated[float, _one_of(1, 2, 4, 6)] | None = None
    model_type: (
        Literal["standard-v2", "low-res-v2", "cgi", "high-fidelity-v2", "text-refine", "redefine"] | None
    ) = None
    output_format: Literal["jpg", "png"] | None = None
    face_enhance: bool | None = None
    face_enhance_creativity: float | None = Field(default=None, ge=0, le=1)
    face_enhance_strength: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None


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
    scale_factor: Annotated[float, _one_of(1, 2, 4, 8)] | None = None
    creativity: float | None = Field(default=None, ge=0, le=1)
    resemblance: float | None = Field(default=None, ge=0, le=3)
    dynamic: float | None = Field(default=None, ge=1, le=50)
    num_inference_steps: int | None = Field(default=None, ge=1, le=100)
    sharpen: float | None = Field(default=None, ge=0, le=10)
    output_format: Literal["png", "jpg", "webp"] | None = None
    seed: int | None = None


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


def _result_urls(result: Any, notes: f.Notes) -> tuple[list[str], str | None]:
    """``(image URLs, gridUrl)`` from a ``result`` that is a URL string (AF-JOB2, the webhook example)
    or ``{"images": [...], "gridUrl"?}`` (seed:002, AF-JOB) whose entries are URL strings or objects
    with a ``url``. Entries that are neither, and URLs that are not ``http(s)``, are left out with an
    anomaly; an absent ``result`` gives ``[]`` (no output yet). Never raises."""
    if result is None or result == "":
        return [], None
    if isinstance(result, str):
        url = notes.url(result, "result")
        return ([url] if url else []), None
    if not isinstance(result, dict):
        notes.add("result", result)
        return [], None
    grid = notes.read(f.text, result, "gridUrl", at="result")
    images = result.get("images")
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list):
        notes.add("result.images", images)
        return [], grid
    urls = []
    for index, image in enumerate(images):
        value = image.get("url") if isinstance(image, dict) else image
        url = notes.url(value, f"result.images[{index}]" + (".url" if isinstance(image, dict) else ""))
        if url is not None:
            urls.append(url)
    return urls, grid


def _job_update(obj: dict[str, Any], id_key: str) -> JobUpdate:
    """One normalized update from a webhook body (``id_key="jobId"``) or a job (``id_key="id"``).

    Outputs carry ``expires_at=None``: no Apiframe body states when its URLs expire and the documented
    retentions disagree (VENDORS.md §6). ``event``, ``model``, ``creditCost``, ``webhookStatus`` and
    ``expired`` are copied to ``extra`` when present (``None`` when unusable), so ``{"expired": true}`` gives
    ``extra["expired"] is True`` (the CDN assets are purged; ``result`` URLs may 404). Raises
    :class:`PayloadError` when the id or ``status`` is missing or mistyped.
    """
    notes = f.Notes()
    vendor_job_id = f.job_id(obj, id_key, required=True)
    raw_state = f.text(obj, "status", required=True)
    state = _STATES.get(raw_state)
    progress = notes.read(f.percent, obj, "progress")
    message = notes.read(f.text, obj, "error")
    created_at = notes.read(f.iso_time, obj, "createdAt")
    completed_at = notes.read(f.iso_time, obj, "completedAt")
    credit_cost = notes.read(f.number, obj, "creditCost")
    extra: dict[str, Any] = {
        key: value
        for key, value in (
            ("event", notes.read(f.text, obj, "event")),
            ("model", notes.read(f.text, obj, "model")),
            ("creditCost", credit_cost),
            ("webhookStatus", notes.read(f.text, obj, "webhookStatus")),
            ("expired", notes.read(f.boolean, obj, "expired")),
        )
        if key in obj
    }

    outputs: tuple[Output, ...] = ()
    error: JobError | None = None
    if state is JobState.SUCCEEDED:
        urls, grid = _result_urls(obj.get("result"), notes)
        if grid is not None:
            extra["gridUrl"] = grid
        outputs = tuple(Output(url, mime_from_url(url), expires_at=None) for url in urls)
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
        cost=f.cost(credit_cost, "credits"),
        anomalies=notes.anomalies,
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


class ApiframeAdapter(AdapterBase):
    """Apiframe v2 upscale (Topaz or Clarity): async, signed webhooks, idempotent submits."""

    name: ClassVar[str] = "apiframe"
    params_model: ClassVar[type[BaseModel]] = ApiframeUpscaleRequest
    params_example: ClassVar[dict[str, Any]] = {
        "model": TOPAZ,
        "topazUpscaleParams": {"image": "https://example.com/photo.jpg", "upscale_factor": 2},
    }
    reserved_fields: ClassVar[frozenset[str]] = frozenset({"webhookUrl", "webhookEvents"})
    idempotent_submit: ClassVar[bool] = True
    signs_callbacks: ClassVar[bool] = True
    credential_setting: ClassVar[str] = "apiframe_api_key"
    base_url_setting: ClassVar[str] = "apiframe_base_url"
    # "poll every 2-3 s for image jobs" [AF-JOB2]; the SDK grows 2 s x1.5 up to 5 s: 60 s, then 3 s
    poll_timing: ClassVar[PollTiming | None] = PollTiming(first=60.0, every=3.0)
    cost_field: ClassVar[str | None] = "creditCost"

    def auth_headers(self, credential: str) -> dict[str, str]:
        """``{"X-API-Key": "afk_…"}`` (Apiframe does not use Bearer auth)."""
        return {"X-API-Key": credential}

    def submit_request(self, params: BaseModel, *, callback_url: str | None, job_id: str) -> VendorRequest:
        """``POST /v2/images/upscale`` with the set fields of ``params`` plus ``webhookUrl`` and
        ``webhookEvents: ["progress", "completed", "failed"]``, and ``Idempotency-Key: <job_id>``.

        Raises ``TypeError`` if ``params`` is not an :class:`ApiframeUpscaleRequest`.
        """
        body = expect_params(params, ApiframeUpscaleRequest).model_dump(exclude_none=True)
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
        if not is_success(status_code):
            raise _upstream(status_code, body, headers)
        obj = load_object(body)
        vendor_job_id = f.job_id(obj, "jobId", required=True)
        raw_state = f.Notes().read(f.text, obj, "status")
        state = _STATES.get(raw_state) if raw_state is not None else None
        update = None
        if state in (JobState.QUEUED, JobState.RUNNING):
            update = JobUpdate(state=state, raw_state=raw_state, vendor_job_id=vendor_job_id)
        return SubmitResult(vendor_job_id, update)

    def status_request(self, vendor_job_id: str) -> VendorRequest:
        """``GET /v2/jobs/{id}``, the id percent-encoded as one path segment (:func:`path_segment`:
        ``a/../b`` → ``/v2/jobs/a%2F..%2Fb``)."""
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
        if not is_success(status_code):
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

    def callback_lost(self, update: JobUpdate) -> bool:
        """True when a polled job shows ``webhookStatus: "failed"``: Apiframe gave up delivering its
        webhook (AF-OAS ``Job.webhookStatus``), so only polling will see the outcome and the poller keeps
        polling at the base interval."""
        return update.extra.get("webhookStatus") == "failed"


ADAPTER: VendorAdapter = ApiframeAdapter()
