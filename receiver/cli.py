"""``upscale-relay``: a thin click layer over the library (sqlite-utils style).

Inspection commands open the store directly, so they need no running server. Every command's help
has a one-line summary and an example.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from dispatch.errors import RelayError
from dispatch.model import DEFAULT_EVENT_TYPES, EVENT_TYPES, JobState
from dispatch.store.records import DELIVERY_STATUSES
from dispatch.store.sql import page_key, parse_page_key
from receiver.eventloop import run_loop
from receiver.settings import Settings, load_settings

if TYPE_CHECKING:
    from dispatch.store.face import Store
    from receiver.database import SyncStore
from receiver.vendors import ADAPTERS

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
R = TypeVar("R")
console = Console()


def relay_errors(fn: F) -> F:
    """Turn a :class:`RelayError` into a clean ``Error: message`` and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RelayError as exc:
            raise click.ClickException(exc.message) from None

    return wrapper  # type: ignore[return-value]


FLAGS = {"database_url": "--database"}  # settings a global CLI flag can set, for error messages


def _settings(ctx: click.Context) -> Settings:
    overrides: dict[str, Any] = ctx.find_root().obj or {}
    return load_settings(flags=FLAGS, **overrides)


@contextmanager
def _store(ctx: click.Context, *, read_only: bool = False) -> Iterator[SyncStore]:
    """The configured store for one command; ``read_only`` commands never create or migrate a
    database (a missing SQLite file is a clear error)."""
    from receiver.database import open_store

    store = open_store(_settings(ctx), read_only=read_only)
    try:
        yield store
    finally:
        store.close()


def _emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool, title: str) -> None:
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
limit_option = click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
cursor_option = click.option("--cursor", help="Continue after the page that printed this cursor.")


def _after(cursor: str | None) -> tuple[int, str] | None:
    """``--cursor`` as a keyset position. Raises ``click.BadParameter`` for one no list printed."""
    if cursor is None:
        return None
    try:
        return parse_page_key(cursor)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cursor") from None


def _paged(rows: list[R], limit: int, key: Callable[[R], tuple[int, str]]) -> list[R]:
    """The page to print (``rows`` was fetched with ``limit + 1``); the next page's cursor goes to
    stderr as ``next cursor: …``."""
    if len(rows) > limit:
        click.echo(f"next cursor: {page_key(*key(rows[limit - 1]))}", err=True)
    return rows[:limit]


@click.group()
@click.option("--database", "database_url", help="Override RELAY_DATABASE_URL, e.g. sqlite:///relay.db.")
@click.version_option(package_name="upscale-relay")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """upscale-relay: webhook receiver and signed event fan-out for AI image-upscale vendors.

    Example: upscale-relay demo
    """
    ctx.obj = {"database_url": database_url} if database_url else {}


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), help="Default: $PORT, else 8000.")
@click.option("--no-worker", is_flag=True, help="Do not run the delivery dispatcher in this process.")
@click.pass_context
@relay_errors
def serve(ctx: click.Context, host: str, port: int | None, no_worker: bool) -> None:
    """Run the HTTP relay (and the delivery dispatcher).

    Example: RELAY_PUBLIC_URL=https://relay.example.com upscale-relay serve --port 8000
    """
    from receiver.app import create_app
    from receiver.database import open_store
    from receiver.logs import uvicorn_log_config
    from receiver.server import run_server
    from receiver.startup import startup_summary

    settings = _settings(ctx)
    if port is None:
        raw_port = os.environ.get("PORT", "8000")
        if not raw_port.isdigit() or int(raw_port) > 65535:
            raise click.BadParameter(f"PORT must be a port number 0-65535, got {raw_port[:40]!r}")
        port = int(raw_port)
    open_store(settings).close()  # a database that cannot be opened is a clear error now, not at startup
    app = create_app(settings, run_worker=not no_worker)
    if settings.api_token is None:
        click.echo(f"RELAY_API_TOKEN was not set; this run's admin token is: {app.state.api_token}", err=True)
    for line in startup_summary(settings, port=port, worker=not no_worker):
        click.echo(line, err=True)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the handler that was
    # installed before it: make that one a no-op so a graceful stop exits 0 (what process managers expect).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    # connection limits, header and keep-alive timeouts, and the shutdown grace: receiver/server.py
    run_server(app, settings, host, port, uvicorn_log_config(settings.log_level, settings.log_format))


