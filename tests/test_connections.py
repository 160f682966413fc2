"""Hostile clients against a real ``upscale-relay serve`` (receiver/server.py): thousands of connections
that never finish their headers do not take ``/healthz`` down, a connection without complete headers is
closed after ``RELAY_HEADER_TIMEOUT``, and a request body that never arrives does not hold SIGTERM past
``RELAY_SHUTDOWN_GRACE``."""

from __future__ import annotations

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

import pytest

from fixtures.harness import free_port
from tests.procs import RelayProcess, relay_environ, wait_http_ok

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
    env = relay_environ(relay_database, api_token="t", header_timeout=600)
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
    env = relay_environ(relay_database, api_token="t", header_timeout=1, keepalive_timeout=60)
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
    env = relay_environ(relay_database, api_token="t", shutdown_grace=grace)
    request = (
        b"POST /v1/subscribers HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer t\r\n"
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
