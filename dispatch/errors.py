"""Every error the relay raises, defined once.

Each class carries a stable machine ``code`` and the HTTP ``status`` the edge translates it to; the
HTTP layer renders ``{"error": {"code", "message", "details"}}`` and the CLI prints ``Error: message``.

Example::

    raise NotFound("job job_123 not found")   # -> 404 {"error": {"code": "not_found", ...}}
"""

from __future__ import annotations

from typing import Any, ClassVar


class RelayError(Exception):
    """Base of all relay errors: ``message`` for people, ``code`` for programs, ``details`` for either."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        """``{"code": ..., "message": ..., "details": ...}`` as sent in HTTP error bodies."""
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationFailed(RelayError):
    """Input (client request, config, CLI argument) is malformed; ``details`` names the fields."""

    code = "validation_failed"
    status = 422


class PayloadError(ValidationFailed):
    """A vendor body (callback, status or submit response) cannot be parsed into a job update."""

    code = "invalid_payload"


class VendorJobMismatch(PayloadError):
    """A vendor message names another vendor job than the one its callback URL (or poll) is for:
    stored with verdict ``mismatch`` and applied to nothing."""

    code = "vendor_job_mismatch"


class TooManyRequests(RelayError):
    """A per-job or per-source cap is reached (``RELAY_MAX_INBOUND_PER_JOB``,
    ``RELAY_SOURCE_MAX_JOBS_PER_HOUR``); nothing was stored, the sender may retry later."""

    code = "too_many_requests"
    status = 429


class PayloadTooLarge(RelayError):
    """A request body is over the configured limit (bytes)."""

    code = "payload_too_large"
    status = 413


class SignatureInvalid(RelayError):
    """A signed callback's signature is missing or does not match the raw body."""

    code = "invalid_signature"
    status = 401


class Unauthorized(RelayError):
    """The admin bearer token is missing or wrong."""

    code = "unauthorized"
    status = 401


class NotFound(RelayError):
    """The named resource (job, event, subscriber, delivery, callback token) does not exist."""

    code = "not_found"
    status = 404


class Conflict(RelayError):
    """The request contradicts stored state (e.g. retrying a delivery that is in flight)."""

    code = "conflict"
    status = 409


class StoreUnavailable(RelayError):
    """The database cannot be written (disk full, locked too long): callers should retry later."""

    code = "store_unavailable"
    status = 503


class UpstreamError(RelayError):
    """A vendor answered a submit or status request with an error, or could not be reached.

    ``code`` is a relay code (``vendor_rejected``, ``vendor_unauthorized``, ``insufficient_credits``,
    ``vendor_forbidden``, ``vendor_not_found``, ``rate_limited``, ``vendor_unavailable``,
    ``vendor_timeout``) or the vendor's own code where it has one (Artnex ``invalid_scale``).
    ``retryable`` says whether the same request may be sent again (429, 5xx); ``retry_after`` is the
    vendor's ``Retry-After`` in seconds when it sent one; ``http_status`` is the vendor's status code.
    """

    code = "vendor_error"
    status = 502

    def __init__(
        self,
        message: str,
        *,
        code: str,
        http_status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, details=details, code=code)
        self.http_status = http_status
        self.retryable = retryable
        self.retry_after = retry_after


class NotConfigured(RelayError):
    """A feature needs a setting that is not set (a vendor credential such as ``RELAY_APIXO_API_KEY``)."""

    code = "not_configured"
    status = 503
