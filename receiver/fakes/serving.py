"""Run ASGI apps on real loopback sockets for tests and the demo, and poll instead of sleeping.

``serve_in_thread(app)`` binds a socket on a free port (port 0), runs ``uvicorn.Server`` in a daemon
thread and returns once uvicorn reports ``started``::

    with serve_in_thread(create_app()) as server:
        httpx.get(server.url + "/healthz")        # server.url == "http://127.0.0.1:54321"
        wait_until(lambda: log.count() == 1, message="no delivery arrived")

``wait_until`` is the only way tests wait for something asynchronous: it polls a predicate until it
is true and fails with a clear message at the deadline.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

__all__ = ["RunningServer", "ServerStartError", "free_port", "serve_factory", "serve_in_thread", "wait_until"]


class ServerStartError(RuntimeError):
    """The server did not report ``started`` before the deadline, or its thread died first."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it via port 0).

    Racy by nature: prefer ``serve_in_thread``, which keeps the bound socket instead.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition not met",
) -> None:
    """Poll ``predicate()`` every ``interval`` seconds until it is truthy.

    Raises ``AssertionError("<message> (waited <timeout> s)")`` when ``timeout`` seconds pass first.
    The predicate is always evaluated at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (waited {timeout} s)")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


class RunningServer:
    """A uvicorn server running ``factory(url)`` in a daemon thread on ``host:port``.

    The socket is bound before the factory runs, so an app can be built knowing its own base URL.
    ``.url`` is ``"http://127.0.0.1:<port>"``. Use it as a context manager, or call ``.stop()``.
    """

    def __init__(
        self,
        factory: Callable[[str], ASGIApp],
        *,
        host: str = "127.0.0.1",
        start_timeout: float = 10.0,
        graceful_timeout: int = 2,
    ) -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        try:
            app = factory(self.url)
        except BaseException:
            self._sock.close()
            raise
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=graceful_timeout,
        )
        self._server = uvicorn.Server(config)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        self._wait_started(start_timeout)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # uvicorn signals startup failure with SystemExit
            self._error = exc

    def _wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise ServerStartError(f"server on {self.url} died during startup: {self._error!r}")
            if time.monotonic() >= deadline:
                self._server.should_exit = True
                self._thread.join(1.0)
                self._sock.close()
                raise ServerStartError(f"server on {self.url} did not start within {timeout} s")
            time.sleep(0.005)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, wait up to ``timeout`` seconds for the thread, close the socket."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError(f"server on {self.url} did not stop within {timeout} s")

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    start_timeout: float = 10.0,
    graceful_timeout: int = 2,
) -> RunningServer:
    """Start ``app`` on a free port of ``host`` and return once it accepts connections.

    ``graceful_timeout`` (seconds) bounds how long ``stop()`` waits for in-flight requests (a
    hanging subscriber, say) before uvicorn cancels them. Raises ``ServerStartError`` if the app's
    lifespan fails or the server is not started within ``start_timeout`` seconds.
    """
    return RunningServer(
        lambda _url: app, host=host, start_timeout=start_timeout, graceful_timeout=graceful_timeout
    )


def serve_factory(
    factory: Callable[[str], ASGIApp],
    *,
    host: str = "127.0.0.1",
    start_timeout: float = 10.0,
    graceful_timeout: int = 2,
) -> RunningServer:
    """Like ``serve_in_thread``, but the app is ``factory(url)``, built once the port is known.

    For apps that must know their own public URL (the relay builds vendor callback URLs from it)::

        with serve_factory(lambda url: create_app(Settings(public_url=url))) as relay: ...
    """
    return RunningServer(factory, host=host, start_timeout=start_timeout, graceful_timeout=graceful_timeout)
