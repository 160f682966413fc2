"""Operator actions, each one function that the HTTP API and the CLI both call (handlers and commands
only parse, call and render).

Example::

    detail = await job_detail(store, "job_1")
    sub, secret = await add_subscriber(settings, store, "https://hooks.example.com/relay")
    new = await reprocess(ingest, store, "in_1")   # the same pipeline as a live callback

Every function raises the store's errors (:class:`NotFound`, :class:`StoreUnavailable`) and
:class:`ValidationFailed` for input it refuses; the faces translate them (HTTP status, CLI message).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dispatch.errors import PayloadError, SignatureInvalid, ValidationFailed
from dispatch.model import DEFAULT_EVENT_TYPES, iso_ms
from dispatch.ssrf import check_url
from dispatch.store.face import JobDetail, Store
from dispatch.store.records import Delivery, Inbound, RawMessage, Source, Subscriber
from dispatch.store.stats import StatsReport, VendorStats
from receiver.ingest import Ingest
from receiver.settings import Settings
from receiver.tokens import callback_url, new_token
from receiver.vendors import ADAPTERS, get_adapter

BODY_PREVIEW_BYTES = 8192
"""How much of each stored vendor body a job's detail shows; the rest is at its ``body_url``."""


async def job_detail(store: Store, job_id: str) -> JobDetail:
    """One job with its stored vendor messages (bodies cut at 8 KiB) and its events. Raises
    :class:`NotFound`."""
    return await store.job_detail(job_id, body_prefix=BODY_PREVIEW_BYTES)


def vet_url(settings: Settings, url: str) -> None:
    """Refuse a subscriber URL that is not http(s) or points at a private network (unless
    ``RELAY_ALLOW_PRIVATE_TARGETS``). Raises :class:`ValidationFailed` naming the reason."""
    check_url(url, allow_private=settings.allow_private_targets, https_only=settings.https_only_targets)


async def add_subscriber(
    settings: Settings,
    store: Store,
    url: str,
    *,
    event_types: Sequence[str] = DEFAULT_EVENT_TYPES,
    description: str | None = None,
    enabled: bool = True,
    retry_schedule: Sequence[float] | None = None,
) -> tuple[Subscriber, str]:
    """Create a subscriber; returns it and its ``whsec_…`` secret, shown only this once."""
    vet_url(settings, url)
    return await store.create_subscriber(
        url, event_types=event_types, description=description, enabled=enabled, retry_schedule=retry_schedule
    )


async def update_subscriber(
    settings: Settings, store: Store, sub_id: str, changes: dict[str, Any]
) -> Subscriber:
    """Change ``url``, ``event_types``, ``description``, ``enabled`` or ``retry_schedule`` (a new URL
    is vetted like a new subscriber's). Raises :class:`NotFound`, :class:`ValidationFailed`."""
    if changes.get("url") is not None:
        vet_url(settings, changes["url"])
    return await store.update_subscriber(sub_id, **changes)


async def rotate_secret(settings: Settings, store: Store, sub_id: str) -> tuple[Subscriber, str]:
    """A new secret; the old one keeps signing beside it for ``RELAY_SECRET_OVERLAP`` seconds."""
    return await store.rotate_secret(sub_id, overlap_ms=int(settings.secret_overlap * 1000))


@dataclass(frozen=True)
class Recovery:
    """What a recover did (or, with ``dry_run``, would do): ``Recovery(count=12, dry_run=True)``."""

    count: int
    dry_run: bool


