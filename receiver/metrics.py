"""Prometheus metrics (``GET /metrics``), one :class:`RelayMetrics` per app or worker process.

Every process counts what it does itself and serves its own ``/metrics``: the web app (``serve``) at
``/metrics`` on its port, ``upscale-relay worker`` on ``--metrics-port`` (``RELAY_WORKER_METRICS_PORT``).
Counters are per process (Prometheus sums them across instances); the gauges are read from the shared
database at scrape time (``Store.operations_snapshot``), so every process shows the same values.

Each :class:`RelayMetrics` has its own ``CollectorRegistry`` (never prometheus_client's global one), so
several apps in one process (the test suite) do not collide.

Example::

    metrics = RelayMetrics()
    metrics.callback("apixo", "applied")
    text = await render(metrics, store)  # the Prometheus text exposition format
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatch.model import EventType
from dispatch.store.face import Store
from dispatch.store.records import IngestResult, Job
from receiver.throttle import AuthThrottle

# Seconds: vendor calls take from tens of ms to minutes (LTX pollForResult holds up to 75 s).
VENDOR_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Seconds: a subscriber's answer, bounded by RELAY_DELIVERY_TIMEOUT (15 s by default).
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)


class RelayMetrics:
    """The relay's metric objects, registered in a registry of their own (``self.registry``).

    Counters (``_total`` in the exposition): ``relay_callbacks_total{vendor,verdict}``,
    ``relay_vendor_submits_total{vendor,outcome}``, ``relay_status_polls_total{vendor,outcome}``,
    ``relay_events_total{type}``, ``relay_delivery_attempts_total{outcome}``,
    ``relay_mirror_total{vendor,outcome}``. Histograms (seconds):
    ``relay_vendor_submit_duration_seconds{vendor}``, ``relay_status_poll_duration_seconds{vendor}``,
    ``relay_delivery_attempt_duration_seconds{outcome}``. Gauges, set at scrape time from the store:
    ``relay_deliveries_due``, ``relay_oldest_due_delivery_age_seconds``, ``relay_dead_letters``,
    ``relay_disabled_subscribers``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.callbacks = Counter(
            "relay_callbacks",
            "Vendor callbacks received, by vendor and verdict",
            ["vendor", "verdict"],
            registry=r,
        )
        self.submits = Counter(
            "relay_vendor_submits",
            "Vendor submit attempts, by vendor and outcome (accepted, refused, retry, unknown, error)",
            ["vendor", "outcome"],
            registry=r,
        )
        self.submit_seconds = Histogram(
            "relay_vendor_submit_duration_seconds",
            "Duration of one vendor submit request",
            ["vendor"],
            buckets=VENDOR_BUCKETS,
            registry=r,
        )
        self.polls = Counter(
            "relay_status_polls",
            "Vendor status polls, by vendor and outcome (answered, error, gone, invalid, timeout)",
            ["vendor", "outcome"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            "relay_status_poll_duration_seconds",
            "Duration of one vendor status poll",
            ["vendor"],
            buckets=VENDOR_BUCKETS,
            registry=r,
        )
        self.events = Counter("relay_events", "Events emitted to subscribers, by type", ["type"], registry=r)
        self.deliveries = Counter(
            "relay_delivery_attempts",
            "Delivery attempts, by outcome (succeeded, failed, refused, timeout, unreachable, error)",
            ["outcome"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "relay_delivery_attempt_duration_seconds",
            "Duration of one delivery attempt",
            ["outcome"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.mirrors = Counter(
            "relay_mirror",
            "Outputs copied to RELAY_MIRROR_URL, by vendor and outcome (copied, retry, too_large, refused,"
            " expired, deadline_passed)",
            ["vendor", "outcome"],
            registry=r,
        )
        self.deliveries_due = Gauge(
            "relay_deliveries_due", "Deliveries due now (pending or retrying)", registry=r
        )
        self.oldest_due_age = Gauge(
            "relay_oldest_due_delivery_age_seconds",
            "How long the oldest due delivery has been due (0 when none is)",
            registry=r,
        )
        self.dead_letters = Gauge("relay_dead_letters", "Dead deliveries (dead letters)", registry=r)
        self.disabled_subscribers = Gauge(
            "relay_disabled_subscribers", "Subscribers disabled (by an operator or automatically)", registry=r
        )

    def callback(self, vendor: str, verdict: str) -> None:
        """Count one callback with its verdict (``applied``, ``duplicate``, ``rejected``, ...)."""
        self.callbacks.labels(vendor=vendor, verdict=verdict).inc()

    def submit(self, vendor: str, outcome: str, seconds: float | None) -> None:
        """Count one vendor submit attempt; ``seconds`` is ``None`` when no request was sent."""
        self.submits.labels(vendor=vendor, outcome=outcome).inc()
        if seconds is not None:
            self.submit_seconds.labels(vendor=vendor).observe(seconds)

    def poll(self, vendor: str, outcome: str, seconds: float | None) -> None:
        """Count one status poll; ``seconds`` is ``None`` when the vendor was not asked (a timeout)."""
        self.polls.labels(vendor=vendor, outcome=outcome).inc()
        if seconds is not None:
            self.poll_seconds.labels(vendor=vendor).observe(seconds)

    def delivery_attempt(self, outcome: str, seconds: float) -> None:
        """Count one finished delivery attempt and its duration; the :class:`dispatch.worker.Dispatcher`
        calls this (as its ``on_attempt``) where each attempt finishes."""
        self.deliveries.labels(outcome=outcome).inc()
        self.delivery_seconds.labels(outcome=outcome).observe(seconds)

    def mirror(self, vendor: str, outcome: str) -> None:
        """Count one output's mirroring outcome (:mod:`receiver.mirroring`): ``copied``, ``retry`` or
        the final ``mirror_error`` code."""
        self.mirrors.labels(vendor=vendor, outcome=outcome).inc()

    def emitted(self, event_types: Iterable[str]) -> None:
        """Count events just emitted, by type (each event once, where the store returned it new),
        e.g. ``metrics.emitted(result.event_types)``."""
        for event_type in event_types:
            self.events.labels(type=event_type).inc()

    async def refresh(self, store: Store, now: float | None = None) -> None:
        """Set the gauges from the store (:meth:`Store.operations_snapshot`). Raises
        :class:`StoreUnavailable`."""
        at = int((time.time() if now is None else now) * 1000)
        snap = await store.operations_snapshot(at)
        self.deliveries_due.set(snap["deliveries_due"])
        self.oldest_due_age.set(snap["oldest_due_age_seconds"])
        self.dead_letters.set(snap["dead_letters"])
        self.disabled_subscribers.set(snap["disabled_subscribers"])

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def observe_result(
    metrics: RelayMetrics, logger: logging.Logger, result: IngestResult, *, via: str, before: Job | None
) -> None:
    """What every road into the state machine does with a stored vendor message's result: count its
    new events and, when it was applied and moved the job to another status, log the change at INFO
    (fields ``job_id``, ``vendor``, ``status``, ``previous_status``, ``via`` as structured keys).

    ``before`` is the job as it was (``None`` when unknown, e.g. a source callback's first sight: then
    any new state event counts as a change)."""
    job = result.job
    if job is None:
        return
    metrics.emitted(result.event_types)
    if result.verdict != "applied":
        return
    previous = before.status.value if before is not None else None
    if previous == job.status.value:
        return
    if previous is None and all(t == EventType.PROGRESS for t in result.event_types):
        return
    logger.info(
        "job %s (%s) is %s (was %s), via %s",
        job.id,
        job.vendor,
        job.status.value,
        previous or "unknown",
        via,
        extra={
            "job_id": job.id,
            "vendor": job.vendor,
            "status": job.status.value,
            "previous_status": previous,
            "via": via,
        },
    )


async def metrics_endpoint(request: Request) -> Response:
    """The relay's metrics in the Prometheus text format: counters of this process and gauges read
    from the database now. Needs the admin token unless ``RELAY_METRICS_PUBLIC=true``."""
    metrics: RelayMetrics = request.app.state.metrics
    store: Store = request.app.state.metrics_store
    await metrics.refresh(store)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


metrics_route = Route("/metrics", metrics_endpoint, methods=["GET"])


def metrics_app(
    metrics: RelayMetrics, store: Store, *, token: str, public: bool, throttle: AuthThrottle | None = None
) -> Starlette:
    """A Starlette app serving only ``GET /metrics`` (the worker's own), protected like the web
    app's: ``Authorization: Bearer <token>`` unless ``public``, wrong tokens counted in ``throttle``
    (:mod:`receiver.throttle`; its defaults when ``None``)."""
    from receiver.auth import AdminAuthMiddleware
    from receiver.errors import HANDLERS

    app = Starlette(
        routes=[metrics_route],
        middleware=[Middleware(AdminAuthMiddleware, token=token, metrics_public=public, throttle=throttle)],
        exception_handlers=HANDLERS,
    )
    app.state.metrics = metrics
    app.state.metrics_store = store
    return app


async def serve_metrics(app: Starlette, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``app`` (:func:`metrics_app`) with uvicorn on ``host:port`` until ``stop`` is set; the
    caller (``upscale-relay worker``) keeps its own signal handling. Exits the process when the port
    cannot be bound (uvicorn's behaviour), so a worker never runs without the metrics it was asked for."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the worker's own handlers set ``stop``
            yield

    config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="off", access_log=False)
    server = _Server(config)

    async def stopper() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stopper())
    try:
        await server.serve()
    finally:
        watcher.cancel()
