"""The one protocol every vendor adapter implements, and helpers they share.

An adapter is pure: it builds vendor requests and parses vendor bodies; it never does I/O. The
submitter (:mod:`receiver.submit`) sends what it builds with httpx, and the ingest pipeline
(:mod:`receiver.ingest`) stores what it parses.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import quote, urlsplit

from pydantic import BaseModel

from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import JobUpdate


@dataclass(frozen=True)
class VendorRequest:
    """An HTTP request to a vendor. ``path`` is relative to the vendor's base URL
    (``/v1/dreamina/images/upscale``); ``query`` becomes the query string."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] | None = None
    timeout: float | None = None  # seconds to wait for the answer, when the vendor itself holds it longer


@dataclass(frozen=True)
class SubmitResult:
    """What a successful submit response says: the vendor's job id, and a job update when the
    response already carries a state (Artnex's synchronous result, Dreamina's ``created`` record)."""

    vendor_job_id: str | None
    update: JobUpdate | None = None


class VendorAdapter(Protocol):
    """One vendor: its request model, its submit/status requests and its body parsers.

    Attributes:
        name: the vendor's path segment and API name (``"apixo"``).
        params_model: strict pydantic model of the vendor's documented upscale fields.
        reserved_fields: callback fields the relay injects itself; a client sending one gets a 422.
        synchronous: the submit response is the outcome (Artnex); no callback URL is sent.
        idempotent_submit: a submit can be safely re-sent (Apiframe's ``Idempotency-Key``).
        signs_callbacks: callbacks carry a signature :meth:`verify_callback` checks (Apiframe).
        credential_setting: name of the ``Settings`` attribute holding the vendor credential.
        transient_fail_codes: failure codes the vendor documents as worth retrying (APIXO's
            ``RateLimited``, ``Timeout``, ``Unknown error``): the relay submits the job anew instead
            of failing it, up to ``RELAY_RESUBMIT_MAX`` times.
        job_id_pattern: the documented shape of the vendor's job id (full match); an id of any other
            shape is refused before it is stored or put into a status URL (:func:`check_job_id`).
    """

    name: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    reserved_fields: ClassVar[frozenset[str]]
    synchronous: ClassVar[bool]
    idempotent_submit: ClassVar[bool]
    signs_callbacks: ClassVar[bool]
    credential_setting: ClassVar[str]
    base_url_setting: ClassVar[str]
    job_id_pattern: ClassVar[re.Pattern[str]]
    transient_fail_codes: ClassVar[frozenset[str]]

    def auth_headers(self, credential: str) -> dict[str, str]:
        """Headers that authenticate a request, e.g. ``{"Authorization": "Bearer user:1-abc"}``."""
        ...

    def submit_request(self, params: BaseModel, *, callback_url: str | None, job_id: str) -> VendorRequest:
        """The vendor's upscale request: validated ``params`` plus the callback fields the relay
        injects (``callback_url`` is ``None`` for synchronous vendors). ``job_id`` is the relay's id,
        used as an idempotency key where the vendor supports one."""
        ...

    def parse_submit_response(
        self, status_code: int, body: bytes, headers: Mapping[str, str]
    ) -> SubmitResult:
        """Parse a submit response. Raises :class:`UpstreamError` for a vendor error status
        (see :func:`upstream_error`) and :class:`PayloadError` for a 2xx body that makes no sense."""
        ...

    def status_request(self, vendor_job_id: str) -> VendorRequest | None:
        """The vendor's status (poll) request for a job, or ``None`` when there is none (Artnex)."""
        ...

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> JobUpdate:
        """Parse a raw callback body into a normalized update. Raises :class:`PayloadError`."""
        ...

    def parse_status(self, status_code: int, body: bytes) -> JobUpdate:
        """Parse a status (poll) response. Raises :class:`UpstreamError` for an error status and
        :class:`PayloadError` for a body that cannot be parsed."""
        ...

    def verify_callback(self, body: bytes, headers: Mapping[str, str], credential: str | None) -> None:
        """Check the callback's signature over the raw bytes; raises :class:`SignatureInvalid`.
        Vendors that do not sign (useapi, APIXO) do nothing here."""
        ...


_STATUS_CODES = {
    400: "vendor_rejected",
    401: "vendor_unauthorized",
    402: "insufficient_credits",
    403: "vendor_forbidden",
    404: "vendor_not_found",
    410: "vendor_expired",
    429: "rate_limited",
}


