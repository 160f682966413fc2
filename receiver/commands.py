"""CLI commands over the operations layer (:mod:`receiver.operations`): each parses its options, calls
the same function the HTTP API calls, and renders the result. Registered on the ``upscale-relay``
group by :mod:`receiver.cli`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from dispatch.model import EVENT_TYPES, parse_iso
from dispatch.store.face import Store
from receiver import operations
from receiver.cli import _after, _emit, _paged, _with_store, cli, cursor_option, json_option, relay_errors
from receiver.ingest import Ingest
from receiver.settings import Settings
from receiver.submit import Submitter
from receiver.vendor_client import VendorClient
from receiver.vendors import ADAPTERS

T = TypeVar("T")
page_limit = click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))


@asynccontextmanager
async def _vendors(settings: Settings) -> AsyncIterator[VendorClient]:
    async with httpx.AsyncClient(follow_redirects=False) as client:
        yield VendorClient(settings, client)


def _params(value: str) -> dict[str, Any]:
    """``--params`` as JSON text or ``@file``. Raises ``click.BadParameter``."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {value[1:]}: {exc.strerror}", param_hint="--params"
            ) from None
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--params") from None
    if not isinstance(params, dict):
        raise click.BadParameter("must be a JSON object of the vendor's fields", param_hint="--params")
    return params