@cli.command()
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds in-flight attempts get on SIGTERM [default: RELAY_SHUTDOWN_GRACE, 10].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve this worker's GET /metrics on this port [default: RELAY_WORKER_METRICS_PORT, off].",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
@click.pass_context
@relay_errors
def worker(ctx: click.Context, grace: float | None, metrics_port: int | None, metrics_host: str) -> None:
    """Run the delivery dispatcher, polling fallback and mirroring alone (no HTTP but its own /metrics).

    Example: upscale-relay worker --metrics-port 9100
    """
    import secrets

    import httpx

    from dispatch.store.face import RunnerStore
    from receiver import retention
    from receiver.app import make_dispatcher, make_sender, wake_on_notify
    from receiver.database import open_runner
    from receiver.logs import configure_logging
    from receiver.metrics import RelayMetrics, metrics_app, serve_metrics
    from receiver.mirroring import MirrorRunner, MirrorTarget
    from receiver.poller import Poller
    from receiver.startup import exposure_warnings
    from receiver.submit import Submitter
    from receiver.throttle import AuthThrottle
    from receiver.vendor_client import VendorClient

    settings = _settings(ctx)
    # the worker's own log lines go through the same level, format and secret redaction as serve's
    configure_logging(settings.log_level, settings.log_format)
    grace_seconds = settings.shutdown_grace if grace is None else grace
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    metrics = RelayMetrics()
    token = settings.api_token.get_secret_value() if settings.api_token else None
    if port is not None and token is None:
        token = secrets.token_urlsafe(32)
        if not settings.metrics_public:
            click.echo(f"RELAY_API_TOKEN was not set; this worker's /metrics token is: {token}", err=True)

    async def main() -> None:
        runner = open_runner(settings)
        runner.start()
        store = RunnerStore(runner)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with make_sender(settings) as sender, httpx.AsyncClient(follow_redirects=False) as client:
                mirror = MirrorTarget.from_settings(settings) if settings.mirror_url else None
                dispatcher = make_dispatcher(settings, store, sender, metrics, mirror)
                vendors = VendorClient(settings, client)
                submitter = Submitter(settings, store, vendors, on_event=dispatcher.wake, metrics=metrics)
                poller = Poller(
                    settings,
                    store,
                    vendors,
                    on_event=dispatcher.wake,
                    on_resubmit=submitter.wake,
                    metrics=metrics,
                )
                click.echo(f"worker {dispatcher.worker_id} delivering", err=True)
                for line in exposure_warnings(settings):
                    click.echo(line, err=True)
                served = []
                if port is not None:
                    assert token is not None
                    throttle = AuthThrottle(settings.auth_failure_limit, settings.auth_failure_window)
                    app = metrics_app(
                        metrics, store, token=token, public=settings.metrics_public, throttle=throttle
                    )
                    served.append(serve_metrics(app, metrics_host, port, stop))
                    click.echo(f"worker metrics on http://{metrics_host}:{port}/metrics", err=True)
                mirroring = []  # copies outputs, then emits the held job.succeeded
                if mirror is not None:
                    copier = MirrorRunner(settings, store, mirror, on_event=dispatcher.wake, metrics=metrics)
                    mirroring.append(copier.run(stop))
                await asyncio.gather(
                    *served,
                    dispatcher.run(stop, grace=grace_seconds),
                    poller.run(stop),
                    submitter.run(stop),
                    retention.run(settings, store, stop),
                    *wake_on_notify(settings, dispatcher.wake, stop),
                    *mirroring,
                )
        finally:
            runner.stop()

    run_loop(main())


def _with_store(
    ctx: click.Context, action: Callable[[Settings, Store], Awaitable[T]], *, read_only: bool = False
) -> T:
    """Run ``action(settings, store)`` on the async store face, as the HTTP handlers do: the
    operation is the same function whichever face (HTTP, CLI) calls it."""
    from dispatch.store.face import RunnerStore
    from receiver.database import open_runner

    settings = _settings(ctx)

    async def main() -> T:
        runner = open_runner(settings, read_only=read_only)
        runner.start()
        try:
            return await action(settings, RunnerStore(runner))
        finally:
            runner.stop()

    return asyncio.run(main())