def upstream_error(
    status_code: int,
    message: str | None,
    headers: Mapping[str, str] | None = None,
    *,
    code: str | None = None,
) -> UpstreamError:
    """Map a vendor error status to an :class:`UpstreamError`.

    ``400 → vendor_rejected``, ``401 → vendor_unauthorized``, ``402 → insufficient_credits``,
    ``403 → vendor_forbidden``, ``404 → vendor_not_found``, ``410 → vendor_expired``,
    ``429 → rate_limited`` (retryable), ``5xx → vendor_unavailable`` (retryable). ``code`` overrides
    the mapped code (a vendor's own code such as Artnex ``invalid_scale``). ``Retry-After`` in seconds
    is read from ``headers`` when present.
    """
    mapped = _STATUS_CODES.get(status_code, "vendor_unavailable" if status_code >= 500 else "vendor_rejected")
    retry_after: float | None = None
    if headers is not None:
        raw = headers.get("retry-after") or headers.get("Retry-After")
        if raw and raw.strip().isdigit():
            retry_after = float(raw.strip())
    return UpstreamError(
        message or f"vendor answered HTTP {status_code}",
        code=code or mapped,
        http_status=status_code,
        retryable=status_code == 429 or status_code >= 500,
        retry_after=retry_after,
    )


MAX_JOB_ID_LENGTH = 512


def path_segment(value: str, *, safe: str = "") -> str:
    """``value`` percent-encoded as exactly one URL path segment: ``/``, ``?``, ``#`` and ``%`` are
    always encoded, and a segment of dots (``.``, ``..``) is encoded too, so that no URL normaliser
    reads it as "this" or "parent" folder. ``safe`` keeps characters a vendor shows unencoded
    (useapi's ``:`` and ``@``). Example: ``path_segment("../x?y")`` → ``"..%2Fx%3Fy"``;
    ``path_segment("..")`` → ``"%2E%2E"``."""
    segment = quote(value, safe=safe)
    return segment.replace(".", "%2E") if set(segment) <= {"."} else segment


def check_job_id(adapter: VendorAdapter, value: str) -> str:
    """``value`` when it has the vendor's documented job id shape, else :class:`PayloadError`.

    Example: ``check_job_id(ApixoAdapter(), "task_12345678")`` → ``"task_12345678"``;
    ``check_job_id(ApixoAdapter(), "../../x?probe=1")`` raises ``PayloadError("apixo job id
    '../../x?probe=1' does not have the documented shape")``. Vendor job ids end up in status-poll
    URLs sent with the relay's credentials, so they are checked before any use.
    """
    if len(value) > MAX_JOB_ID_LENGTH or not adapter.job_id_pattern.fullmatch(value):
        raise PayloadError(f"{adapter.name} job id {value[:100]!r} does not have the documented shape")
    return value


def load_json(body: bytes) -> Any:
    """Decode a vendor body as UTF-8 JSON. Raises :class:`PayloadError` naming what is wrong
    (empty body, not UTF-8, not JSON)."""
    if not body or not body.strip():
        raise PayloadError("empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("body is not JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise PayloadError(f"body is not JSON: {exc}") from None
    if "\\u" not in text:
        return data
    try:
        return _replace_lone_surrogates(data)
    except RecursionError:
        raise PayloadError("body is not JSON: nested too deeply") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(value: Any) -> Any:
    """``value`` with every unpaired surrogate (``"\\ud800"`` in JSON, valid JSON but not encodable
    as UTF-8) replaced by U+FFFD, in keys and strings at any depth."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


def load_object(body: bytes) -> dict[str, Any]:
    """:func:`load_json` that also requires a JSON object."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise PayloadError(f"body must be a JSON object, got {type(data).__name__}")
    return data


def error_message(body: bytes) -> str | None:
    """Best-effort human message from a vendor error body (``error``/``message`` keys), else the
    first 200 characters of the body. Never raises."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        text = body[:200].decode("utf-8", "replace").strip()
        return text or None
    if isinstance(data, dict):
        for key in ("message", "error", "failMsg"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
        inner = data.get("data")
        if isinstance(inner, dict) and isinstance(inner.get("error"), str):
            return str(inner["error"])
    return None


_MIME_BY_EXTENSION = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


def json_kind(value: Any) -> str:
    """The JSON (RFC 8259) name of a decoded value's type, for error messages: ``null``, ``boolean``,
    ``number``, ``string``, ``array`` or ``object`` (``json_kind(3)`` → ``"number"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def invalid(path: str, problem: str) -> PayloadError:
    """The error for one bad field: ``PayloadError("data.state: missing", details={"field": "data.state"})``."""
    return PayloadError(f"{path}: {problem}", details={"field": path})


def mime_from_url(url: str) -> str | None:
    """MIME type from a URL's file extension (``…/a.png?sig=1`` → ``image/png``), or ``None``."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    return _MIME_BY_EXTENSION.get(posixpath.splitext(path)[1].lower())
