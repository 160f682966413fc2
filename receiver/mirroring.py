"""Mirroring: a succeeded job's outputs are copied to the relay's own object store before its
``job.succeeded`` event is emitted, so results outlive the vendors' URLs (issue 13; README,
"Mirroring results").

``RELAY_MIRROR_URL`` names the store: ``s3://BUCKET/PREFIX`` (any S3-compatible store; credentials
from the standard ``AWS_*`` variables, ``RELAY_MIRROR_ENDPOINT_URL`` for a non-AWS endpoint) or
``file:///PATH``. Objects are keyed ``{prefix}/{job_id}/{index}``, so a retry or a re-mirror
overwrites, never duplicates. Each copy is streamed (never whole in memory), capped at
``RELAY_MIRROR_MAX_BYTES``, fetched through the delivery SSRF guard (:mod:`dispatch.ssrf`), hashed
(SHA-256) and its image header read with Pillow for the real width and height.

Example::

    target = MirrorTarget.from_settings(settings)
    runner = MirrorRunner(settings, store, target, on_event=dispatcher.wake, metrics=metrics)
    await runner.run(stop)                       # the app's lifespan and `upscale-relay worker`
    job = await remirror(store, settings, "job_…")   # `upscale-relay mirror`, POST /v1/jobs/{id}/mirror

The object-store library is obstore (one API over S3 and the local file system). Its synchronous
calls run in threads: its async calls can abort the interpreter at exit (seen with obstore 0.12).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import obstore
from obstore.store import LocalStore, S3Store
from PIL import Image, ImageFile

from dispatch.errors import (
    Conflict,
    NotConfigured,
    NotFound,
    StoreUnavailable,
    Unauthorized,
    ValidationFailed,
)
from dispatch.model import EventType, JobError, JobState, Mirror, Output, iso
from dispatch.secretbox import load_or_create_key
from dispatch.ssrf import TargetRefused, VettingResolver, VettingSocketFactory, check_url
from dispatch.store.face import Store
from dispatch.store.jobs import EXPIRED_FLAG
from dispatch.store.mirrors import MirrorTask
from dispatch.store.records import Job
from receiver.database import key_file_for
from receiver.metrics import RelayMetrics
from receiver.settings import Settings

log = logging.getLogger("upscale_relay.mirror")

CHUNK_BYTES = 256 * 1024
"""Bytes read from the vendor and written to the store per step."""
PART_BYTES = 5 * 1024 * 1024
"""The store writer's buffer (S3's smallest multipart part): at most this much is held in memory."""
HEADER_BYTES = 1024 * 1024
"""At most this much of a file is given to Pillow to find the image's size."""
MAX_BACKOFF = 600.0
"""Seconds: the longest wait between two copy attempts."""
LEASE_MS = 15 * 60 * 1000
"""How long a claimed mirror task stays invisible to other runners (ms)."""

_OCTETS = "application/octet-stream"

# mirror_error codes; a final outcome, counted in relay_mirror_total{outcome} with "copied" and "retry"
TOO_LARGE = "too_large"
REFUSED = "refused"
EXPIRED = "expired"
DEADLINE_PASSED = "deadline_passed"


