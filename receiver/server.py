"""The HTTP server behind ``upscale-relay serve``: uvicorn, bounded against idle and slow clients.

uvicorn's defaults let a hostile client hold the relay: connections that never finish their request
headers are kept forever (and past the process's open-file limit, new connections, ``/healthz``
included, are refused), and SIGTERM waits without end for a request whose body never arrives.
:func:`run_server` closes those holes with the relay's settings (README.md, "Configuration"):

* ``RELAY_LIMIT_CONCURRENCY``: open connections, and running requests, at once; when either count
  reaches it, a new request gets 503 (uvicorn's ``limit_concurrency``).
* ``RELAY_KEEPALIVE_TIMEOUT``: seconds an idle keep-alive connection stays open after a response
  (uvicorn's ``timeout_keep_alive``).
* ``RELAY_HEADER_TIMEOUT``: seconds a connection gets to send complete request headers, counted from
  when it opens or from the end of its previous response (:class:`HeaderTimeoutProtocol`; uvicorn
  has no such setting).
* ``RELAY_SHUTDOWN_GRACE``: after SIGTERM, requests still running get exactly this many seconds, then
  they are cancelled (uvicorn's ``timeout_graceful_shutdown``). The app's lifespan shutdown (the
  in-process dispatcher, with its own ``RELAY_SHUTDOWN_GRACE``) runs after that.

Before it listens, :func:`raise_open_file_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard limit,
so ``limit_concurrency`` connections fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from receiver.settings import Settings

#: File descriptors the relay needs besides client connections: listening socket, SQLite files and
#: their journals, outbound delivery and vendor connections, log files, the event loop's own.
FD_HEADROOM = 256

#: uvicorn's exit status when the server could not start (``uvicorn.config.STARTUP_FAILURE``).
STARTUP_FAILURE = 3


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol, plus a deadline for request headers (slowloris defence).

    A timer of ``header_timeout`` seconds starts when the connection opens and again after each
    complete response on a keep-alive connection (unless a pipelined request is already waiting);
    it is cancelled once a request's headers are complete. When it fires, the connection is closed
    without a response. Unlike uvicorn's keep-alive timer, it is not cancelled by the arrival of
    some bytes, so trickling a header byte at a time does not keep a connection.

    It relies only on the protocol callbacks ``connection_made``, ``connection_lost``,
    ``on_headers_complete`` (httptools parser) and ``on_response_complete`` (called by uvicorn's
    ``RequestResponseCycle``), checked against uvicorn 0.54. Use :func:`protocol_class` to bind
    the timeout.
    """

    header_timeout: float = 10.0  # seconds; set per server by protocol_class()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_transport: asyncio.Transport | None = None
        self._requests = 0  # requests whose headers are complete
        self._responses = 0  # responses completed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_transport = transport
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._requests += 1
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._responses += 1
        super().on_response_complete()
        if self._responses >= self._requests:  # nothing pipelined: the next request starts now
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        transport = self._header_transport
        if transport is not None and not transport.is_closing():
            loop = asyncio.get_running_loop()
            self._header_timer = loop.call_later(self.header_timeout, self._header_timeout_expired)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout_expired(self) -> None:
        self._header_timer = None
        transport = self._header_transport
        if transport is not None and not transport.is_closing():
            transport.close()


def protocol_class(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """A :class:`HeaderTimeoutProtocol` subclass closing connections whose request headers are not
    complete within ``header_timeout`` seconds; pass it to ``uvicorn.Config(http=...)``."""
    seconds = header_timeout

    class BoundHeaderTimeoutProtocol(HeaderTimeoutProtocol):
        header_timeout = seconds

    return BoundHeaderTimeoutProtocol


def raise_open_file_limit(wanted: int) -> tuple[int, int] | None:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit (or, if that is refused, to
    ``wanted``); never lowers it.

    Returns ``(soft, hard)`` afterwards (``resource.RLIM_INFINITY`` for unlimited), or ``None`` where
    the ``resource`` module does not exist (Windows).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    infinity = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == infinity:
        return soft, hard
    # the hard limit first; then just ``wanted`` (macOS, for one, refuses an "unlimited" soft limit)
    for target in (hard, wanted if hard == infinity else min(wanted, hard)):
        if target == infinity or target <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        break
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def ensure_open_file_limit(limit_concurrency: int) -> None:
    """Raise the open-file limit (:func:`raise_open_file_limit`); print a warning to stderr when it
    stays below ``limit_concurrency`` + :data:`FD_HEADROOM` descriptors."""
    wanted = limit_concurrency + FD_HEADROOM
    limits = raise_open_file_limit(wanted)
    if limits is None:
        return
    import resource

    soft, hard = limits
    if soft != resource.RLIM_INFINITY and soft < wanted:
        print(
            f"warning: the open-file limit is {soft} (hard limit {hard}), but RELAY_LIMIT_CONCURRENCY="
            f"{limit_concurrency} needs about {wanted}; past {soft} open files new connections are "
            "refused. Raise the limit (ulimit -n) or lower RELAY_LIMIT_CONCURRENCY.",
            file=sys.stderr,
            flush=True,
        )


def server_config(
    app: ASGIApp, settings: Settings, host: str, port: int, log_config: dict[str, Any]
) -> uvicorn.Config:
    """The uvicorn configuration for ``app`` on ``host:port`` with the relay's connection settings."""
    options: dict[str, Any] = {
        # uvicorn annotates these as int but uses them only as seconds (loop.call_later and
        # asyncio.wait_for), so fractional settings are kept as they are.
        "timeout_keep_alive": settings.keepalive_timeout,
        "timeout_graceful_shutdown": settings.shutdown_grace,
    }
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(settings.header_timeout),
        limit_concurrency=settings.limit_concurrency,
        log_level=settings.log_level.lower(),
        log_config=log_config,
        **options,
    )


def run_server(app: ASGIApp, settings: Settings, host: str, port: int, log_config: dict[str, Any]) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM (see the module docstring).

    Signals are handled as by ``uvicorn.run``: after a graceful stop uvicorn re-raises the signal
    under the handler installed before, so the caller decides the exit status. Exits with status 3
    when the server could not start (e.g. the port is taken).
    """
    ensure_open_file_limit(settings.limit_concurrency)
    server = uvicorn.Server(server_config(app, settings, host, port, log_config))
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl+C, as uvicorn.run does
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
