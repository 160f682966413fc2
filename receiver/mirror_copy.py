"""Copying one output (:mod:`receiver.mirroring`): fetch the vendor's URL through the delivery SSRF
guard and stream it to the mirror, deciding its type from the bytes on the way.

Each copy is streamed (never whole in memory: at most :data:`HEADER_BYTES` plus one chunk is held
while the type is undecided, then the store writer's 5 MiB part), capped at
``RELAY_MIRROR_MAX_BYTES``, bounded as a whole by ``RELAY_MIRROR_TIMEOUT`` (issue 19: an output
sending one byte every 20 s held its runner, and SIGTERM, forever), hashed (SHA-256) and typed by
:func:`receiver.mirror_types.identify` (Pillow), which also gives the real width and height.

Example::

    async with fetch_session(settings) as session:
        copied = await copy_output(session, target, settings, "job_1", 0, output)
        copied.mirror.sha256, copied.mime_type     # "9f2c…", "image/png"
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING

import aiohttp

from dispatch.errors import ValidationFailed
from dispatch.model import Mirror, Output
from dispatch.ssrf import TargetRefused, VettingResolver, VettingSocketFactory, check_url
from receiver.mirror_types import MirrorKind, identify
from receiver.settings import Settings

if TYPE_CHECKING:  # mirroring imports this module
    from receiver.mirroring import MirrorTarget

CHUNK_BYTES = 256 * 1024
"""Bytes read from the vendor and written to the store per step."""
HEADER_BYTES = 1024 * 1024
"""At most this much of a file is held and given to Pillow to decide its type and size."""

# mirror_error codes; a final outcome, counted in relay_mirror_total{outcome} with "copied" and "retry"
TOO_LARGE = "too_large"
REFUSED = "refused"
EXPIRED = "expired"
DEADLINE_PASSED = "deadline_passed"
TIMED_OUT = "timed_out"  # retryable: the copy took over RELAY_MIRROR_TIMEOUT


class MirrorFailure(Exception):
    """One output could not be copied: ``code`` (``too_large``, ``refused``, ``expired``,
    ``timed_out``, ``fetch_failed``, ``store_failed``), ``message``, and whether retrying is
    pointless (``final``)."""

    def __init__(self, code: str, message: str, *, final: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.final = final


@contextlib.asynccontextmanager
async def fetch_session(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session for fetching vendor outputs behind the delivery SSRF guard
    (:class:`dispatch.ssrf.VettingResolver` and :class:`dispatch.ssrf.VettingSocketFactory`, off with
    ``RELAY_ALLOW_PRIVATE_TARGETS``); connect timeout ``RELAY_DELIVERY_CONNECT_TIMEOUT``, 60 s per read,
    and as many connections as ``RELAY_MIRROR_CONCURRENCY`` copies need."""
    allow = settings.allow_private_targets
    connector = aiohttp.TCPConnector(
        limit=settings.mirror_concurrency,
        resolver=VettingResolver(allow_private=allow),
        socket_factory=VettingSocketFactory(allow_private=allow),
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.delivery_connect_timeout, sock_read=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
    ) as session:
        yield session