class MirrorFailure(Exception):
    """One output could not be copied: ``code`` (``too_large``, ``refused``, ``expired``,
    ``fetch_failed``, ``store_failed``), ``message``, and whether retrying is pointless (``final``)."""

    def __init__(self, code: str, message: str, *, final: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.final = final


def signing_key(settings: Settings) -> bytes:
    """The HMAC key of the relay's signed output URLs, derived from the secret key (``RELAY_SECRET_KEY``
    or the generated key file beside the SQLite database). Raises :class:`NotConfigured` (Postgres
    without ``RELAY_SECRET_KEY``), :class:`ValidationFailed` and :class:`StoreUnavailable` as
    :func:`dispatch.secretbox.load_or_create_key`."""
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    if settings.is_postgres and secret is None:
        raise NotConfigured("RELAY_SECRET_KEY must be set with Postgres (it also signs mirror URLs)")
    key = secret if secret is not None else load_or_create_key(None, key_file_for(settings))
    return hmac.new(key.encode(), b"upscale-relay mirror urls v1", hashlib.sha256).digest()


class MirrorTarget:
    """Where copies go and how they are reached: an obstore store plus URL signing.

    ``public_url`` is ``RELAY_PUBLIC_URL`` (the relay's own ``/v1/outputs`` URLs for ``file://``);
    ``ttl`` is ``RELAY_MIRROR_URL_TTL`` seconds.
    """

    def __init__(self, store: S3Store | LocalStore, *, public_url: str, ttl: float, key: bytes) -> None:
        self.store = store
        self.public_url = public_url
        self.ttl = ttl
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> MirrorTarget:
        """The target ``RELAY_MIRROR_URL`` names. Raises :class:`NotConfigured` when it is unset."""
        url = settings.mirror_url
        if url is None:
            raise NotConfigured("mirroring is off: set RELAY_MIRROR_URL (file:///PATH or s3://BUCKET/PREFIX)")
        store: S3Store | LocalStore
        if url.startswith("s3://"):
            bucket, _, prefix = url.removeprefix("s3://").partition("/")
            options: dict[str, Any] = {}
            if settings.mirror_endpoint_url:
                options["endpoint"] = settings.mirror_endpoint_url
                options["allow_http"] = settings.mirror_endpoint_url.startswith("http://")
            store = S3Store(bucket, prefix=prefix or None, **options)
        else:
            store = LocalStore(Path(url.removeprefix("file://")), mkdir=True)
        return cls(
            store, public_url=settings.public_url, ttl=settings.mirror_url_ttl, key=signing_key(settings)
        )

    @staticmethod
    def key(job_id: str, index: int) -> str:
        """The object key of output ``index`` of ``job_id`` (under the store's prefix): ``"job_1/0"``."""
        return f"{job_id}/{index}"

    def url(self, job_id: str, index: int, now: float | None = None) -> tuple[str, datetime]:
        """A URL serving output ``index`` of ``job_id`` for ``ttl`` seconds from ``now`` (unix s) and
        when it stops working: a presigned GET for S3, the relay's
        ``/v1/outputs/{job_id}/{index}?expires=…&sig=…`` for ``file://``. Example:
        ``("https://relay.example.com/v1/outputs/job_1/0?expires=1765084800&sig=9f…", <datetime>)``."""
        at = time.time() if now is None else now
        expires = int(at + self.ttl)
        if isinstance(self.store, S3Store):
            signed = obstore.sign(
                self.store, "GET", self.key(job_id, index), timedelta(seconds=int(self.ttl))
            )
            return signed, datetime.fromtimestamp(expires, UTC)
        sig = self._signature(job_id, index, expires)
        return (
            f"{self.public_url}/v1/outputs/{job_id}/{index}?expires={expires}&sig={sig}",
            datetime.fromtimestamp(expires, UTC),
        )

    def _signature(self, job_id: str, index: int, expires: int) -> str:
        message = f"{job_id}/{index}/{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(self, job_id: str, index: int, expires: str, sig: str, now: float | None = None) -> None:
        """Accept a signed ``/v1/outputs`` query (``expires``: unix s, ``sig``: hex HMAC-SHA256 of
        ``"{job_id}/{index}/{expires}"``). Raises :class:`Unauthorized` for a forged, malformed or
        expired one."""
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
            raise Unauthorized("malformed signed URL: expires must be unix seconds")
        if not hmac.compare_digest(self._signature(job_id, index, int(expires)).encode(), sig.encode()):
            raise Unauthorized("signed URL does not verify")
        if int(expires) < (time.time() if now is None else now):
            raise Unauthorized("signed URL expired; each delivery attempt carries a fresh one")

    def refresh(self, body: bytes) -> bytes:
        """``body`` (a stored event) with each output's ``mirror.url`` and ``mirror.expires_at``
        signed anew, so a delivery retried or replayed days later still carries a working URL; a body
        without mirrors comes back as is, and so does one that cannot be re-signed (logged: the
        stored URL is sent). The :class:`dispatch.worker.Dispatcher`'s ``prepare_body``."""
        if b'"mirror":{' not in body:
            return body
        try:
            event = json.loads(body)
            data = event["data"]
            self.sign_outputs(data["job_id"], data.get("outputs") or [])
        except Exception:  # signing needs credentials the store may have lost: deliver anyway
            log.exception("cannot re-sign the mirror URLs of an event; sending the stored ones")
            return body
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()

    def sign_outputs(self, job_id: str, outputs: list[Any], now: float | None = None) -> None:
        """Give each output (its JSON shape) that has a ``mirror`` a freshly signed ``url`` and its
        ``expires_at``, in place: what deliveries carry at each attempt and what ``GET /v1/jobs``
        shows, so a stored URL that expired is never handed out."""
        at = time.time() if now is None else now
        for index, output in enumerate(outputs):
            if isinstance(output, dict) and isinstance(output.get("mirror"), dict):
                url, expires = self.url(job_id, index, at)
                output["mirror"]["url"] = url
                output["mirror"]["expires_at"] = iso(expires)

    async def write(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> None:
        """Store ``chunks`` at ``key`` with ``content_type`` (S3 keeps it; a file's comes from the job's
        output); the object appears only once every chunk is written (nothing on error)."""
        attributes: Any = {"Content-Type": content_type} if isinstance(self.store, S3Store) else None
        writer = await asyncio.to_thread(
            obstore.open_writer, self.store, key, attributes=attributes, buffer_size=PART_BYTES
        )
        async for chunk in chunks:
            await asyncio.to_thread(writer.write, chunk)
        await asyncio.to_thread(writer.close)

    async def read(self, key: str) -> tuple[int, AsyncIterator[bytes]]:
        """The size of the object at ``key`` and its bytes in chunks. Raises :class:`NotFound`."""
        try:
            result = await asyncio.to_thread(obstore.get, self.store, key)
        except FileNotFoundError:
            raise NotFound(f"no mirrored object {key}") from None
        stream = iter(result.stream(min_chunk_size=CHUNK_BYTES))

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                chunk = await asyncio.to_thread(next, stream, None)
                if chunk is None:
                    return
                yield bytes(chunk)

        return int(result.meta["size"]), chunks()


@contextlib.asynccontextmanager
async def fetch_session(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session for fetching vendor outputs behind the delivery SSRF guard
    (:class:`dispatch.ssrf.VettingResolver` and :class:`dispatch.ssrf.VettingSocketFactory`, off with
    ``RELAY_ALLOW_PRIVATE_TARGETS``); connect timeout ``RELAY_DELIVERY_CONNECT_TIMEOUT``, 60 s per read."""
    allow = settings.allow_private_targets
    connector = aiohttp.TCPConnector(
        limit=16,
        resolver=VettingResolver(allow_private=allow),
        socket_factory=VettingSocketFactory(allow_private=allow),
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.delivery_connect_timeout, sock_read=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
    ) as session:
        yield session


class _Probe:
    """Size, SHA-256 and the image's width and height of bytes seen in order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.sha = hashlib.sha256()
        self.width: int | None = None
        self.height: int | None = None
        self._parser: ImageFile.Parser | None = ImageFile.Parser()

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise MirrorFailure(TOO_LARGE, f"over RELAY_MIRROR_MAX_BYTES ({self.limit} bytes)", final=True)
        self.sha.update(chunk)
        parser = self._parser
        if parser is None:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a decompression-bomb warning: only the header is read
                parser.feed(chunk)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            self._parser = None
            return
        if parser.image is not None:
            self.width, self.height = parser.image.size
            self._parser = None  # stop: feeding on would decode the whole image
        elif self.size >= HEADER_BYTES:
            self._parser = None


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
    from the image header; the vendor's when unreadable) and ``mime_type`` (the response's
    ``image/*`` Content-Type, else the vendor's; the stored object keeps it). Example: ``Output("https://cdn…/a.png",
    "image/png", 640, 480, ..., mirror=Mirror("https://…", 48213, "9f2c…", <+7 days>))``.

    Raises :class:`MirrorFailure`: final for ``too_large`` (``Content-Length`` or bytes read over
    ``RELAY_MIRROR_MAX_BYTES``) and ``refused`` (:func:`dispatch.ssrf.check_url` or the connector's
    guard); retryable for ``expired`` (HTTP 403, 404, 410), ``fetch_failed`` (another status, a
    network error) and ``store_failed`` (the object store refused the write).
    """
    limit = settings.mirror_max_bytes
    try:
        check_url(output.url, allow_private=settings.allow_private_targets, https_only=False)
    except ValidationFailed as exc:
        raise MirrorFailure(REFUSED, exc.message, final=True) from None
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
            declared = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            content_type = (  # a CDN's generic type does not replace the vendor's image type
                declared if declared.startswith("image/") else output.mime_type or declared or _OCTETS
            )

            async def chunks() -> AsyncIterator[bytes]:
                async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                    probe.feed(chunk)
                    yield chunk

            try:
                await target.write(target.key(job_id, index), chunks(), content_type)
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
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MirrorFailure("fetch_failed", f"{type(exc).__name__}: {exc}"[:300], final=False) from None
    url, expires = target.url(job_id, index)
    return replace(
        output,
        mime_type=content_type,
        width=probe.width if probe.width is not None else output.width,
        height=probe.height if probe.height is not None else output.height,
        mirror=Mirror(url, probe.size, probe.sha.hexdigest(), expires),
        mirror_error=None,
    )


def backoff_seconds(attempt: int, first: float) -> float:
    """Seconds before copy attempt ``attempt + 1``: ``min(600, first * 2 ** (attempt - 1))``, e.g.
    ``backoff_seconds(3, 5.0) == 20.0``."""
    return min(MAX_BACKOFF, first * 2.0 ** max(0, attempt - 1))


@dataclass
class _Outcome:
    results: list[Output | None]
    retry: MirrorFailure | None


class MirrorRunner:
    """Copies the outputs of succeeded jobs whose ``job.succeeded`` is held (``RELAY_MIRROR_URL``),
    until ``stop``: claims due mirror tasks, copies what is not copied yet, and either plans a retry
    (after :func:`backoff_seconds`, never past the task's deadline) or completes the task, emitting
    the event (``on_event`` then wakes an in-process dispatcher).

    Every outcome per output is counted in ``relay_mirror_total{vendor,outcome}`` (``copied``,
    ``retry``, ``too_large``, ``refused``, ``expired``, ``deadline_passed``) and logged on
    ``upscale_relay.mirror`` (INFO for a copy, WARNING for a failure that ends it).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        target: MirrorTarget,
        *,
        on_event: Callable[[], None] | None = None,
        metrics: RelayMetrics | None = None,
        concurrency: int = 4,
    ) -> None:
        self.settings = settings
        self.store = store
        self.target = target
        self.on_event = on_event
        self.metrics = metrics
        self.concurrency = concurrency

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; looks for due tasks every ``RELAY_POLL_INTERVAL`` seconds."""
        async with fetch_session(self.settings) as session:
            while not stop.is_set():
                try:
                    busy = await self.run_once(session)
                except StoreUnavailable as exc:
                    log.warning("cannot claim mirror work: %s", exc.message)
                    busy = False
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.settings.poll_interval)

    async def run_once(self, session: aiohttp.ClientSession) -> bool:
        """Claim and work off the tasks due now (at most ``concurrency``); ``True`` when there were any."""
        now = int(time.time() * 1000)
        due = await self.store.next_mirror_at()
        if due is None or due > now:
            return False
        tasks = await self.store.claim_due_mirrors(now=now, limit=self.concurrency, lease_ms=LEASE_MS)
        await asyncio.gather(*(self._guarded(session, task) for task in tasks))
        return bool(tasks)

    async def _guarded(self, session: aiohttp.ClientSession, task: MirrorTask) -> None:
        """:meth:`work`, logging what it raises: the task comes back when its lease ends."""
        try:
            await self.work(session, task)
        except (StoreUnavailable, NotFound, ValidationFailed) as exc:
            log.warning("mirror of %s not recorded: %s", task.job.id, exc, extra={"job_id": task.job.id})
        except Exception:
            log.exception("mirror of %s failed unexpectedly", task.job.id, extra={"job_id": task.job.id})

    async def work(self, session: aiohttp.ClientSession, task: MirrorTask) -> None:
        """One attempt at ``task``: copy, then retry later or complete."""
        job = task.job
        outcome = await _copy_all(session, self.target, self.settings, task, self.metrics)
        if outcome.retry is not None:
            now = time.time() * 1000
            at = int(
                min(
                    now + backoff_seconds(task.attempts, self.settings.mirror_backoff) * 1000,
                    task.deadline_at,
                )
            )
            _count(self.metrics, job.vendor, "retry")
            log.info(
                "mirror of %s: attempt %d failed (%s); next at %s",
                job.id,
                task.attempts,
                outcome.retry,
                datetime.fromtimestamp(at / 1000, UTC).isoformat(),
                extra={"job_id": job.id, "vendor": job.vendor, "attempt": task.attempts},
            )
            await self.store.retry_mirror(job.id, at=at, results=outcome.results, error=str(outcome.retry))
            return
        final = [o for o in outcome.results if o is not None]
        _job, emitted = await self.store.complete_mirror(job.id, final)
        if emitted:
            if self.metrics is not None:
                self.metrics.emitted([EventType.SUCCEEDED])
            if self.on_event is not None:
                self.on_event()


async def _copy_all(
    session: aiohttp.ClientSession,
    target: MirrorTarget,
    settings: Settings,
    task: MirrorTask,
    metrics: RelayMetrics | None,
) -> _Outcome:
    """Copy each output of ``task`` not copied yet; a failure is final when it says so, when the job's
    results are known gone (flag ``vendor_expired``) or once the deadline has come."""
    job = task.job
    results: list[Output | None] = [*task.results, *([None] * len(job.outputs))][: len(job.outputs)]
    past_deadline = time.time() * 1000 >= task.deadline_at
    retry: MirrorFailure | None = None
    for index, output in enumerate(job.outputs):
        if results[index] is not None:
            continue
        try:
            if EXPIRED_FLAG in job.flags:
                raise MirrorFailure(EXPIRED, "the vendor says the results are gone (expired)", final=True)
            results[index] = await copy_output(session, target, settings, job.id, index, output)
        except MirrorFailure as failure:
            if not (failure.final or past_deadline):
                retry = retry or failure
                continue
            code = failure.code
            if not failure.final and code != EXPIRED:
                code = DEADLINE_PASSED
            message = failure.message if failure.final else f"gave up at the deadline; last error: {failure}"
            results[index] = replace(output, mirror=None, mirror_error=JobError(code, message))
            _count(metrics, job.vendor, code)
            log.warning(
                "mirror of %s output %d failed for good: %s: %s",
                job.id,
                index,
                code,
                message,
                extra={"job_id": job.id, "vendor": job.vendor, "output": index, "mirror_error": code},
            )
            continue
        copied = results[index]
        assert copied is not None and copied.mirror is not None
        _count(metrics, job.vendor, "copied")
        log.info(
            "mirrored %s output %d: %d bytes, sha256 %s",
            job.id,
            index,
            copied.mirror.size_bytes,
            copied.mirror.sha256,
            extra={
                "job_id": job.id,
                "vendor": job.vendor,
                "output": index,
                "size_bytes": copied.mirror.size_bytes,
            },
        )
    return _Outcome(results, retry)


def _count(metrics: RelayMetrics | None, vendor: str, outcome: str) -> None:
    if metrics is not None:
        metrics.mirror(vendor, outcome)


async def remirror(
    store: Store,
    settings: Settings,
    job_id: str,
    *,
    metrics: RelayMetrics | None = None,
    on_event: Callable[[], None] | None = None,
) -> Job:
    """Copy a succeeded job's outputs again now (one attempt each) and return the job with them:
    ``upscale-relay mirror JOB_ID``, ``POST /v1/jobs/{id}/mirror`` and the console call this. An
    output that fails keeps the copy it had, else gets ``mirror_error``; a held ``job.succeeded`` is
    emitted (``on_event`` is then called), an emitted one's stored body gets the new outputs (replay
    it to re-send). Example: ``await remirror(store, settings, "job_1")`` → ``Job(id="job_1",
    outputs=(Output(..., mirror=Mirror("https://…", 48213, "9f2c…", <+7 days>)),), ...)``.

    Raises :class:`NotConfigured` (``RELAY_MIRROR_URL`` unset), :class:`NotFound`, :class:`Conflict`
    (the job has not succeeded), :class:`StoreUnavailable`.
    """
    target = MirrorTarget.from_settings(settings)
    job = await store.get_job(job_id)
    if job.status is not JobState.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status.value}: only a succeeded job's outputs are mirrored")
    deadline = int(time.time() * 1000)  # one attempt: every failure is final
    task = MirrorTask(job, 1, deadline, ())
    async with fetch_session(settings) as session:
        outcome = await _copy_all(session, target, settings, task, metrics)
    final: list[Output] = []
    for before, after in zip(job.outputs, outcome.results, strict=True):
        assert after is not None
        final.append(before if after.mirror is None and before.mirror is not None else after)
    updated, emitted = await store.complete_mirror(job_id, final)
    if emitted and on_event is not None:
        on_event()
    return updated


def output_entry(job: Job, index: int) -> Output:
    """Output ``index`` of ``job`` when it was mirrored. Raises :class:`NotFound`."""
    if not 0 <= index < len(job.outputs) or job.outputs[index].mirror is None:
        raise NotFound(f"job {job.id} has no mirrored output {index}")
    return job.outputs[index]
