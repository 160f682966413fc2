"""The delivery HTTP sender: one signed POST per attempt, every outcome turned into an :class:`AttemptResult`.

aiohttp, not httpx, because delivery is a hot path (DESIGN.md "Performance stance": one ``ClientSession``
per worker, its connector and resolver configured once). This module is the only place that knows the
client library. Example::

    async with Sender(total_timeout=15) as sender:
        result = await sender.send("https://hooks.example.com/relay", headers, body)
    result.ok, result.status_code, result.error   # (True, 204, None) or (False, None, "timeout after 15.0 s")

Security (DESIGN.md "Security stance"): redirects are never followed, at most 4 KiB of a response is
read, proxies from the environment are ignored, and targets on loopback/private/link-local addresses
are refused (:mod:`dispatch.ssrf`) unless ``allow_private``: the URL is checked before sending, the
connector's resolver drops non-public answers, and its socket factory refuses to dial any non-public
address, literal IPs included.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import aiohttp

from dispatch.errors import ValidationFailed
from dispatch.ssrf import TargetRefused, VettingResolver, VettingSocketFactory, check_url

MAX_RESPONSE_BYTES = 4096
"""How much of a subscriber's response body is read and kept (bytes)."""


@dataclass(frozen=True)
class AttemptResult:
    """What one delivery attempt produced, ready to store as an ``attempts`` row.

    ``status_code`` is ``None`` when no HTTP response arrived (then ``error`` says why:
    ``"timeout after 15.0 s"``, ``"connection error: ..."``, ``"refused: ..."``). ``duration_ms`` is
    wall time in milliseconds. ``response_headers`` has lower-case names (repeated headers joined with
    ``", "``). ``response_body`` is the first 4096 bytes decoded as UTF-8 with replacement. ``error`` may
    also be set next to a status code when the response broke off while its body was being read.

    Example: ``AttemptResult(status_code=429, duration_ms=12, response_headers={"retry-after": "120"},
    response_body="slow down", error=None)``.
    """

    status_code: int | None
    duration_ms: int
    response_headers: dict[str, str]
    response_body: str
    error: str | None

    @property
    def ok(self) -> bool:
        """True for a 2xx status: the subscriber accepted the event (a 3xx counts as a failure)."""
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retry_after(self) -> str | None:
        """The raw ``Retry-After`` header value (``"120"`` or an HTTP-date), or ``None``.

        Turn it into seconds with :func:`dispatch.retry.parse_retry_after`.
        """
        return self.response_headers.get("retry-after")


def _elapsed_ms(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)


async def _read_prefix(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Read up to ``limit`` bytes (fewer at end of stream) without reading the rest of the body."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = await stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class Sender:
    """POSTs deliveries over one pooled aiohttp session; use as ``async with Sender(...) as sender``.

    Timeouts are seconds: ``connect_timeout`` bounds opening a connection, ``total_timeout`` the whole
    attempt (connect, send, response head and the 4 KiB read). ``limit`` caps open connections.
    ``allow_private`` lets targets live on loopback/private networks (tests, demo); ``https_only``
    refuses ``http://`` targets.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5,
        total_timeout: float = 15,
        allow_private: bool = False,
        https_only: bool = False,
        limit: int = 100,
    ) -> None:
        self._connect_timeout = float(connect_timeout)
        self._total_timeout = float(total_timeout)
        self._allow_private = allow_private
        self._https_only = https_only
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Sender:
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            resolver=VettingResolver(allow_private=self._allow_private),
            socket_factory=VettingSocketFactory(allow_private=self._allow_private),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._total_timeout, sock_connect=self._connect_timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> AttemptResult:
        """POST ``body`` to ``url`` with ``headers`` once; never raises for network or target problems.

        Redirects are not followed (a 3xx is returned as is, a failed attempt). At most 4096 bytes of
        the response body are read. Timeouts, refused or reset connections, DNS failures and SSRF
        refusals (:func:`dispatch.ssrf.check_url`, :class:`dispatch.ssrf.VettingResolver`,
        :class:`dispatch.ssrf.VettingSocketFactory`) come back as ``AttemptResult(status_code=None,
        error="...")``; a refusal's error starts with ``"refused: "``. Raises ``RuntimeError`` outside
        ``async with``.
        """
        session = self._session
        if session is None:
            raise RuntimeError("Sender.send() called outside 'async with Sender(...)'")
        start = time.perf_counter()
        try:
            check_url(url, allow_private=self._allow_private, https_only=self._https_only)
        except ValidationFailed as exc:
            return AttemptResult(None, _elapsed_ms(start), {}, "", exc.message)
        status: int | None = None
        response_headers: dict[str, str] = {}
        raw = b""
        error: str | None = None
        try:
            async with session.post(url, headers=dict(headers), data=body, allow_redirects=False) as resp:
                status = resp.status
                for name in resp.headers:
                    key = name.lower()
                    if key not in response_headers:
                        response_headers[key] = ", ".join(resp.headers.getall(name))
                raw = await _read_prefix(resp.content, MAX_RESPONSE_BYTES)
        except aiohttp.ConnectionTimeoutError:
            error = f"connect timeout after {min(self._connect_timeout, self._total_timeout)} s"
        except TimeoutError:
            error = f"timeout after {self._total_timeout} s"
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, TargetRefused)
            error = str(exc.os_error) if refused else f"connection error: {exc}"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return AttemptResult(
            status_code=status,
            duration_ms=_elapsed_ms(start),
            response_headers=response_headers,
            response_body=raw.decode("utf-8", errors="replace"),
            error=error,
        )
