"""The one protocol every vendor adapter implements, and helpers they share.

An adapter is pure: it builds vendor requests and parses vendor bodies; it never does I/O. The
submitter (:mod:`receiver.submit`) sends what it builds with httpx, and the ingest pipeline
(:mod:`receiver.ingest`) stores what it parses. Vendor bodies are read with the field readers of
:mod:`receiver.vendors._fields`: strict for what carries the outcome, best-effort (anomalies) for the rest.
"""

from __future__ import annotations

import json
import posixpath
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import BaseModel

from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import Cost, JobUpdate
from dispatch.retry import parse_retry_after
from receiver.vendors._fields import opaque_id

_Params = TypeVar("_Params", bound=BaseModel)


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


@dataclass(frozen=True)
class PollTiming:
    """When the polling fallback asks a vendor about a job: ``first`` seconds after the submit, then every
    ``every`` seconds while the job is within ``steady_for`` seconds of the submit (the vendor's typical
    time), then growing x1.5 per poll up to 60 s (see :mod:`receiver.poller`). All three come from the
    vendor's documented latency and polling advice; ``RELAY_POLL_AFTER``/``RELAY_POLL_EVERY`` override the
    first two. Example: ``PollTiming(first=12.0, every=10.0, steady_for=60.0)`` polls at 12, 22, ... 52 s,
    then at 62, 77, 99.5 s ... (seconds after the submit)."""

    first: float
    every: float
    steady_for: float = 0.0


class VendorAdapter(Protocol):
    """One vendor: its request model, its submit/status requests and its body parsers.

    Attributes:
        name: the vendor's path segment and API name (``"apixo"``).
        params_model: strict pydantic model of the vendor's documented upscale fields.
        reserved_fields: callback fields the relay injects itself; a client sending one gets a 422.
        synchronous: the submit response is the outcome (Artnex); no callback URL is sent.
        idempotent_submit: a submit can be safely re-sent (Apiframe's ``Idempotency-Key``).
        signs_callbacks: callbacks carry a signature :meth:`verify_callback` checks (Apiframe).
        credential_setting: name of the ``Settings`` attribute holding the vendor credential
            (``RELAY_<CREDENTIAL_SETTING>``; a vendor added as one module names a new one, read
            from the environment by :meth:`receiver.settings.Settings.vendor_credential`).
        default_base_url: the vendor's base URL when ``base_url_setting`` is not a ``Settings``
            field and ``RELAY_<BASE_URL_SETTING>`` is unset (``None`` for the built-in vendors).
        transient_fail_codes: failure codes the vendor documents as worth retrying (APIXO's
            ``RateLimited``, ``Timeout``, ``Unknown error``): the relay submits the job anew after a
            backoff (``RELAY_RESUBMIT_BACKOFF``, doubling) instead of failing it, up to
            ``RELAY_RESUBMIT_MAX`` times.
        submit_retry_statuses: HTTP statuses of a submit answer the vendor's page says to retry
            (APIXO's 500, 502, 504: "Retry with backoff"): sent again from the outbox with backoff
            like a 429, although the vendor has no idempotency key. Other 5xx stay ambiguous.
        poll_timing: when the polling fallback asks about a job (:class:`PollTiming`), or ``None`` for a
            vendor without a status endpoint (Artnex). The polled vendors are those with a timing.
        cost_field: dotted path of the vendor's own report of what it bills in its bodies
            (``"creditCost"``), or ``None`` when it documents none; the parsed value is
            :attr:`JobUpdate.cost` (a forecast such as Dreamina's ``forecastCost`` has ``estimate``).
        price: what the vendor bills per accepted submit when its page states a fixed price and its
            bodies report none (APIXO: ``Cost(0.01, "usd")``, "billed per submitted image", seed 003),
            else ``None``; every message about one of its vendor jobs carries it as its cost.
        params_example: a valid ``params`` object, from the vendor's documentation page.
    """

    name: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    reserved_fields: ClassVar[frozenset[str]]
    synchronous: ClassVar[bool]
    idempotent_submit: ClassVar[bool]
    signs_callbacks: ClassVar[bool]
    credential_setting: ClassVar[str]
    base_url_setting: ClassVar[str]
    default_base_url: ClassVar[str | None]
    transient_fail_codes: ClassVar[frozenset[str]]
    submit_retry_statuses: ClassVar[frozenset[int]]
    poll_timing: ClassVar[PollTiming | None]
    cost_field: ClassVar[str | None]
    price: ClassVar[Cost | None]
    params_example: ClassVar[dict[str, Any]]

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

    def callback_lost(self, update: JobUpdate) -> bool:
        """True when a polled ``update`` says the vendor gave up calling back for the job (Apiframe's
        ``webhookStatus: "failed"``): the poller then keeps polling at the base interval instead of
        backing off. False for vendors that report no such thing."""
        ...


