"""What the two useapi.net adapters (LTX Studio, Dreamina) share: :class:`UseapiAdapter`.

useapi authenticates every API with one token sent whole as ``Authorization: Bearer user:<n>-<str>``
(https://useapi.net/llms-full.txt). Errors come as ``{"error": "Unauthorized", "code": 401}``
(https://useapi.net/docs/api-ltxstudio-v1/post-ltxstudio-images-upscale); Dreamina's bodies omit
``code`` (``{"error": "Source image job not found"}``,
https://useapi.net/docs/api-dreamina-v1/post-dreamina-images-upscale). Callbacks go to ``replyUrl``
and echo ``replyRef``; neither is signed. The callback body and the status answer are the same job
record, so one ``parse_job`` per vendor reads callbacks, status answers and (where they carry a state)
submit answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from dispatch.errors import UpstreamError
from dispatch.model import JobUpdate
from receiver.vendors import base
from receiver.vendors.base import (
    AdapterBase,
    PollTiming,
    SubmitResult,
    VendorRequest,
    expect_params,
    is_success,
    load_object,
    path_segment,
)

RESERVED_FIELDS: frozenset[str] = frozenset({"replyUrl", "replyRef"})
"""Request fields the relay injects itself: ``replyUrl`` (callback URL) and ``replyRef`` (relay job id)."""


def error_from_response(
    status_code: int, body: bytes, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """The :class:`UpstreamError` for a useapi error response.

    The message is the envelope's ``error`` (``{"error": "Job has expired", "code": 410}`` →
    ``"Job has expired"``, code ``vendor_expired``), else whatever :func:`base.error_message` finds in the
    body. The HTTP status, not the body's ``code``, decides the relay code (see :func:`base.upstream_error`);
    ``Retry-After`` is read from ``headers``. Never raises.
    """
    message: str | None = None
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"].strip():
        message = data["error"].strip()
    if message is None:
        message = base.error_message(body)
    return base.upstream_error(status_code, message, headers)


class UseapiAdapter(AdapterBase):
    """A useapi.net image upscale API: asynchronous, Bearer token, unsigned ``replyUrl`` callbacks, no
    idempotency key (a re-sent submit starts a second job).

    A subclass sets ``name``, ``params_model``, ``params_example``, ``submit_path``,
    ``status_path`` (with a ``{job_id}`` placeholder) and implements :meth:`parse_job` and
    :meth:`submit_result`; :meth:`submit_timeout` is optional.
    """

    reserved_fields: ClassVar[frozenset[str]] = RESERVED_FIELDS
    credential_setting: ClassVar[str] = "useapi_token"
    base_url_setting: ClassVar[str] = "useapi_base_url"
    # LTX: useapi polls every 3 s with ``pollForResult`` and jobs take minutes (seed:000): first poll after
    # 120 s, then every 10 s. Dreamina overrides this with its own seed's cadence (receiver.vendors.dreamina).
    poll_timing: ClassVar[PollTiming | None] = PollTiming(first=120.0, every=10.0)
    submit_path: ClassVar[str]
    status_path: ClassVar[str]

    def parse_job(self, data: Mapping[str, Any]) -> JobUpdate:
        """Normalize the vendor's job record (callback, status answer, submit answer with a state).
        Raises :class:`PayloadError` naming the field."""
        raise NotImplementedError

    def submit_result(self, data: dict[str, Any]) -> SubmitResult:
        """The :class:`SubmitResult` of a 2xx submit answer's JSON object. Raises :class:`PayloadError`."""
        raise NotImplementedError

    def submit_timeout(self, params: BaseModel) -> float | None:
        """Seconds useapi may hold the submit's answer (beyond ``RELAY_VENDOR_TIMEOUT``), or ``None``."""
        return None

    def submit_request(self, params: BaseModel, *, callback_url: str | None, job_id: str) -> VendorRequest:
        """``POST <submit_path>`` with the fields the client set plus ``replyUrl=callback_url`` (when
        given) and ``replyRef=job_id``, as JSON.

        Example JSON: ``{"jobid": "j…i-u12345-US:demo@example.com:dreamina", "upscaleResolution": "8k",
        "replyUrl": "https://relay/v1/callbacks/dreamina/t", "replyRef": "job_01"}``. Raises ``TypeError``
        if ``params`` is not this vendor's ``params_model``.
        """
        params = expect_params(params, self.params_model)
        body: dict[str, Any] = params.model_dump(exclude_unset=True, exclude_none=True)
        if callback_url is not None:
            body["replyUrl"] = callback_url
        body["replyRef"] = job_id
        return VendorRequest(
            "POST",
            self.submit_path,
            json=body,
            headers={"Content-Type": "application/json"},
            timeout=self.submit_timeout(params),
        )

    def parse_submit_response(
        self, status_code: int, body: bytes, headers: Mapping[str, str]
    ) -> SubmitResult:
        """A 2xx answer through :meth:`submit_result`. Raises :class:`UpstreamError` for an error status
        (``402 {"error": "Insufficient credits"}`` → ``insufficient_credits``) and :class:`PayloadError`
        for a 2xx body without the job id."""
        if not is_success(status_code):
            raise error_from_response(status_code, body, headers)
        return self.submit_result(load_object(body))

    def status_request(self, vendor_job_id: str) -> VendorRequest:
        """``GET <status_path>`` with the job id as one path segment (:func:`path_segment`): its ``:``
        and ``@`` stay unencoded, as in useapi's own examples ("must be passed unencoded in the GET
        path", VENDORS.md §1, §2; legal in a segment per RFC 3986 §3.3), every other reserved or
        non-ASCII character is percent-encoded (``a/../b`` → ``a%2F..%2Fb``), so the request never
        leaves the status path."""
        return VendorRequest("GET", self.status_path.format(job_id=path_segment(vendor_job_id, safe=":@")))

    def parse_callback(self, body: bytes, headers: Mapping[str, str]) -> JobUpdate:
        """The ``replyUrl`` POST body, i.e. the job record. Raises :class:`PayloadError`."""
        return self.parse_job(load_object(body))

    def parse_status(self, status_code: int, body: bytes) -> JobUpdate:
        """The status answer. Raises :class:`UpstreamError` for an error status (``404 "Job not found or
        has expired"`` → ``vendor_not_found``, ``410`` → ``vendor_expired``) and :class:`PayloadError`
        for a body that is not a job record."""
        if not is_success(status_code):
            raise error_from_response(status_code, body)
        return self.parse_job(load_object(body))