def _millis(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        parsed = parse_iso(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint=name)
    return int(parsed.timestamp() * 1000)


# jobs submit ------------------------------------------------------------------------------------
jobs_group = cli.commands["jobs"]
assert isinstance(jobs_group, click.Group)


@jobs_group.command("submit")
@click.argument("vendor", type=click.Choice(list(ADAPTERS)))
@click.option("--params", "params_text", required=True, help="The vendor's fields as JSON, or @file.json.")
@click.option("--reference", help="Your own reference, echoed in every event.")
@click.option("--idempotency-key", help="Submitting again with this key returns the first job.")
@click.pass_context
@relay_errors
def jobs_submit(
    ctx: click.Context, vendor: str, params_text: str, reference: str | None, idempotency_key: str | None
) -> None:
    """Submit a job to a vendor and print it as JSON (retries are left to a running worker).

    Example: upscale-relay jobs submit apixo --params '{"input": {"image_urls": ["https://x/a.jpg"]}}'
    """
    params = _params(params_text)

    async def submit(settings: Settings, store: Store) -> tuple[Any, bool]:
        async with _vendors(settings) as vendors:
            submitter = Submitter(settings, store, vendors)
            job, replayed = await submitter.create_job(
                vendor, params, reference, idempotency_key=idempotency_key
            )
            await submitter.drain(settings.shutdown_grace)
            return job, replayed

    job, replayed = _with_store(ctx, submit)
    click.echo(json.dumps({**job.to_json(), "replayed": replayed}, indent=2, ensure_ascii=False))


# inbound ----------------------------------------------------------------------------------------
@cli.group()
def inbound() -> None:
    """Stored vendor messages (callbacks, submit answers, polls). Example: upscale-relay inbound list"""


@inbound.command("list")
@click.option("--job", "job_id")
@click.option("--vendor", type=click.Choice(list(ADAPTERS)))
@click.option("--verdict")
@page_limit
@cursor_option
@json_option
@click.pass_context
@relay_errors
def inbound_list(
    ctx: click.Context,
    job_id: str | None,
    vendor: str | None,
    verdict: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List stored vendor messages, newest first (bodies cut at 8 KiB).

    Example: upscale-relay inbound list --verdict invalid --json
    """
    after = _after(cursor)
    rows = _with_store(
        ctx,
        lambda s, store: store.list_inbound(
            job_id=job_id,
            vendor=vendor,
            verdict=verdict,
            limit=limit + 1,
            body_prefix=operations.BODY_PREVIEW_BYTES,
            after=after,
        ),
        read_only=True,
    )
    shown = [i.to_json() for i in _paged(rows, limit, lambda i: (i.received_at, i.id))]
    _emit(
        shown,
        ["id", "job_id", "vendor", "kind", "verdict", "size", "received_at", "error"],
        as_json,
        "inbound",
    )


@inbound.command("show")
@click.argument("inbound_id")
@click.pass_context
@relay_errors
def inbound_show(ctx: click.Context, inbound_id: str) -> None:
    """Show one stored message, whole, as JSON. Example: upscale-relay inbound show in_…"""
    row = _with_store(ctx, lambda s, store: store.get_inbound(inbound_id), read_only=True)
    click.echo(json.dumps(row.to_json(), indent=2, ensure_ascii=False))


@inbound.command("reprocess")
@click.argument("inbound_id")
@click.pass_context
@relay_errors
def inbound_reprocess(ctx: click.Context, inbound_id: str) -> None:
    """Re-run a stored callback through the current adapter, as a live callback; print the result.

    Example: upscale-relay inbound reprocess in_…
    """

    async def go(settings: Settings, store: Store) -> Any:
        async with _vendors(settings) as vendors:
            return await operations.reprocess(Ingest(settings, store, vendors), store, inbound_id)

    row = _with_store(ctx, go)
    click.echo(json.dumps(row.to_json(), indent=2, ensure_ascii=False))


# mirror -----------------------------------------------------------------------------------------
@cli.command("mirror")
@click.argument("job_id")
@click.pass_context
@relay_errors
def mirror(ctx: click.Context, job_id: str) -> None:
    """Copy a succeeded job's outputs to RELAY_MIRROR_URL again now; print the job.

    A held job.succeeded is emitted; an emitted one's stored body gets the new outputs (replay it to
    re-send). Example: upscale-relay mirror job_…
    """
    from receiver.mirroring import remirror

    job = _with_store(ctx, lambda settings, store: remirror(store, settings, job_id))
    click.echo(json.dumps(job.to_json(), indent=2, ensure_ascii=False))


# sources ----------------------------------------------------------------------------------------
@cli.group()
def sources() -> None:
    """Callback URLs for jobs submitted elsewhere. Example: upscale-relay sources add dreamina"""


@sources.command("add")
@click.argument("vendor", type=click.Choice([a.name for a in ADAPTERS.values() if not a.synchronous]))
@click.option("--description")
@click.pass_context
@relay_errors
def sources_add(ctx: click.Context, vendor: str, description: str | None) -> None:
    """Create a source and print its callback URL (shown only now).

    Example: RELAY_PUBLIC_URL=https://relay.example.com upscale-relay sources add dreamina
    """
    source, url = _with_store(
        ctx, lambda settings, store: operations.add_source(settings, store, vendor, description)
    )
    click.echo(f"{source.id} {source.vendor}")
    click.echo(f"callback URL: {url}")


@sources.command("list")
@page_limit
@cursor_option
@json_option
@click.pass_context
@relay_errors
def sources_list(ctx: click.Context, limit: int, cursor: str | None, as_json: bool) -> None:
    """List sources, oldest first (their URLs are never shown again). Example: upscale-relay sources list"""
    after = _after(cursor)
    rows = _with_store(ctx, lambda s, store: store.list_sources(limit=limit + 1, after=after), read_only=True)
    shown = [r.to_json() for r in _paged(rows, limit, lambda r: (r.created_at, r.id))]
    _emit(shown, ["id", "vendor", "description", "created_at"], as_json, "sources")


# subscribers show / update / enable / disable ----------------------------------------------------
subscribers_group = cli.commands["subscribers"]
assert isinstance(subscribers_group, click.Group)


@subscribers_group.command("show")
@click.argument("subscriber_id")
@click.pass_context
@relay_errors
def subscribers_show(ctx: click.Context, subscriber_id: str) -> None:
    """Show one subscriber as JSON (never its secret). Example: upscale-relay subscribers show sub_…"""
    sub = _with_store(ctx, lambda s, store: store.get_subscriber(subscriber_id), read_only=True)
    click.echo(json.dumps(sub.to_json(), indent=2, ensure_ascii=False))


@subscribers_group.command("update")
@click.argument("subscriber_id")
@click.option("--url")
@click.option("--event-type", "event_types", multiple=True, type=click.Choice(EVENT_TYPES))
@click.option("--description")
@click.option("--retry-schedule", help="JSON list of seconds, e.g. [5, 60, 600]; 'default' for the relay's.")
@click.pass_context
@relay_errors
def subscribers_update(
    ctx: click.Context,
    subscriber_id: str,
    url: str | None,
    event_types: tuple[str, ...],
    description: str | None,
    retry_schedule: str | None,
) -> None:
    """Change a subscriber's URL, event types, description or retry schedule.

    Example: upscale-relay subscribers update sub_… --event-type job.succeeded --event-type job.failed
    """
    changes: dict[str, Any] = {}
    if url is not None:
        changes["url"] = url
    if event_types:
        changes["event_types"] = list(event_types)
    if description is not None:
        changes["description"] = description
    if retry_schedule is not None:
        changes["retry_schedule"] = None if retry_schedule == "default" else _schedule(retry_schedule)
    if not changes:
        raise click.UsageError(
            "nothing to change: give --url, --event-type, --description or --retry-schedule"
        )
    sub = _with_store(
        ctx, lambda settings, store: operations.update_subscriber(settings, store, subscriber_id, changes)
    )
    click.echo(json.dumps(sub.to_json(), indent=2, ensure_ascii=False))


def _schedule(text: str) -> list[float]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, int | float) and 0 <= v <= 604800 for v in value):
        raise click.BadParameter(
            "must be a JSON list of seconds (0-604800), e.g. [5, 60, 600]", param_hint="--retry-schedule"
        )
    return [float(v) for v in value]


def _set_enabled(ctx: click.Context, subscriber_id: str, enabled: bool) -> None:
    sub = _with_store(
        ctx,
        lambda settings, store: operations.update_subscriber(
            settings, store, subscriber_id, {"enabled": enabled}
        ),
    )
    click.echo(f"{sub.id} {'enabled' if sub.enabled else 'disabled'}")


@subscribers_group.command("enable")
@click.argument("subscriber_id")
@click.pass_context
@relay_errors
def subscribers_enable(ctx: click.Context, subscriber_id: str) -> None:
    """Enable a subscriber (its failure streak is cleared). Example: upscale-relay subscribers enable sub_…"""
    _set_enabled(ctx, subscriber_id, True)


@subscribers_group.command("disable")
@click.argument("subscriber_id")
@click.pass_context
@relay_errors
def subscribers_disable(ctx: click.Context, subscriber_id: str) -> None:
    """Disable a subscriber: its new events are kept as failed deliveries for a later recover.

    Example: upscale-relay subscribers disable sub_…
    """
    _set_enabled(ctx, subscriber_id, False)