@cli.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
@relay_errors
def prune(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Delete history older than RELAY_RETENTION_DAYS (workers also do this hourly).

    Kept always: every job's latest state, undelivered work and dead letters.

    Example: RELAY_RETENTION_DAYS=14 upscale-relay prune --dry-run
    """
    from receiver import retention

    counts = _with_store(ctx, lambda settings, store: retention.prune(settings, store, dry_run=dry_run))
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, **counts}))
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))


@cli.command()
@click.option("--status", "show_status", is_flag=True, help="List the migrations and when each was applied.")
@click.pass_context
@relay_errors
def migrate(ctx: click.Context, show_status: bool) -> None:
    """Create or upgrade the database's tables (serve and worker also do this at start).

    Example: RELAY_DATABASE_URL=postgresql://relay@db:5432/relay upscale-relay migrate --status
    """
    from receiver.database import migrate as apply_migrations, migration_status

    settings = _settings(ctx)
    if show_status:
        rows = [{"migration": name, "applied_at": at or "pending"} for name, at in migration_status(settings)]
        _emit(rows, ["migration", "applied_at"], False, "migrations")
        return
    applied = apply_migrations(settings)
    click.echo(
        f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "database is up to date"
    )


@cli.command()
@click.option("--timeout", default=30.0, show_default=True, help="Seconds before the demo gives up.")
@click.option("--keep", is_flag=True, help="Keep the demo's SQLite file and print its path.")
@relay_errors
def demo(timeout: float, keep: bool) -> None:
    """Run the relay end to end against fake vendors and a verifying subscriber, on loopback.

    Example: upscale-relay demo
    """
    from receiver.demo import run_demo

    sys.exit(0 if run_demo(timeout=timeout, keep=keep, console=console) else 1)


# jobs -------------------------------------------------------------------------------------------
@cli.group()
def jobs() -> None:
    """Inspect jobs. Example: upscale-relay jobs list --vendor apixo"""


@jobs.command("list")
@click.option("--vendor", type=click.Choice(list(ADAPTERS)))
@click.option("--status", type=click.Choice([state.value for state in JobState]))
@limit_option
@cursor_option
@json_option
@click.pass_context
@relay_errors
def jobs_list(
    ctx: click.Context, vendor: str | None, status: str | None, limit: int, cursor: str | None, as_json: bool
) -> None:
    """List jobs, newest first; the next page's cursor is printed on stderr.

    Example: upscale-relay jobs list --status failed --limit 20
    """
    with _store(ctx, read_only=True) as store:
        found = store.list_jobs(vendor=vendor, status=status, limit=limit + 1, after=_after(cursor))
        rows = [j.to_json() for j in _paged(found, limit, lambda j: (j.created_at, j.id))]
    _emit(
        rows,
        ["id", "vendor", "vendor_job_id", "status", "progress", "reference", "created_at"],
        as_json,
        "jobs",
    )


@jobs.command("show")
@click.argument("job_id")
@click.pass_context
@relay_errors
def jobs_show(ctx: click.Context, job_id: str) -> None:
    """Show one job with its callbacks and events as JSON. Example: upscale-relay jobs show job_…"""
    from receiver import operations

    detail = _with_store(ctx, lambda _, store: operations.job_detail(store, job_id), read_only=True)
    click.echo(json.dumps(detail.to_json(), indent=2, ensure_ascii=False))


# events -----------------------------------------------------------------------------------------
@cli.group()
def events() -> None:
    """Inspect events. Example: upscale-relay events list --type job.failed"""


@events.command("list")
@click.option("--job", "job_id")
@click.option("--vendor", type=click.Choice(list(ADAPTERS)))
@click.option("--type", "event_type", type=click.Choice(EVENT_TYPES))
@limit_option
@cursor_option
@json_option
@click.pass_context
@relay_errors
def events_list(
    ctx: click.Context,
    job_id: str | None,
    vendor: str | None,
    event_type: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List events, newest first; the next page's cursor is printed on stderr.

    Example: upscale-relay events list --job job_…
    """
    with _store(ctx, read_only=True) as store:
        found = store.list_events(
            job_id=job_id, vendor=vendor, type=event_type, limit=limit + 1, after=_after(cursor)
        )
        rows = [e.to_json() for e in _paged(found, limit, lambda e: (e.created_at, e.id))]
    _emit(rows, ["id", "type", "job_id", "sequence", "created_at"], as_json, "events")


@events.command("show")
@click.argument("event_id")
@click.pass_context
@relay_errors
def events_show(ctx: click.Context, event_id: str) -> None:
    """Show one event and its payload as JSON. Example: upscale-relay events show evt_…"""
    with _store(ctx, read_only=True) as store:
        out = store.get_event(event_id).to_json()
        out["deliveries"] = [d.to_json() for d in store.list_deliveries(event_id=event_id, limit=500)]
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))


