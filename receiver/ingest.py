"""The callback pipeline: authenticate, keep the raw message, parse, apply — one path for every vendor.

Callbacks, synchronous responses and (later) polls all end in ``store.record_message``, so the
same outcome arriving twice by different roads gives the same event id and no second event.
"""

from __future__ import annotations

from collections.abc import Callable

from dispatch.errors import PayloadError, SignatureInvalid
from dispatch.store.records import IngestResult, Job, RawMessage
from dispatch.store.runner import StoreRunner
from receiver.settings import Settings
from receiver.vendors.base import VendorAdapter


async def ingest_callback(
    runner: StoreRunner,
    settings: Settings,
    adapter: VendorAdapter,
    job: Job,
    raw: RawMessage,
    *,
    on_event: Callable[[], None] = lambda: None,
) -> IngestResult:
    """Verify, record and apply one vendor callback for ``job``.

    The raw message is stored whatever happens. Raises :class:`SignatureInvalid` (stored with
    verdict ``rejected``) or :class:`PayloadError` (stored with verdict ``invalid`` and the parse
    error, reprocessable later); both after the store committed. Returns the store's result, whose
    ``verdict`` is ``applied``, ``duplicate``, ``stale``, ``conflict`` or ``unknown_state``.
    """
    credential = settings.vendor_credential(adapter.credential_setting)
    try:
        adapter.verify_callback(raw.body, raw.headers, credential)
    except SignatureInvalid as exc:
        message = exc.message
        await runner.call(
            lambda s: s.record_message(job.id, "callback", raw, None, verdict="rejected", error=message)
        )
        raise
    try:
        update = adapter.parse_callback(raw.body, raw.headers)
    except PayloadError as exc:
        message = exc.message
        await runner.call(
            lambda s: s.record_message(job.id, "callback", raw, None, verdict="invalid", error=message)
        )
        raise
    result = await runner.call(lambda s: s.record_message(job.id, "callback", raw, update))
    if result.event_ids:
        on_event()
    return result
