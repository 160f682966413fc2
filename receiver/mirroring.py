"""Mirroring: a succeeded job's outputs are copied to the relay's own object store before its
``job.succeeded`` event is emitted, so results outlive the vendors' URLs (issue 13; README,
"Mirroring results").

``RELAY_MIRROR_URL`` names the store: ``s3://BUCKET/PREFIX`` (any S3-compatible store; credentials
from the standard ``AWS_*`` variables, ``RELAY_MIRROR_ENDPOINT_URL`` for a non-AWS endpoint) or
``file:///PATH``. Objects are keyed ``{prefix}/{job_id}/{index}``, so a retry or a re-mirror
overwrites, never duplicates. Each copy (:mod:`receiver.mirror_copy`) is streamed (never whole in
memory), capped at ``RELAY_MIRROR_MAX_BYTES`` and ``RELAY_MIRROR_TIMEOUT``, fetched through the
delivery SSRF guard (:mod:`dispatch.ssrf`), hashed (SHA-256) and typed from its bytes with Pillow
(:mod:`receiver.mirror_types`: only raster images keep an ``image/*`` type). A ``file://`` mirror's
folders are mode 0700 and its files 0600, like the database.

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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import obstore
from obstore.store import LocalStore, S3Store

from dispatch.errors import (
    Conflict,
    NotConfigured,
    NotFound,
    StoreUnavailable,
    Unauthorized,
    ValidationFailed,
)
from dispatch.model import EventType, JobError, JobState, Output, iso
from dispatch.secretbox import load_or_create_key
from dispatch.store.face import Store
from dispatch.store.jobs import EXPIRED_FLAG
from dispatch.store.mirrors import MirrorTask
from dispatch.store.records import Job
from receiver.database import key_file_for
from receiver.metrics import RelayMetrics
from receiver.mirror_copy import (
    CHUNK_BYTES,
    DEADLINE_PASSED,
    EXPIRED,
    MirrorFailure,
    copy_output,
    fetch_session,
)
from receiver.mirror_types import served_as
from receiver.settings import Settings

log = logging.getLogger("upscale_relay.mirror")

PART_BYTES = 5 * 1024 * 1024
"""The store writer's buffer (S3's smallest multipart part): at most this much is held in memory."""
MAX_BACKOFF = 600.0
"""Seconds: the longest wait between two copy attempts."""


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
        self.root: Path | None = None
        """The folder of a ``file://`` mirror (mode 0700, its files 0600, like the database)."""
        if isinstance(store, LocalStore):
            self.root = Path(store.prefix) if store.prefix is not None else None
            if self.root is not None:
                _private_dir(self.root)

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
        """Store ``chunks`` at ``key`` with ``content_type`` (S3 keeps it, with ``Content-Disposition:
        attachment`` unless it is a raster image type, :func:`receiver.mirror_types.served_as`; a
        file's type comes from the job's output); the object appears only once every chunk is
        written (nothing on error). A ``file://`` copy is mode 0600 in a folder of mode 0700."""
        attributes: Any = None
        if isinstance(self.store, S3Store):
            served, attachment = served_as(content_type)
            attributes = {"Content-Type": served}
            if attachment:
                attributes["Content-Disposition"] = "attachment"
        folder = None if self.root is None else (self.root / key).parent
        if folder is not None:
            await asyncio.to_thread(_private_dir, folder)
        writer = await asyncio.to_thread(
            obstore.open_writer, self.store, key, attributes=attributes, buffer_size=PART_BYTES
        )
        async for chunk in chunks:
            await asyncio.to_thread(writer.write, chunk)
        await asyncio.to_thread(writer.close)
        if self.root is not None:
            await asyncio.to_thread(_owner_only, self.root / key, 0o600)

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


def _private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if needed and narrow it to owner-only (0700), as the
    database file is narrowed (a folder someone else owns is left as it is)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _owner_only(path, 0o700)


def _owner_only(path: Path, mode: int) -> None:
    """``chmod mode`` when ``path`` is open to group or others; a path not ours is left as it is."""
    with contextlib.suppress(PermissionError):
        if path.stat().st_mode & 0o077:
            path.chmod(mode)


def backoff_seconds(attempt: int, first: float) -> float:
    """Seconds before copy attempt ``attempt + 1``: ``min(600, first * 2 ** (attempt - 1))``, e.g.
    ``backoff_seconds(3, 5.0) == 20.0``."""
    return min(MAX_BACKOFF, first * 2.0 ** max(0, attempt - 1))


