"""Hostile clients against a real ``upscale-relay serve`` (receiver/server.py): thousands of connections
that never finish their headers do not take ``/healthz`` down, a connection without complete headers is
closed after ``RELAY_HEADER_TIMEOUT``, a request body that never arrives does not hold SIGTERM past
``RELAY_SHUTDOWN_GRACE``, and 1,000 bodies trickled byte by byte get 408 and are closed after
``RELAY_BODY_TIMEOUT`` while ``/healthz`` and vendor callbacks go on (issue 19, finding 4)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fixtures import payload
from fixtures.harness import free_port, serve_in_thread
from receiver.errors import HANDLERS
from receiver.fakes import FakeConfig, create_fake_vendors, fake_state_of, source_image
from receiver.limits import BodyTimeoutMiddleware
from tests.procs import RelayProcess, relay_environ, wait_http_ok
from tests.relay_env import API_TOKEN

HELD = 2000  # half-open connections held at once; the probe needed 1,100 past a 1,024-file limit
PROBE_FILE_LIMIT = 1024  # the soft open-file limit the server starts with, as in the probe
TEST_FILE_LIMIT = HELD + 512  # this test process: the held sockets plus pytest's own files
IO_DEADLINE = 10.0  # seconds for any one socket step that should take milliseconds
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: relay\r\nUser-Agent: slow"  # never finished


@contextmanager
def soft_file_limit(soft: int) -> Iterator[None]:
    """This process's soft ``RLIMIT_NOFILE`` set to ``soft`` (children inherit it), restored after."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


def _require_file_limit(needed: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard open-file limit is {hard}; this test needs at least {needed}")


def _connect(stack: ExitStack, port: int, first_bytes: bytes = b"") -> socket.socket:
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=IO_DEADLINE))
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def _still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed ``sock`` nor written to it (a non-blocking peek)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.settimeout(IO_DEADLINE)


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Wait until the monotonic ``deadline`` for the server to close ``sock`` without answering."""
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _read_head(sock: socket.socket, buffer: bytes = b"") -> tuple[bytes, bytes]:
    """One response head from ``sock`` (after ``buffer``): ``(head, bytes read past it)``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection mid-response: {buffer!r}"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _read_response(sock: socket.socket) -> bytes:
    """A whole ``Content-Length`` response from ``sock``; returns its head."""
    head, body = _read_head(sock)
    match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    assert match is not None, head
    while len(body) < int(match[1]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return head


def test_healthz_answers_while_2000_connections_hold_unfinished_headers(
    tmp_path: Path, relay_database: str
) -> None:
    """The server starts with the probe's 1,024-file soft limit (the hard limit is higher); it raises
    its own limit, holds 2,000 connections that sent half a request, and still answers /healthz."""
    _require_file_limit(TEST_FILE_LIMIT)
    port = free_port()
    env = relay_environ(relay_database, api_token=API_TOKEN, header_timeout=600)
    with ExitStack() as stack:
        with soft_file_limit(PROBE_FILE_LIMIT):
            proc = stack.enter_context(
                RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path)
            )
        wait_http_ok(proc, f"http://127.0.0.1:{port}/healthz")
        current_soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if current_soft != resource.RLIM_INFINITY and current_soft < TEST_FILE_LIMIT:
            stack.enter_context(soft_file_limit(TEST_FILE_LIMIT))
        held = [_connect(stack, port, PARTIAL_HEAD) for _ in range(HELD)]

        # connections are accepted in order, so /healthz answering means the 2,000 were accepted first
        wait_http_ok(proc, f"http://127.0.0.1:{port}/healthz", timeout=30)
        if Path(f"/proc/{proc.pid}/fd").is_dir():
            open_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            assert open_fds > HELD, f"the server has {open_fds} open files, so it is not holding {HELD}"
        closed = sum(not _still_open(sock) for sock in held)
        assert closed == 0, f"{closed} of {HELD} held connections were closed before the header timeout"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(30) == 0