@cli.command()
@click.argument("event_id")
@click.option("--subscriber", "subscriber_id", help="Replay to this subscriber only.")
@click.pass_context
@relay_errors
def replay(ctx: click.Context, event_id: str, subscriber_id: str | None) -> None:
    """Deliver a stored event again, with the same event id. Example: upscale-relay replay evt_…"""
    from receiver import operations

    created = _with_store(ctx, lambda _, store: operations.replay(store, event_id, subscriber_id))
    click.echo(f"queued {len(created)} deliver{'y' if len(created) == 1 else 'ies'} of {event_id}")
    for d in created:
        click.echo(f"  {d.id} → {d.subscriber_id} (generation {d.generation})")


# subscribers ------------------------------------------------------------------------------------
@cli.group()
def subscribers() -> None:
    """Manage subscribers. Example: upscale-relay subscribers add https://app.example.com/hooks"""


@subscribers.command("add")
@click.argument("url")
@click.option(
    "--event-type",
    "event_types",
    multiple=True,
    type=click.Choice(EVENT_TYPES),
    help=f"Repeatable; default: {', '.join(DEFAULT_EVENT_TYPES)}.",
)
@click.option("--description")
@click.option("--disabled", is_flag=True)
@click.pass_context
@relay_errors
def subscribers_add(
    ctx: click.Context, url: str, event_types: tuple[str, ...], description: str | None, disabled: bool
) -> None:
    """Add a subscriber and print its secret (shown only now). Example: upscale-relay subscribers add URL"""
    from receiver import operations

    sub, secret = _with_store(
        ctx,
        lambda settings, store: operations.add_subscriber(
            settings,
            store,
            url,
            event_types=event_types or DEFAULT_EVENT_TYPES,
            description=description,
            enabled=not disabled,
        ),
    )
    click.echo(f"{sub.id} {sub.url}")
    click.echo(f"secret: {secret}")


@subscribers.command("list")
@limit_option
@cursor_option
@json_option
@click.pass_context
@relay_errors
def subscribers_list(ctx: click.Context, limit: int, cursor: str | None, as_json: bool) -> None:
    """List subscribers, oldest first; the next page's cursor is printed on stderr.

    Example: upscale-relay subscribers list --json
    """
    with _store(ctx, read_only=True) as store:
        found = store.list_subscribers(limit=limit + 1, after=_after(cursor))
        rows = [s.to_json() for s in _paged(found, limit, lambda s: (s.created_at, s.id))]
    _emit(rows, ["id", "url", "event_types", "enabled", "description"], as_json, "subscribers")


@subscribers.command("remove")
@click.argument("subscriber_id")
@click.pass_context
@relay_errors
def subscribers_remove(ctx: click.Context, subscriber_id: str) -> None:
    """Delete a subscriber; its pending deliveries end. Example: upscale-relay subscribers remove sub_…"""
    with _store(ctx) as store:
        store.delete_subscriber(subscriber_id)
    click.echo(f"removed {subscriber_id}")