@dataclass
class _Attempt:
    """One claimed task being worked on: ``results`` per output index (filled as copies end, kept
    when the attempt is abandoned), and whether it is still copying (else it is recording)."""

    task: MirrorTask
    results: list[Output | None]
    copying: bool = True

    @classmethod
    def of(cls, task: MirrorTask) -> _Attempt:
        count = len(task.job.outputs)
        return cls(task, [*task.results, *([None] * count)][:count])


class MirrorRunner:
    """Copies the outputs of succeeded jobs whose ``job.succeeded`` is held (``RELAY_MIRROR_URL``),
    until ``stop``: claims due mirror tasks, copies what is not copied yet, and either plans a retry
    (after :func:`backoff_seconds`, never past the task's deadline) or completes the task, emitting
    the event (``on_event`` then wakes an in-process dispatcher).

    Each claimed task is worked on in its own asyncio task and its outputs are copied side by side,
    at most ``RELAY_MIRROR_CONCURRENCY`` copies (and claimed tasks) at once in this process: a slow
    host holds the slots of its own copies (each for ``RELAY_MIRROR_TIMEOUT`` at most), never the
    runner, and a slot freed is claimed again at once. A claim is a lease of ``RELAY_LEASE_SECONDS``
    renewed every third of it while the copy runs (a heartbeat), so the task of a runner that died
    comes back to any runner within that lease; a runner that is stopped abandons its copies at once
    and releases their tasks, due now (:meth:`dispatch.store.mirrors.MirrorVerbs.release_mirror`).

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
    ) -> None:
        self.settings = settings
        self.store = store
        self.target = target
        self.on_event = on_event
        self.metrics = metrics
        self.concurrency = settings.mirror_concurrency
        self.lease_ms = int(settings.lease_seconds * 1000)
        self._slots = asyncio.Semaphore(self.concurrency)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; looks for due tasks every ``RELAY_POLL_INTERVAL`` seconds and
        whenever a task ends. Returns soon after ``stop``: copies in flight are abandoned."""
        running: dict[asyncio.Future[Any], _Attempt] = {}
        stopped = asyncio.create_task(stop.wait())
        try:
            async with fetch_session(self.settings) as session:
                try:
                    while not stop.is_set():
                        claimed = await self._claim(self.concurrency - len(running))
                        for task in claimed:
                            attempt = _Attempt.of(task)
                            running[asyncio.create_task(self._guarded(session, attempt))] = attempt
                        if claimed and len(running) < self.concurrency:
                            continue  # more may be due now
                        done, _ = await asyncio.wait(
                            {stopped, *running},
                            timeout=self.settings.poll_interval,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                        for finished in done:
                            running.pop(finished, None)
                finally:
                    await self._abandon(running)
        finally:
            stopped.cancel()

    async def _claim(self, free: int) -> list[MirrorTask]:
        """Lease up to ``free`` due tasks (none when nothing is due: one cheap read)."""
        if free <= 0:
            return []
        now = int(time.time() * 1000)
        try:
            due = await self.store.next_mirror_at()
            if due is None or due > now:
                return []
            return await self.store.claim_due_mirrors(now=now, limit=free, lease_ms=self.lease_ms)
        except StoreUnavailable as exc:
            log.warning("cannot claim mirror work: %s", exc.message)
            return []

    async def _abandon(self, running: dict[asyncio.Future[Any], _Attempt]) -> None:
        """Stop every attempt still copying and release its task (due now for any runner); one that
        is recording its outcome finishes that first."""
        if not running:
            return
        for task, attempt in running.items():
            if attempt.copying:
                task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for attempt in running.values():
            if not attempt.copying:
                continue
            job_id = attempt.task.job.id
            fields = {"job_id": job_id}
            try:
                if await self.store.release_mirror(job_id, results=attempt.results):
                    log.info("mirror of %s abandoned at shutdown; released", job_id, extra=fields)
            except StoreUnavailable as exc:  # the lease ends by itself, RELAY_LEASE_SECONDS after its renewal
                log.warning("cannot release the mirror of %s: %s", job_id, exc.message, extra=fields)

    async def _guarded(self, session: aiohttp.ClientSession, attempt: _Attempt) -> None:
        """:meth:`work` with a lease heartbeat, logging what it raises; an unexpected error plans a
        retry (the task is not left leased)."""
        job = attempt.task.job
        keeper = asyncio.create_task(self._keep_lease(job.id))
        try:
            await self.work(session, attempt)
        except (StoreUnavailable, NotFound, ValidationFailed) as exc:
            log.warning("mirror of %s not recorded: %s", job.id, exc, extra={"job_id": job.id})
        except Exception as exc:
            log.exception("mirror of %s failed unexpectedly", job.id, extra={"job_id": job.id})
            attempt.copying = False
            with contextlib.suppress(StoreUnavailable, NotFound):
                await self._retry(attempt, f"{type(exc).__name__}: {exc}")
        finally:
            keeper.cancel()

    async def _keep_lease(self, job_id: str) -> None:
        """Renew the task's lease every third of ``RELAY_LEASE_SECONDS`` while it is worked on."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            with contextlib.suppress(StoreUnavailable):
                await self.store.renew_mirror_lease(job_id, until=int(time.time() * 1000) + self.lease_ms)

    async def work(self, session: aiohttp.ClientSession, attempt: _Attempt) -> None:
        """One attempt at a claimed task: copy, then retry later or complete."""
        job = attempt.task.job
        retry = await _copy_all(
            session, self.target, self.settings, attempt.task, attempt.results, self._slots, self.metrics
        )
        attempt.copying = False
        if retry is not None:
            _count(self.metrics, job.vendor, "retry")
            await self._retry(attempt, str(retry))
            return
        final = [o for o in attempt.results if o is not None]
        _job, emitted = await self.store.complete_mirror(job.id, final)
        if emitted:
            if self.metrics is not None:
                self.metrics.emitted([EventType.SUCCEEDED])
            if self.on_event is not None:
                self.on_event()

    async def _retry(self, attempt: _Attempt, error: str) -> None:
        """Plan the task's next attempt after :func:`backoff_seconds` (never past its deadline)."""
        task, job = attempt.task, attempt.task.job
        now = time.time() * 1000
        at = int(
            min(now + backoff_seconds(task.attempts, self.settings.mirror_backoff) * 1000, task.deadline_at)
        )
        log.info(
            "mirror of %s: attempt %d failed (%s); next at %s",
            job.id,
            task.attempts,
            error,
            datetime.fromtimestamp(at / 1000, UTC).isoformat(),
            extra={"job_id": job.id, "vendor": job.vendor, "attempt": task.attempts},
        )
        await self.store.retry_mirror(job.id, at=at, results=attempt.results, error=error)


async def _copy_all(
    session: aiohttp.ClientSession,
    target: MirrorTarget,
    settings: Settings,
    task: MirrorTask,
    results: list[Output | None],
    slots: asyncio.Semaphore,
    metrics: RelayMetrics | None,
) -> MirrorFailure | None:
    """Copy each output of ``task`` not copied yet (``results[i] is None``), side by side, each
    holding one of ``slots`` while it runs; fills ``results`` in as copies end. A failure is final
    when it says so, when the job's results are known gone (flag ``vendor_expired``) or once the
    deadline has come; returns the first failure worth retrying, else ``None``."""
    job = task.job
    past_deadline = time.time() * 1000 >= task.deadline_at

    async def one(index: int, output: Output) -> MirrorFailure | None:
        async with slots:
            try:
                if EXPIRED_FLAG in job.flags:
                    raise MirrorFailure(EXPIRED, "the vendor says the results are gone (expired)", final=True)
                copied = await copy_output(session, target, settings, job.id, index, output)
            except MirrorFailure as failure:
                if not (failure.final or past_deadline):
                    return failure
                results[index] = _failed(metrics, job, index, output, failure)
                return None
        results[index] = copied
        assert copied.mirror is not None
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
        return None

    pending = [one(i, output) for i, output in enumerate(job.outputs) if results[i] is None]
    failures = await asyncio.gather(*pending)
    return next((f for f in failures if f is not None), None)


def _failed(
    metrics: RelayMetrics | None, job: Job, index: int, output: Output, failure: MirrorFailure
) -> Output:
    """``output`` with its final ``mirror_error`` (``deadline_passed`` for a retryable failure at
    the deadline), counted and logged."""
    code = failure.code
    if not failure.final and code != EXPIRED:
        code = DEADLINE_PASSED
    message = failure.message if failure.final else f"gave up at the deadline; last error: {failure}"
    _count(metrics, job.vendor, code)
    log.warning(
        "mirror of %s output %d failed for good: %s: %s",
        job.id,
        index,
        code,
        message,
        extra={"job_id": job.id, "vendor": job.vendor, "output": index, "mirror_error": code},
    )
    return replace(output, mirror=None, mirror_error=JobError(code, message))


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
    """Copy a succeeded job's outputs again now (one attempt each, side by side, each within
    ``RELAY_MIRROR_TIMEOUT``) and return the job with them:
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
    results: list[Output | None] = [None] * len(job.outputs)
    slots = asyncio.Semaphore(settings.mirror_concurrency)
    async with fetch_session(settings) as session:
        await _copy_all(session, target, settings, task, results, slots, metrics)
    final: list[Output] = []
    for before, after in zip(job.outputs, results, strict=True):
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