def test_connections_without_complete_headers_are_closed_after_the_header_timeout(
    tmp_path: Path, relay_database: str
) -> None:
    """With RELAY_HEADER_TIMEOUT=1 (and a keep-alive timeout far longer), the server closes, without
    answering: a connection that sends nothing, one that sends half a request, and a keep-alive
    connection that got its response and then starts a second request it never finishes."""
    port = free_port()
    env = relay_environ(relay_database, api_token=API_TOKEN, header_timeout=1, keepalive_timeout=60)
    with (
        RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as proc,
        ExitStack() as stack,
    ):
        wait_http_ok(proc, f"http://127.0.0.1:{port}/healthz")
        silent = _connect(stack, port)
        partial = _connect(stack, port, PARTIAL_HEAD)
        keep_alive = _connect(stack, port, b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
        assert _read_response(keep_alive).startswith(b"HTTP/1.1 200 "), "the complete request failed"
        keep_alive.sendall(PARTIAL_HEAD)

        deadline = time.monotonic() + IO_DEADLINE
        assert _closed_by_server(silent, deadline), "a connection that sent nothing stayed open"
        assert _closed_by_server(partial, deadline), "a connection with half a request stayed open"
        assert _closed_by_server(keep_alive, deadline), "a second, unfinished request stayed open"
        proc.check_alive()


def test_sigterm_does_not_wait_forever_for_a_request_body(tmp_path: Path, relay_database: str) -> None:
    """A client sends the headers of a 1,000,000-byte POST, sees ``100 Continue`` (the handler is now
    reading the body), sends a few bytes and stalls. SIGTERM still ends the server, with status 0,
    within RELAY_SHUTDOWN_GRACE=2 plus a margin."""
    grace = 2.0
    port = free_port()
    env = relay_environ(relay_database, api_token=API_TOKEN, shutdown_grace=grace)
    request = (
        b"POST /v1/subscribers HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer "
        + API_TOKEN.encode()
        + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
    )
    with (
        RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as proc,
        ExitStack() as stack,
    ):
        wait_http_ok(proc, f"http://127.0.0.1:{port}/healthz")
        stalled = _connect(stack, port, request)
        head, _ = _read_head(stalled)
        assert head.startswith(b"HTTP/1.1 100 "), f"expected 100 Continue, got {head!r}"
        stalled.sendall(b'{"url": "https://app.example.com/')

        proc.send_signal(signal.SIGTERM)
        status = proc.wait_exit(grace + 10)
    assert status == 0, f"serve exited {status}; stderr:\n{proc.stderr()[-2000:]}"


@pytest.mark.parametrize(
    ("soft", "hard", "warns"),
    [(1024, TEST_FILE_LIMIT + 4096, False), (1024, 1100, True)],
    ids=["raised-to-hard", "hard-too-low"],
)
def test_serve_raises_its_open_file_limit_or_warns(soft: int, hard: int, warns: bool) -> None:
    """In a fresh interpreter with the given limits, :func:`receiver.server.ensure_open_file_limit`
    (what ``serve`` runs first) lifts the soft limit to the hard one, and warns on stderr when that
    is still under RELAY_LIMIT_CONCURRENCY (4096 here) plus headroom."""
    _require_file_limit(hard)
    code = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
        "from receiver.server import ensure_open_file_limit\n"
        "ensure_open_file_limit(4096)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == hard
    assert ("warning: the open-file limit is 1100" in done.stderr) == warns, done.stderr


SLOW_BODIES = 1000  # connections that send their headers and then trickle their body
BODY_TIMEOUT = 4.0  # RELAY_BODY_TIMEOUT for the slow-body test, seconds


async def _slow_body(port: int, head: bytes, answers: list[bytes], sent: asyncio.Semaphore) -> None:
    """Send ``head`` (a request whose ``Content-Length`` promises far more) and release ``sent``, then
    one body byte a second until the server answers or closes; append the status line it answered
    (``b""`` when it closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    line = b""
    try:
        writer.write(head + b"a")
        await writer.drain()
        sent.release()
        while not line:
            try:
                line = await asyncio.wait_for(reader.readline(), 1.0)
            except TimeoutError:
                writer.write(b"a")  # a trickle: bytes arriving must not extend the deadline
                await writer.drain()
                continue
            if not line:
                break  # closed without an answer
        rest = await asyncio.wait_for(reader.read(), IO_DEADLINE)  # after its answer the server closes
        assert not line or b"body_timeout" in rest, rest
    except ConnectionError:
        pass
    finally:
        answers.append(line.strip())
        writer.close()


def test_slow_bodies_get_408_and_are_closed_while_healthz_and_callbacks_answer(
    tmp_path: Path, relay_database: str
) -> None:
    """1,000 connections send the headers of a console sign-in (with its session cookie) or of a
    real APIXO callback, then trickle one body byte a second. Meanwhile ``/healthz`` and the real
    callback, sent whole, answer 200; then every slow one is answered ``408`` (``body_timeout``)
    and closed by the server, RELAY_BODY_TIMEOUT after its headers."""
    _require_file_limit(SLOW_BODIES + 512)
    current_soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    port = free_port()
    fake = FakeConfig(apixo_allow_http=True)
    vendors_app = create_fake_vendors(fake)
    with ExitStack() as stack, serve_in_thread(vendors_app) as vendors:
        if current_soft != resource.RLIM_INFINITY and current_soft < SLOW_BODIES + 512:
            stack.enter_context(soft_file_limit(SLOW_BODIES + 512))
        env = relay_environ(
            relay_database,
            api_token=API_TOKEN,
            body_timeout=BODY_TIMEOUT,
            public_url=f"http://127.0.0.1:{port}",
            apixo_api_key=fake.apixo_api_key,
            apixo_base_url=vendors.url,
        )
        proc = stack.enter_context(RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path))
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(proc, f"{base}/healthz")
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        job = httpx.post(
            f"{base}/v1/jobs",
            json={"vendor": "apixo", "params": {"input": {"image_urls": [source_image("lost")]}}},
            headers=auth,
            timeout=30,
        ).json()
        (submit,) = [s for s in fake_state_of(vendors_app).submits() if isinstance(s.body, dict)]
        callback = str(submit.body["callback_url"])
        body = json.loads(payload("apixo", "callback_success"))
        body["data"]["taskId"] = job["vendor_job_id"]
        cookie = httpx.get(f"{base}/console/login").cookies["relay_console"]
        path = callback.removeprefix(base)
        heads = [
            b"POST /console/login HTTP/1.1\r\nHost: relay\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Cookie: relay_console=" + cookie.encode() + b"\r\nContent-Length: 1000\r\n\r\n",
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n",
        ]

        async def main() -> tuple[list[bytes], int, httpx.Response, int]:
            answers: list[bytes] = []
            sent = asyncio.Semaphore(0)
            slow = [
                asyncio.create_task(_slow_body(port, heads[n % 2], answers, sent)) for n in range(SLOW_BODIES)
            ]
            for _ in slow:
                await asyncio.wait_for(sent.acquire(), IO_DEADLINE)
            # connections are accepted in order: these come after the 1,000 slow ones
            async with httpx.AsyncClient(timeout=30) as client:
                health = await client.get(f"{base}/healthz")
                whole = await client.post(callback, json=body)
            held = SLOW_BODIES - len(answers)
            await asyncio.wait_for(asyncio.gather(*slow), BODY_TIMEOUT + 60)
            return answers, health.status_code, whole, held

        answers, health, whole, held = asyncio.run(main())
        assert health == 200 and whole.status_code == 200, whole.text
        assert whole.json()["verdict"] == "applied"
        assert held > 0, "no slow connection was still held while the probes ran"
        assert len(answers) == SLOW_BODIES
        assert set(answers) == {b"HTTP/1.1 408 Request Timeout"}, set(answers)
        assert httpx.get(f"{base}/v1/jobs/{job['id']}", headers=auth).json()["status"] == "succeeded"
        proc.check_alive()


def test_a_body_that_arrived_in_time_is_read_however_late_the_handler_gets_to_it() -> None:
    """Behind BodyTimeoutMiddleware (0.2 s), a handler that works 0.5 s before reading: a body sent
    whole with its headers is still read (200), while one that never comes is a 408 whose
    connection the server closes."""

    async def late_reader(request: Request) -> Response:
        await asyncio.sleep(0.5)  # the handler's own slow work, past the body deadline
        body = await request.body()
        return Response(str(len(body)), media_type="text/plain")

    app = Starlette(routes=[Route("/read", late_reader, methods=["POST"])], exception_handlers=HANDLERS)
    wrapped = BodyTimeoutMiddleware(app, timeout=0.2)
    with serve_in_thread(wrapped) as server, ExitStack() as stack:
        on_time = httpx.post(f"{server.url}/read", content=b"x" * 5000, timeout=IO_DEADLINE)
        assert (on_time.status_code, on_time.text) == (200, "5000")
        port = int(server.url.rsplit(":", 1)[1])
        stalled = _connect(stack, port, b"POST /read HTTP/1.1\r\nHost: relay\r\nContent-Length: 10\r\n\r\nab")
        head = _read_response(stalled)
        assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower(), head
        assert _closed_by_server(stalled, time.monotonic() + IO_DEADLINE)