@subscribers.command("rotate-secret")
@click.argument("subscriber_id")
@click.pass_context
@relay_errors
def subscribers_rotate(ctx: click.Context, subscriber_id: str) -> None:
    """Give a subscriber a new secret; the old one keeps signing for RELAY_SECRET_OVERLAP seconds.

    Example: upscale-relay subscribers rotate-secret sub_…
    """
    from receiver import operations

    sub, secret = _with_store(
        ctx, lambda settings, store: operations.rotate_secret(settings, store, subscriber_id)
    )
    click.echo(f"secret: {secret}")
    click.echo(f"the previous secret keeps signing until {sub.to_json()['previous_secret_expires_at']}")


def _when(value: str, name: str) -> int:
    from dispatch.model import parse_iso

    try:
        parsed = parse_iso(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint=name) from None
    assert parsed is not None
    return int(parsed.timestamp() * 1000)


@subscribers.command("recover")
@click.argument("subscriber_id")
@click.option("--since", required=True, help="ISO-8601 start of the window, e.g. 2026-11-20T00:00:00Z.")
@click.option("--until", help="ISO-8601 end of the window (default: now).")
@click.option("--dry-run", is_flag=True, help="Only count what would be re-sent.")
@click.pass_context
@relay_errors
def subscribers_recover(
    ctx: click.Context, subscriber_id: str, since: str, until: str | None, dry_run: bool
) -> None:
    """Re-send a subscriber's failed and dead deliveries from a time window, re-enabling it.

    Example: upscale-relay subscribers recover sub_… --since 2026-11-20T00:00:00Z
    """
    from rich.progress import Progress

    since_ms = _when(since, "--since")
    until_ms = _when(until, "--until") if until else None
    if until_ms is not None and until_ms <= since_ms:
        raise click.BadParameter("must be after --since", param_hint="--until")
    from receiver import operations

    if dry_run:
        found = _with_store(
            ctx,
            lambda _, store: operations.recover(
                store, subscriber_id, since=since_ms, until=until_ms, dry_run=True
            ),
        )
        click.echo(f"{found.count} deliver{'y' if found.count == 1 else 'ies'} would be re-sent")
        return
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("re-enqueueing", total=None)
        result = _with_store(
            ctx,
            lambda _, store: operations.recover(
                store,
                subscriber_id,
                since=since_ms,
                until=until_ms,
                dry_run=False,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            ),
        )
    done = result.count
    click.echo(f"re-enqueued {done} deliver{'y' if done == 1 else 'ies'}; {subscriber_id} is enabled")


# deliveries -------------------------------------------------------------------------------------
@cli.group()
def deliveries() -> None:
    """Inspect and retry deliveries. Example: upscale-relay deliveries list --status dead"""


@deliveries.command("list")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES))
@click.option("--subscriber", "subscriber_id")
@click.option("--event", "event_id")
@limit_option
@cursor_option
@json_option
@click.pass_context
@relay_errors
def deliveries_list(
    ctx: click.Context,
    status: str | None,
    subscriber_id: str | None,
    event_id: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List deliveries, newest first; the next page's cursor is printed on stderr.

    Example: upscale-relay deliveries list --status dead
    """
    with _store(ctx, read_only=True) as store:
        found = store.list_deliveries(
            status=status,
            subscriber_id=subscriber_id,
            event_id=event_id,
            limit=limit + 1,
            after=_after(cursor),
        )
        rows = [d.to_json() for d in _paged(found, limit, lambda d: (d.created_at, d.id))]
    _emit(
        rows,
        ["id", "event_id", "subscriber_id", "status", "attempts", "last_status_code", "next_attempt_at"],
        as_json,
        "deliveries",
    )


@deliveries.command("retry")
@click.argument("delivery_id")
@click.pass_context
@relay_errors
def deliveries_retry(ctx: click.Context, delivery_id: str) -> None:
    """Make a dead or retrying delivery due now. Example: upscale-relay deliveries retry dlv_…"""
    from receiver import operations

    d = _with_store(ctx, lambda _, store: operations.retry_delivery(store, delivery_id))
    click.echo(f"{d.id} is {d.status}, due now")


def main() -> None:
    """Console-script entry point."""
    cli()


# the commands over the operations layer live in their own module; importing it registers them
from receiver import commands, stats_cli  # noqa: E402, F401