class _Probe:
    """Size, SHA-256 and the kind (:func:`receiver.mirror_types.identify`: type, width, height) of
    bytes seen in order. Until the kind is decided it holds what it was fed (at most
    :data:`HEADER_BYTES` plus one chunk) for :meth:`take_held`: nothing is stored before the type is
    known, since an S3 object gets its Content-Type when its upload starts."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.sha = hashlib.sha256()
        self.kind: MirrorKind | None = None
        self._held: list[bytes] = []
        self._look_at = 0  # bytes held before the next look: doubles, so all looks read O(size) bytes

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise MirrorFailure(TOO_LARGE, f"over RELAY_MIRROR_MAX_BYTES ({self.limit} bytes)", final=True)
        self.sha.update(chunk)
        if self.kind is not None:
            return
        self._held.append(chunk)
        if self.size >= HEADER_BYTES:
            self.kind = identify(b"".join(self._held), complete=True)
        elif self.size >= self._look_at:
            self.kind = identify(b"".join(self._held), complete=False)
            self._look_at = 2 * self.size

    def end(self) -> MirrorKind:
        """The kind, decided now if the bytes ended first."""
        if self.kind is None:
            self.kind = identify(b"".join(self._held), complete=True)
        assert self.kind is not None  # complete=True always decides
        return self.kind

    def take_held(self) -> list[bytes]:
        """The chunks fed while the kind was undecided (once)."""
        held, self._held = self._held, []
        return held


async def copy_output(
    session: aiohttp.ClientSession,
    target: MirrorTarget,
    settings: Settings,
    job_id: str,
    index: int,
    output: Output,
) -> Output:
    """Copy output ``index`` of ``job_id`` from the vendor's URL to ``target`` and return it with its
    ``mirror`` (URL, size in bytes, hex SHA-256, URL expiry), its real ``width``/``height`` (pixels,
    from the image header; the vendor's when unreadable) and ``mime_type`` decided from the bytes
    (:func:`receiver.mirror_types.identify`: ``image/png``, ``image/jpeg``, ``image/webp``,
    ``image/gif``, ``image/avif``, else ``application/octet-stream`` whatever the vendor declared).
    Example: ``Output("https://cdn…/a.png", "image/png", 640, 480, ..., mirror=Mirror("https://…",
    48213, "9f2c…", <+7 days>))``.

    The whole copy, from connecting to the last byte stored, has ``RELAY_MIRROR_TIMEOUT`` seconds.
    Raises :class:`MirrorFailure`: final for ``too_large`` (``Content-Length`` or bytes read over
    ``RELAY_MIRROR_MAX_BYTES``) and ``refused`` (:func:`dispatch.ssrf.check_url` or the connector's
    guard); retryable for ``expired`` (HTTP 403, 404, 410), ``timed_out`` (over
    ``RELAY_MIRROR_TIMEOUT``), ``fetch_failed`` (another status, a network error) and
    ``store_failed`` (the object store refused the write).
    """
    try:
        check_url(output.url, allow_private=settings.allow_private_targets, https_only=False)
    except ValidationFailed as exc:
        raise MirrorFailure(REFUSED, exc.message, final=True) from None
    try:
        async with asyncio.timeout(settings.mirror_timeout):
            probe = await _fetch_and_store(session, target, settings.mirror_max_bytes, job_id, index, output)
    except TimeoutError:
        raise MirrorFailure(
            TIMED_OUT, f"not copied within RELAY_MIRROR_TIMEOUT ({settings.mirror_timeout:g} s)", final=False
        ) from None
    kind = probe.end()
    url, expires = target.url(job_id, index)
    return replace(
        output,
        mime_type=kind.mime_type,
        width=kind.width if kind.width is not None else output.width,
        height=kind.height if kind.height is not None else output.height,
        mirror=Mirror(url, probe.size, probe.sha.hexdigest(), expires),
        mirror_error=None,
    )


async def _fetch_and_store(
    session: aiohttp.ClientSession, target: MirrorTarget, limit: int, job_id: str, index: int, output: Output
) -> _Probe:
    """GET ``output.url`` and stream it to ``target`` (the body of :func:`copy_output`, without its
    deadline); returns the probe that saw every byte."""
    probe = _Probe(limit)
    try:
        async with session.get(output.url, allow_redirects=True, max_redirects=5) as resp:
            if resp.status in (403, 404, 410):
                raise MirrorFailure(EXPIRED, f"the vendor answered HTTP {resp.status}", final=False)
            if resp.status != 200:
                raise MirrorFailure("fetch_failed", f"the vendor answered HTTP {resp.status}", final=False)
            if resp.content_length is not None and resp.content_length > limit:
                raise MirrorFailure(
                    TOO_LARGE,
                    f"{resp.content_length} bytes, over RELAY_MIRROR_MAX_BYTES ({limit})",
                    final=True,
                )
            stream = resp.content.iter_chunked(CHUNK_BYTES)
            async for chunk in stream:  # read until the bytes say what they are
                probe.feed(chunk)
                if probe.kind is not None:
                    break
            kind = probe.end()

            async def chunks() -> AsyncIterator[bytes]:
                for chunk in probe.take_held():
                    yield chunk
                async for chunk in stream:
                    probe.feed(chunk)
                    yield chunk

            try:
                await target.write(target.key(job_id, index), chunks(), kind.mime_type)
            except (MirrorFailure, aiohttp.ClientError, TimeoutError):
                raise
            except Exception as exc:  # obstore's errors: the store refused or could not be reached
                raise MirrorFailure(
                    "store_failed", f"{type(exc).__name__}: {exc}"[:300], final=False
                ) from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, TargetRefused):
            raise MirrorFailure(REFUSED, str(exc.os_error), final=True) from None
        raise MirrorFailure("fetch_failed", f"connection error: {exc}"[:300], final=False) from None
    except (aiohttp.ClientError, TimeoutError) as exc:  # aiohttp's own per-read timeout, say
        raise MirrorFailure("fetch_failed", f"{type(exc).__name__}: {exc}"[:300], final=False) from None
    return probe
