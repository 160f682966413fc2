"""Tests for fixtures.harness: real uvicorn servers in threads, and polling instead of sleeping."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from fixtures.harness import ServerStartError, free_port, serve_factory, serve_in_thread, wait_until


async def _ping(request: Request) -> Response:
    return PlainTextResponse("pong")


def test_serves_on_a_free_loopback_port_and_stops() -> None:
    """A started server answers on its reported URL and refuses connections after stop()."""
    server = serve_in_thread(Starlette(routes=[Route("/ping", _ping)]))
    try:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url + "/ping").text == "pong"
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/ping", timeout=1)


def test_lifespan_runs_before_start_returns_and_on_stop() -> None:
    """Startup has completed when serve_in_thread returns; shutdown has run when the context exits."""
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    with serve_in_thread(Starlette(lifespan=lifespan)):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_failed_startup_raises_a_clear_error() -> None:
    """A lifespan that raises makes serve_in_thread fail with ServerStartError instead of hanging."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("database unreachable")
        yield

    with pytest.raises(ServerStartError, match="died during startup"):
        serve_in_thread(Starlette(lifespan=lifespan), start_timeout=5.0)


def test_startup_deadline_is_enforced() -> None:
    """A lifespan that never finishes starting is reported after start_timeout seconds."""
    release = threading.Event()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.get_running_loop().run_in_executor(None, release.wait)
        yield

    try:
        with pytest.raises(ServerStartError, match=r"did not start within 0\.2 s"):
            serve_in_thread(Starlette(lifespan=lifespan), start_timeout=0.2)
    finally:
        release.set()


def test_wait_until_returns_when_predicate_turns_true() -> None:
    """wait_until returns as soon as a predicate that becomes true after a few polls is true."""
    calls = iter(range(100))
    wait_until(lambda: next(calls) >= 3, timeout=1.0, interval=0.001)
    assert next(calls) == 4


def test_wait_until_timeout_names_the_condition() -> None:
    """wait_until raises AssertionError carrying the caller's message when the deadline passes."""
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"callback never arrived \(waited 0.05 s\)"):
        wait_until(lambda: False, timeout=0.05, message="callback never arrived")
    assert time.monotonic() - started >= 0.05


def test_serve_factory_builds_the_app_with_its_own_url() -> None:
    """serve_factory passes the bound base URL to the factory before the server starts."""
    seen: list[str] = []

    def factory(url: str) -> Starlette:
        seen.append(url)
        return Starlette(routes=[Route("/ping", _ping)])

    with serve_factory(factory) as server:
        assert seen == [server.url]
        assert httpx.get(server.url + "/ping").text == "pong"


def test_free_port_can_be_bound() -> None:
    """free_port returns a port number that can be bound on loopback."""
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname()[1] == port
