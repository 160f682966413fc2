"""The Starlette app factory. Resources (the store, httpx client, dispatcher) live in the lifespan.

Example::

    app = create_app(load_settings(), run_worker=True)
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dispatch.retry import RetryPolicy
from dispatch.sender import Sender
from dispatch.store.face import RunnerStore, Store
from dispatch.store.postgres import listen_for_due
from dispatch.worker import Dispatcher
from receiver import console, retention
from receiver.api import (
    callbacks,
    deliveries,
    events,
    inbound,
    jobs,
    openapi,
    outputs,
    sources,
    stats,
    subscribers,
)
from receiver.api.common import Resources
from receiver.api.outputs import OutputHeaders
from receiver.auth import AdminAuthMiddleware
from receiver.database import open_runner
from receiver.errors import HANDLERS
from receiver.ingest import Ingest
from receiver.limits import BodyTimeoutMiddleware, HeaderLimitMiddleware
from receiver.metrics import RelayMetrics, metrics_route
from receiver.mirroring import MirrorRunner, MirrorTarget
from receiver.poller import Poller
from receiver.settings import Settings
from receiver.submit import Submitter
from receiver.throttle import AuthThrottle
from receiver.vendor_client import VendorClient


def make_dispatcher(
    settings: Settings,
    store: Store,
    sender: Sender,
    metrics: RelayMetrics | None = None,
    mirror: MirrorTarget | None = None,
) -> Dispatcher:
    """A dispatcher over ``store`` configured from ``settings``, counting its attempts in ``metrics``;
    with ``mirror`` each attempt carries freshly signed mirror URLs."""
    return Dispatcher(
        store,
        sender,
        policy=RetryPolicy(schedule=tuple(settings.retry_schedule), jitter=settings.retry_jitter),
        concurrency=settings.delivery_concurrency,
        per_subscriber=settings.delivery_per_subscriber,
        lease_seconds=settings.lease_seconds,
        poll_interval=settings.poll_interval,
        disable_after=settings.disable_after,
        notified=settings.is_postgres,  # woken by LISTEN/NOTIFY (see wake_on_notify), not polling
        on_attempt=None if metrics is None else metrics.delivery_attempt,
        prepare_body=None if mirror is None else mirror.refresh,
    )


def wake_on_notify(
    settings: Settings, wake: Callable[[], None], stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """On Postgres, a task that calls ``wake`` whenever any process commits due deliveries
    (``LISTEN``); on SQLite nothing (the in-process ``on_event`` wakes the dispatcher)."""
    if not settings.is_postgres:
        return []
    return [asyncio.create_task(listen_for_due(settings.database_url, wake, stop))]


def make_sender(settings: Settings) -> Sender:
    """The delivery HTTP sender (aiohttp) with the configured timeouts and target rules."""
    return Sender(
        connect_timeout=settings.delivery_connect_timeout,
        total_timeout=settings.delivery_timeout,
        allow_private=settings.allow_private_targets,
        https_only=settings.https_only_targets,
    )


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers (503 otherwise)."""
    res: Resources = request.state.resources
    ok = await res.store.ping()
    return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)


def create_app(settings: Settings, *, run_worker: bool = True) -> Starlette:
    """Build the relay app. ``run_worker`` runs the delivery dispatcher inside the app's lifespan.

    When ``settings.api_token`` is unset a random token is generated; read it from
    ``app.state.api_token`` (``upscale-relay serve`` prints it once).
    """
    api_token = settings.api_token.get_secret_value() if settings.api_token else secrets.token_urlsafe(32)
    metrics = RelayMetrics()  # this app's own registry: GET /metrics
    # failed sign-ins and wrong bearer tokens, one budget per client address for the API and the console
    throttle = AuthThrottle(settings.auth_failure_limit, settings.auth_failure_window)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Resources]]:
        runner = open_runner(settings)
        runner.start()
        store = RunnerStore(runner)
        app.state.metrics_store = store
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        wake = _noop
        try:
            async with httpx.AsyncClient(follow_redirects=False) as client, make_sender(settings) as sender:
                vendors = VendorClient(settings, client)
                mirror = MirrorTarget.from_settings(settings) if settings.mirror_url else None
                if run_worker:
                    dispatcher = make_dispatcher(settings, store, sender, metrics, mirror)
                    wake = dispatcher.wake
                    tasks.append(asyncio.create_task(dispatcher.run(stop, grace=settings.shutdown_grace)))
                    tasks.extend(wake_on_notify(settings, dispatcher.wake, stop))
                # submits are retried (and resubmitted) by the worker: here when this process runs
                # one, else by `upscale-relay worker` (it looks every RELAY_POLL_INTERVAL seconds)
                submitter = Submitter(settings, store, vendors, on_event=wake, metrics=metrics)
                resubmitted = submitter.wake if run_worker else _noop
                if run_worker:
                    tasks.append(asyncio.create_task(submitter.run(stop)))
                    poller = Poller(
                        settings, store, vendors, on_event=wake, on_resubmit=resubmitted, metrics=metrics
                    )
                    tasks.append(asyncio.create_task(poller.run(stop)))
                    tasks.append(asyncio.create_task(retention.run(settings, store, stop)))
                    if mirror is not None:  # copies outputs, then emits the held job.succeeded
                        mirroring = MirrorRunner(settings, store, mirror, on_event=wake, metrics=metrics)
                        tasks.append(asyncio.create_task(mirroring.run(stop)))
                ingest = Ingest(
                    settings, store, vendors, on_event=wake, on_resubmit=resubmitted, metrics=metrics
                )
                resources = Resources(settings, store, submitter, ingest, api_token, wake, metrics, mirror)
                app.state.resources = resources
                yield {"resources": resources}
                stop.set()
                await submitter.drain(settings.shutdown_grace)
                await asyncio.gather(*tasks)
        finally:
            runner.stop()

    routes = [
        *callbacks.routes,  # first: the busiest path, matched before the others are tried
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *jobs.routes,
        *events.routes,
        *inbound.routes,
        *subscribers.routes,
        *deliveries.routes,
        *sources.routes,
        *outputs.routes,
        *stats.routes,
        *openapi.routes,
        metrics_route,
        console.mount(settings, api_token, throttle),  # /console: the operator console
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(OutputHeaders),  # outermost: its headers are on the others' refusals too
            Middleware(BodyTimeoutMiddleware, timeout=settings.body_timeout),
            Middleware(
                HeaderLimitMiddleware, max_count=settings.max_headers, max_bytes=settings.max_header_bytes
            ),
            Middleware(
                AdminAuthMiddleware,
                token=api_token,
                metrics_public=settings.metrics_public,
                throttle=throttle,
            ),
        ],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.api_token = api_token
    app.state.metrics = metrics
    return app


def _noop() -> None:
    return None