class AdapterBase:
    """Defaults for the parts of :class:`VendorAdapter` most vendors share: Bearer auth, unsigned
    callbacks, no reserved fields, not synchronous, no idempotency key, no transient failure codes or
    retryable submit statuses, no status endpoint (``poll_timing = None``), no cost report or price. A vendor
    module subclasses it and sets ``name``, ``params_model``, ``params_example``, ``credential_setting``,
    ``base_url_setting`` and whatever differs from these defaults. Vendor job ids are opaque
    (:func:`check_job_id`)."""

    name: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    params_example: ClassVar[dict[str, Any]]
    credential_setting: ClassVar[str]
    base_url_setting: ClassVar[str]
    # the base URL when RELAY_<BASE_URL_SETTING> is unset, for a vendor whose settings are not
    # Settings fields (receiver.settings.Settings.vendor_base_url)
    default_base_url: ClassVar[str | None] = None
    reserved_fields: ClassVar[frozenset[str]] = frozenset()
    synchronous: ClassVar[bool] = False
    idempotent_submit: ClassVar[bool] = False
    signs_callbacks: ClassVar[bool] = False
    transient_fail_codes: ClassVar[frozenset[str]] = frozenset()
    submit_retry_statuses: ClassVar[frozenset[int]] = frozenset()
    poll_timing: ClassVar[PollTiming | None] = None
    cost_field: ClassVar[str | None] = None
    price: ClassVar[Cost | None] = None

    def auth_headers(self, credential: str) -> dict[str, str]:
        """``{"Authorization": "Bearer <credential>"}``, sent whole and unencoded."""
        return {"Authorization": f"Bearer {credential}"}

    def status_request(self, vendor_job_id: str) -> VendorRequest | None:
        """``None``: no status endpoint unless the vendor module says otherwise."""
        return None

    def verify_callback(self, body: bytes, headers: Mapping[str, str], credential: str | None) -> None:
        """Nothing to check: the vendor documents no callback signature (the relay's per-job callback
        token authenticates the callback)."""

    def callback_lost(self, update: JobUpdate) -> bool:
        """False: the vendor reports nothing about its callback deliveries."""
        return False


def expect_params(params: BaseModel, model: type[_Params]) -> _Params:
    """``params`` when it is a ``model`` instance; else ``TypeError("expected ApixoUpscaleRequest, got
    Other")`` (params of another vendor are a programming error, not a client error)."""
    if not isinstance(params, model):
        raise TypeError(f"expected {model.__name__}, got {type(params).__name__}")
    return params


def is_success(status_code: int) -> bool:
    """True for a 2xx HTTP status."""
    return 200 <= status_code < 300


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
    the mapped code (a vendor's own code such as Artnex ``invalid_scale``). ``Retry-After`` (seconds or
    an HTTP-date, :func:`dispatch.retry.parse_retry_after`) is read from ``headers`` when present.
    """
    mapped = _STATUS_CODES.get(status_code, "vendor_unavailable" if status_code >= 500 else "vendor_rejected")
    retry_after: float | None = None
    if headers is not None:
        raw = headers.get("retry-after") or headers.get("Retry-After")
        retry_after = parse_retry_after(raw, time.time())
    return UpstreamError(
        message or f"vendor answered HTTP {status_code}",
        code=code or mapped,
        http_status=status_code,
        retryable=status_code == 429 or status_code >= 500,
        retry_after=retry_after,
    )


def path_segment(value: str, *, safe: str = "") -> str:
    """``value`` percent-encoded (UTF-8) as exactly one URL path segment, so a vendor job id never
    leaves the status path it is put in: everything but RFC 3986's unreserved characters
    (``A-Z a-z 0-9 - . _ ~``) and ``safe`` is encoded, so ``/``, ``?``, ``#`` and ``%`` always are,
    and a segment of only dots (``.``, ``..``) is encoded too (``%2E``), so that no URL normaliser
    reads it as "this" or "parent" folder (RFC 3986 §5.2.4).

    ``safe`` keeps characters a vendor's own examples show unencoded: useapi's job ids contain ``:``
    and ``@`` and its pages interpolate them raw into ``GET …/assets/{jobId}`` (VENDORS.md §1, §2), and
    both are legal in a segment (RFC 3986 §3.3: ``pchar = unreserved / pct-encoded / sub-delims / ":" /
    "@"``). The other sub-delims (``!$&'()*+,;=``) are legal too but encoded: servers give ``;`` and
    ``+`` meanings of their own. Example: ``path_segment("../x?y")`` → ``"..%2Fx%3Fy"``;
    ``path_segment("..")`` → ``"%2E%2E"``; ``path_segment("US:a@b.c:dreamina", safe=":@")`` →
    ``"US:a@b.c:dreamina"``; ``path_segment("tâche")`` → ``"t%C3%A2che"``."""
    segment = quote(value, safe=safe)
    return segment.replace(".", "%2E") if set(segment) <= {"."} else segment


def check_job_id(adapter: VendorAdapter, value: str) -> str:
    """``value`` when it can serve as ``adapter``'s vendor job id, else :class:`PayloadError`.

    Vendor job ids are opaque (issue 20, "Vendor job ids are opaque"): any non-empty string of at most
    512 characters without control characters is accepted, stored and used, whatever its shape (a
    UUID, a number, ``a.b.c``, ``a/../b``, ``x?y=1``, non-ASCII); status URLs carry it percent-encoded
    as one path segment (:func:`path_segment`) or query value, so it cannot leave the status path.
    Example: ``check_job_id(ApixoAdapter(), "a/../b")`` → ``"a/../b"``; ``check_job_id(ApixoAdapter(),
    "x" * 513)`` raises ``PayloadError("apixo job id: longer than 512 characters (513)")``.
    """
    return opaque_id(value, f"{adapter.name} job id")


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


def mime_from_url(url: str) -> str | None:
    """MIME type from a URL's file extension (``…/a.png?sig=1`` → ``image/png``), or ``None``."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    return _MIME_BY_EXTENSION.get(posixpath.splitext(path)[1].lower())
