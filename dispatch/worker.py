"""The delivery worker: claim due deliveries, sign and POST them, record attempts, schedule retries.

Nobody sleeps on a retry: the retry policy returns the next attempt time, which is stored, and any
worker claims the delivery when it is due. Leases make a killed worker's deliveries claimable again
once they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import defaultdict
from collections.abc import Callable

from dispatch import __version__
from dispatch.errors import Conflict, StoreUnavailable
from dispatch.model import iso_ms
from dispatch.retry import RetryPolicy, parse_retry_after
from dispatch.sender import AttemptResult, Sender
from dispatch.signing import delivery_headers
from dispatch.store.face import Store
from dispatch.store.records import Attempt, Delivery, DeliveryWork

log = logging.getLogger("upscale_relay.worker")
USER_AGENT = f"upscale-relay/{__version__}"


CLAIM_GAP = 0.01  # seconds a busy dispatcher may wait for more free slots before it claims anyway


class Dispatcher:
    """Delivers events until stopped.

    ``concurrency`` caps attempts in flight; ``per_subscriber`` caps them per subscriber so one
    slow endpoint cannot take every slot. ``poll_interval`` (seconds) is how often the store is
    asked for due work when nobody calls :meth:`wake`. ``lease_seconds`` bounds how long a claimed
    delivery stays invisible to other workers.

    With ``notified`` (Postgres, where a ``LISTEN`` connection calls :meth:`wake` whenever another
    process commits due deliveries) an idle dispatcher does not poll: it sleeps until the earliest
    planned retry (``next_due_at``), at most ``idle_max`` seconds, or until woken.

    ``prepare_body(body)``, when given, turns each stored event body into the bytes signed and sent
    at that attempt (the relay re-signs mirror URLs there, so a late retry carries working ones).

    ``on_attempt(outcome, seconds)`` is called where each attempt finishes (the relay's metrics):
    ``outcome`` is one of :func:`attempt_outcome`'s. Each attempt is logged at INFO on
    ``upscale_relay.worker`` (event id, subscriber id, attempt number, status, duration, next attempt
    time, as message and as ``extra`` fields); a dead letter and a subscriber disabled automatically
    are logged at WARNING.
    """

    def __init__(
        self,
        store: Store,
        sender: Sender,
        *,
        policy: RetryPolicy,
        concurrency: int = 64,
        per_subscriber: int = 8,
        lease_seconds: float = 60.0,
        poll_interval: float = 0.2,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        disable_after: float | None = None,
        notified: bool = False,
        idle_max: float = 5.0,
        on_attempt: Callable[[str, float], None] | None = None,
        prepare_body: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.store = store
        self.sender = sender
        self.policy = policy
        self.concurrency = concurrency
        self.per_subscriber = per_subscriber
        self.lease_ms = int(lease_seconds * 1000)
        self.poll_interval = poll_interval
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"
        self.rng = rng or random.Random()
        self.disable_after_ms = None if disable_after is None else int(disable_after * 1000)
        self._leased: set[str] = set()
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._per_sub: dict[str, int] = defaultdict(int)
        self.notified = notified
        self.idle_max = idle_max
        self.on_attempt = on_attempt
        self.prepare_body = prepare_body
        # a claim ranks every due delivery, so a busy dispatcher claims a quarter of its slots at a
        # time rather than one slot each time an attempt ends, waiting at most CLAIM_GAP for them
        self.claim_batch = max(1, concurrency // 4)
        self._last_claim = 0.0
        self._finishing: list[tuple[tuple[str, Attempt, int | None], asyncio.Future[Delivery | None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look for due work now (new deliveries were just committed). Safe from the loop thread."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, grace: float = 10.0) -> None:
        """Deliver until ``stop`` is set; then stop claiming, let in-flight attempts finish for up
        to ``grace`` seconds, and release every lease still held."""
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        try:
            await self._loop(stop)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=grace)
            for task in pending:
                task.cancel()
        with contextlib.suppress(StoreUnavailable):
            await self.store.release_leases(self.worker_id)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Every third of the lease, extend the leases of attempts still in flight."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            if self._leased:
                until = int(time.time() * 1000) + self.lease_ms
                with contextlib.suppress(StoreUnavailable):
                    await self.store.renew_leases(self.worker_id, list(self._leased), until=until)

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            claimed = 0
            free = self.concurrency - len(self._inflight)
            gap = self._last_claim + CLAIM_GAP - time.monotonic()
            if 0 < free < self.claim_batch and self._inflight and gap > 0:
                self._wake.clear()  # set again by the next attempt that ends
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(self._wake.wait(), stop.wait()), gap)
                continue
            if free > 0:
                self._last_claim = time.monotonic()
                try:
                    busy = [sub for sub, n in self._per_sub.items() if n >= self.per_subscriber]
                    work = await self._claim(limit=free, exclude=busy)
                except StoreUnavailable as exc:
                    log.warning("cannot claim deliveries: %s", exc.message)
                    work = []
                for item in work:
                    self._start(item)
                claimed = len(work)
            if claimed == 0 or len(self._inflight) >= self.concurrency:
                self._wake.clear()
                wait = await self._idle_wait() if claimed == 0 else self.poll_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(self._wake.wait(), stop.wait()), wait)

    async def _idle_wait(self) -> float:
        """Seconds to sleep with nothing to do: ``poll_interval``, or when notified of new work, until
        the next planned retry (at most ``idle_max``)."""
        if not self.notified:
            return self.poll_interval
        try:
            due = await self.store.next_due_at()
        except StoreUnavailable:
            return self.poll_interval
        if due is None:
            return self.idle_max
        return min(max((due - time.time() * 1000) / 1000, self.poll_interval), self.idle_max)

    async def _claim(self, *, limit: int, exclude: list[str]) -> list[DeliveryWork]:
        return await self.store.claim_due_deliveries(
            self.worker_id,
            now=int(time.time() * 1000),
            limit=limit,
            lease_ms=self.lease_ms,
            per_subscriber=self.per_subscriber,
            exclude=exclude,
        )

    def _start(self, work: DeliveryWork) -> None:
        self._leased.add(work.delivery_id)
        task = asyncio.create_task(self._deliver(work))
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())

    async def _deliver(self, work: DeliveryWork) -> None:
        self._per_sub[work.subscriber_id] += 1
        try:
            started = int(time.time() * 1000)
            body = work.body if self.prepare_body is None else self.prepare_body(work.body)
            headers = delivery_headers(
                work.event_id, body, work.secrets, timestamp=int(time.time()), user_agent=USER_AGENT
            )
            result = await self.sender.send(work.url, headers, body)
        finally:
            self._per_sub[work.subscriber_id] -= 1
            if self._per_sub[work.subscriber_id] <= 0:
                del self._per_sub[work.subscriber_id]
        try:
            await self._record(work, started, result)
        finally:
            self._leased.discard(work.delivery_id)

    async def _record(self, work: DeliveryWork, started: int, result: AttemptResult) -> None:
        number = work.attempts + 1
        next_at: int | None = None
        if not result.ok:
            retry_after = None
            if result.status_code in (429, 503):
                retry_after = parse_retry_after(result.retry_after, time.time())
            policy = self.policy
            if work.retry_schedule is not None:
                policy = RetryPolicy(schedule=work.retry_schedule, jitter=self.policy.jitter)
            step = number - work.schedule_offset
            at = policy.next_attempt_at(step, time.time(), retry_after=retry_after, rng=self.rng)
            next_at = None if at is None else int(at * 1000)
        attempt = Attempt(
            number=number,
            started_at=started,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            response_headers=result.response_headers,
            response_body=result.response_body,
            error=result.error,
        )
        outcome = attempt_outcome(result)
        if self.on_attempt is not None:
            self.on_attempt(outcome, result.duration_ms / 1000)
        finished = await self._finish(work.delivery_id, attempt, next_at)
        if finished is None:
            log.warning("lease on %s expired during the attempt; another worker owns it", work.delivery_id)
            return
        delivery = finished
        status = "succeeded" if result.ok else delivery.status
        fields = {
            "event_id": work.event_id,
            "delivery_id": work.delivery_id,
            "subscriber_id": work.subscriber_id,
            "attempt": number,
            "status_code": result.status_code,
            "outcome": outcome,
            "delivery_status": status,
            "duration_ms": result.duration_ms,
            "next_attempt_at": iso_ms(next_at) if status == "retrying" else None,
        }
        log.info(
            "delivery attempt %d of %s to %s: %s (%s) in %d ms; %s",
            number,
            work.event_id,
            work.subscriber_id,
            result.status_code if result.status_code is not None else result.error,
            outcome,
            result.duration_ms,
            f"next attempt at {fields['next_attempt_at']}" if status == "retrying" else status,
            extra=fields,
        )
        if status == "dead":
            log.warning(
                "dead letter: %s to %s after %d attempts (last: %s)",
                work.event_id,
                work.subscriber_id,
                number,
                result.status_code if result.status_code is not None else result.error,
                extra={**fields, "dead_letter": True},
            )
        if delivery.subscriber_disabled is not None:  # this attempt disabled it: once, no extra read
            log.warning(
                "subscriber %s disabled: %s",
                work.subscriber_id,
                delivery.subscriber_disabled,
                extra={"subscriber_id": work.subscriber_id, "disabled_reason": delivery.subscriber_disabled},
            )

    async def _finish(self, delivery_id: str, attempt: Attempt, next_at: int | None) -> Delivery | None:
        """Record ``attempt`` with every other attempt that ends while the store is busy writing the
        previous ones: one ``finish_attempts`` call (one transaction) per batch instead of one per
        attempt. ``None`` when the lease was lost. Raises :class:`StoreUnavailable`."""
        future: asyncio.Future[Delivery | None] = asyncio.get_running_loop().create_future()
        self._finishing.append(((delivery_id, attempt, next_at), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._finishing:
            batch, self._finishing = self._finishing, []
            items = [item for item, _ in batch]
            results: list[Delivery | BaseException | None]
            try:
                results = list(
                    await self.store.finish_attempts(
                        self.worker_id, items, disable_after_ms=self.disable_after_ms
                    )
                )
            except StoreUnavailable as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except Exception:  # one bad item must not sink the others: record them one by one
                results = [await self._finish_one(*item) for item in items]
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                elif not future.done():
                    future.set_result(result)

    async def _finish_one(
        self, delivery_id: str, attempt: Attempt, next_at: int | None
    ) -> Delivery | BaseException | None:
        try:
            return await self.store.finish_attempt(
                delivery_id,
                self.worker_id,
                attempt,
                next_attempt_at=next_at,
                disable_after_ms=self.disable_after_ms,
            )
        except Conflict:
            return None
        except Exception as exc:
            return exc


def attempt_outcome(result: AttemptResult) -> str:
    """One word for an attempt: ``succeeded`` (2xx), ``failed`` (another status), ``timeout``,
    ``refused`` (the target is not allowed, :mod:`dispatch.ssrf`) or ``unreachable`` (no connection)."""
    if result.ok:
        return "succeeded"
    if result.status_code is not None:
        return "failed"
    error = (result.error or "").lower()
    if "timeout" in error:
        return "timeout"
    if error.startswith("refused"):
        return "refused"
    return "unreachable"


async def _first(*aws: object) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