async def recover(
    store: Store,
    sub_id: str,
    *,
    since: int,
    until: int | None,
    dry_run: bool,
    wake: Callable[[], None] = lambda: None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Recovery:
    """Re-send a subscriber's failed and dead deliveries created in [since, until) (unix ms),
    re-enabling it, in batches of 500; with ``dry_run`` only count them. ``progress(done, total)``
    is called after each batch (the CLI draws a bar with it). Raises :class:`NotFound`, and
    :class:`ValidationFailed` when ``until`` is not after ``since``."""
    if until is not None and until <= since:
        raise ValidationFailed("until: must be after since")
    total = await store.count_recoverable(sub_id, since=since, until=until)
    if dry_run:
        return Recovery(total, True)
    await store.update_subscriber(sub_id, enabled=True)
    count = 0
    while done := await store.recover_deliveries(sub_id, since=since, until=until):
        count += done
        progress(count, total)
    wake()
    return Recovery(count, False)


async def replay(
    store: Store, event_id: str, subscriber_id: str | None = None, *, wake: Callable[[], None] = lambda: None
) -> list[Delivery]:
    """Deliver a stored event again (same id and body) to every matching subscriber, or to one."""
    deliveries = await store.replay_event(event_id, subscriber_id)
    wake()
    return deliveries


async def retry_delivery(
    store: Store, delivery_id: str, *, wake: Callable[[], None] = lambda: None
) -> Delivery:
    """Make a failed or dead delivery due now. Raises :class:`NotFound`, :class:`Conflict`."""
    delivery = await store.retry_delivery(delivery_id)
    wake()
    return delivery


async def reprocess(ingest: Ingest, store: Store, inbound_id: str) -> Inbound:
    """Re-run a stored callback through the same pipeline as a live one (signature, parse, job
    checks, ``RELAY_CONFIRM_UNSIGNED``, state machine); the outcome is stored as a new message of
    kind ``reprocess`` and returned, whatever its verdict. Raises :class:`NotFound`, and
    :class:`ValidationFailed` for a message that is not a callback of a known job."""
    original = await store.get_inbound(inbound_id)
    if original.job_id is None or original.kind not in ("callback", "reprocess"):
        raise ValidationFailed(f"inbound message {inbound_id} is not a callback of a known job")
    job = await store.get_job(original.job_id)
    raw = RawMessage(original.headers, original.body, original.peer)
    try:
        result = await ingest.job_callback(get_adapter(original.vendor), job, raw, kind="reprocess")
        return await store.get_inbound(result.inbound_id)
    except (PayloadError, SignatureInvalid):  # stored with its verdict: show that message
        (latest,) = await store.list_inbound(job_id=job.id, limit=1)
        return await store.get_inbound(latest.id)


async def add_source(
    settings: Settings, store: Store, vendor: str, description: str | None
) -> tuple[Source, str]:
    """A callback URL for jobs submitted elsewhere; returns the source and its URL (shown only this
    once: the token is stored hashed). Raises :class:`NotFound` (vendor), :class:`ValidationFailed`
    (a synchronous vendor never calls back)."""
    adapter = get_adapter(vendor)
    if adapter.synchronous:
        raise ValidationFailed(f"vendor: {vendor} answers synchronously and never calls back")
    token, token_hash = new_token()
    source = await store.create_source(adapter.name, token_hash=token_hash, description=description)
    return source, callback_url(settings.public_url, adapter.name, token)


async def vendor_stats(
    store: Store, *, since: int | None = None, until: int | None = None, vendor: str | None = None
) -> StatsReport:
    """Vendors compared by numbers, for jobs created (and vendor messages received) in [``since``,
    ``until``) (unix ms; ``None``: unbounded): every known vendor (or only ``vendor``), zeros where
    it has no data. Per vendor (:class:`dispatch.store.stats.VendorStats`): jobs by state, success
    rate, top 10 failure codes, submit-to-terminal p50/p95/p99 in seconds, how outcomes arrived
    (callback, poll, the submit's ``response``, or the relay's own ``submit`` failure or
    ``timeout``) and the share of lost callbacks, duplicate/stale callbacks, signature rejections,
    submit errors by code, submit attempts and resubmits, and spend per unit as the vendors bill it
    (APIXO $0.01 per submitted image in ``usd``, Artnex ``credits_used`` and Apiframe ``creditCost``
    in ``credits``) with what of it went to resubmits and to results nobody received, and Dreamina's
    ``forecastCost`` apart as an estimate (:mod:`dispatch.costs`).

    ``report.to_json()`` is what ``GET /v1/stats`` answers and ``upscale-relay stats --json`` prints:
    ``{"since": "2026-11-01T00:00:00.000Z" | null, "until": ... | null, "vendors": [{"vendor":
    "apixo", "jobs": {"queued", "running", "succeeded", "failed", "total"}, "success_rate": 0.93 |
    null, ...}]}`` (see :meth:`dispatch.store.stats.VendorStats.to_json`).

    Raises :class:`ValidationFailed` for an unknown ``vendor``, ``since`` after ``until`` or a time
    before 1970 or after 9999, :class:`StoreUnavailable`.
    """
    if vendor is not None and vendor not in ADAPTERS:
        raise ValidationFailed(f"vendor: unknown vendor {vendor[:100]!r}; one of {', '.join(ADAPTERS)}")
    if since is not None and until is not None and since > until:
        raise ValidationFailed("since: must not be after until")
    for name, value in (("since", since), ("until", until)):
        try:
            iso_ms(value)
            if value is not None and value < 0:
                raise ValueError
        except (ValueError, OverflowError, OSError):
            raise ValidationFailed(f"{name}: out of range (1970-01-01 to 9999-12-31 UTC)") from None
    report = await store.vendor_stats(since=since, until=until, vendor=vendor)
    found = {v.vendor: v for v in report.vendors}
    names = [vendor] if vendor is not None else sorted(set(ADAPTERS) | set(found))
    return StatsReport(since, until, tuple(found.get(name, VendorStats(name)) for name in names))
