"""Retention: history older than ``RELAY_RETENTION_DAYS`` is deleted by ``upscale-relay prune`` and by
every worker once an hour (see :meth:`dispatch.store.face.Store.prune` for what is kept)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from dispatch.errors import StoreUnavailable
from dispatch.store.face import Store
from receiver.settings import Settings

log = logging.getLogger("upscale_relay.retention")
EVERY = 3600.0  # seconds between a worker's prunes


async def prune(settings: Settings, store: Store, *, dry_run: bool = False) -> dict[str, int]:
    """Delete (``dry_run``: count) what is older than ``RELAY_RETENTION_DAYS``; returns the counts,
    e.g. ``{"inbound": 120, "attempts": 300, "deliveries": 280, "events": 140}``. Raises
    :class:`StoreUnavailable`."""
    before = int((time.time() - settings.retention_days * 86400) * 1000)
    counts = await store.prune(before=before, dry_run=dry_run)
    if not dry_run and any(counts.values()):
        log.info("pruned history older than %g days: %s", settings.retention_days, counts)
    return counts


async def run(settings: Settings, store: Store, stop: asyncio.Event, *, every: float = EVERY) -> None:
    """Prune at start and then every ``every`` seconds until ``stop`` is set; a database that cannot
    be written now is tried again next time."""
    while not stop.is_set():
        try:
            await prune(settings, store)
        except StoreUnavailable as exc:
            log.warning("cannot prune now: %s", exc.message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
