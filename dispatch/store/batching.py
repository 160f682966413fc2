"""Group commit for either engine: a writer thread takes every call queued, runs them in one
transaction and commits once, then answers each caller (DESIGN.md, "Performance stance").

:class:`GroupCommit` is the queue, the thread and the answers; an engine's runner says how a batch
runs (:meth:`GroupCommit.run_batch`), usually :func:`together` first and, when a call of the batch
raised, each call again on its own, so one failing call fails alone and the others still commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dispatch.errors import StoreUnavailable

T = TypeVar("T")
MAX_BATCH = 256  # calls in one transaction at most
Call = tuple[Callable[[Any], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]
Outcome = tuple[bool, Any]  # (True, result) or (False, exception)
_STOP = object()


class GroupCommit:
    """A writer thread running queued calls in batches. Example::

    class Runner(GroupCommit):
        def run_batch(self, batch): return together(store, [fn for fn, _, _ in batch]) or ...
    runner = Runner("store-writer"); runner.start_writer()
    await runner.submit(lambda s: s.create_job(...)); runner.stop_writer()
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._run, name=name, daemon=True)

    def start_writer(self) -> None:
        """Start the writer thread; once, before :meth:`submit`."""
        self._writer.start()

    def stop_writer(self, timeout: float = 30.0) -> None:
        """Run what is queued, then stop the writer thread (waiting up to ``timeout`` seconds)."""
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout=timeout)

    async def submit(self, fn: Callable[[Any], T]) -> T:
        """Queue ``fn(store)`` for the next batch; its result or exception comes back here."""
        return await self.enqueue(fn)

    def enqueue(self, fn: Callable[[Any], T]) -> asyncio.Future[T]:
        """Queue ``fn(store)`` now, from the running event loop, and return the future of its
        outcome: calls queued one after another with no await between them are in the same batch
        (or, before :meth:`start_writer`, the first batch). Raises ``RuntimeError`` outside a loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return future

    def run_batch(self, batch: list[Call]) -> list[Outcome]:
        """Run ``batch`` and return one outcome per call, in order (an engine's runner says how)."""
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            _answer(batch, self.run_batch(batch))
            if stop:
                return


def together(store: Any, calls: Sequence[Callable[[Any], Any]]) -> list[Outcome] | None:
    """Every call in one ``store.transaction()`` with no savepoints: in the common case nothing
    fails and each call costs only its own statements. ``None`` when a call of several raised
    (everything was rolled back: the caller runs them again one by one); a lone call that raises
    is its own outcome, its writes rolled back. A failed BEGIN or COMMIT fails every call with
    :class:`StoreUnavailable` (nothing of the batch was written)."""
    results: list[Outcome] = []
    failed: list[BaseException] = []
    try:
        with store.transaction():
            for fn in calls:
                try:
                    results.append((True, fn(store)))
                except Exception as exc:
                    failed.append(exc)
                    raise _CallFailed from exc
    except _CallFailed:
        return [(False, failed[0])] if len(calls) == 1 else None
    except StoreUnavailable as exc:
        return [(False, exc)] * len(calls)
    except Exception as exc:  # the commit itself failed in an unexpected way
        return [(False, StoreUnavailable(f"database write failed: {exc}"))] * len(calls)
    return results


class _CallFailed(Exception):
    """Raised inside :func:`together`'s transaction to roll it back."""


def _answer(batch: list[Call], outcomes: list[Outcome]) -> None:
    answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for (_fn, future, loop), outcome in zip(batch, outcomes, strict=True):
        answers.setdefault(loop, []).append((future, outcome))
    for loop, settled in answers.items():  # one wake-up per event loop, not one per call
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone; nobody is waiting
            loop.call_soon_threadsafe(settle, settled)


def settle(settled: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    """Give each future its outcome (a result, or an exception raised at its awaiter); futures
    already done (their caller was cancelled) are skipped. Call on the futures' own loop."""
    for future, (ok, value) in settled:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
