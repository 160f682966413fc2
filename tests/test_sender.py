"""The delivery sender against real uvicorn servers on loopback, and the SSRF guards in front of it."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest
import uvicorn
from aiohttp.abc import AbstractResolver, ResolveResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from dispatch.errors import ValidationFailed
from dispatch.sender import MAX_RESPONSE_BYTES, AttemptResult, Sender
from dispatch.ssrf import TargetRefused, VettingResolver, check_url, is_public

BODY = b'{"id": "evt_1", "type": "job.succeeded"}'
HEADERS = {"webhook-id": "evt_1", "Content-Type": "application/json", "User-Agent": "upscale-relay/test"}
BIG_BODY = b"x" * (4 * 1024 * 1024)


# --- a tiny subscriber server on a free loopback port --------------------------------------------------


async def _ok(request: Request) -> Response:
    body = await request.body()
    echoed = f"{request.headers['webhook-id']} {len(body)} {request.headers['content-type']}"
    return PlainTextResponse(echoed, headers={"X-Seen": "1"})


async def _fail(request: Request) -> Response:
    return PlainTextResponse("boom", status_code=500)


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/ok", status_code=301)


async def _slow_down(request: Request) -> Response:
    return PlainTextResponse("slow down", status_code=429, headers={"Retry-After": "120"})


async def _big(request: Request) -> Response:
    return Response(BIG_BODY, media_type="text/plain")


async def _hang(request: Request) -> Response:
    await request.body()
    while (await request.receive())["type"] != "http.disconnect":
        pass  # never answer; return once the client gives up
    return Response(status_code=204)


def _app(ready: threading.Event) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ready.set()
        yield

    routes = [
        Route("/ok", _ok, methods=["POST"]),
        Route("/fail", _fail, methods=["POST"]),
        Route("/redirect", _redirect, methods=["POST"]),
        Route("/slow-down", _slow_down, methods=["POST"]),
        Route("/big", _big, methods=["POST"]),
        Route("/hang", _hang, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


@contextmanager
def _serve() -> Iterator[int]:
    """Run the app with uvicorn in a thread on a pre-bound loopback socket; yield its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue from here on, even before uvicorn accepts them
    ready = threading.Event()
    config = uvicorn.Config(
        _app(ready), loop="asyncio", log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "test server did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with _serve() as bound:
        yield bound


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _send(url: str, *, body: bytes = BODY, **options: object) -> AttemptResult:
    async def run() -> AttemptResult:
        async with Sender(**options) as sender:  # type: ignore[arg-type]
            return await sender.send(url, HEADERS, body)

    return asyncio.run(run())


# --- sending ------------------------------------------------------------------------------------------


def test_success_records_status_headers_and_body(port: int) -> None:
    """A 200 is ok, with the POSTed body and headers having arrived and the response recorded."""
    result = _send(f"http://127.0.0.1:{port}/ok", allow_private=True)
    assert result.ok and result.error is None
    assert result.status_code == 200
    assert result.response_body == f"evt_1 {len(BODY)} application/json"
    assert result.response_headers["x-seen"] == "1"
    assert result.duration_ms >= 0
    assert result.retry_after is None


def test_server_error_is_a_failed_attempt(port: int) -> None:
    """A 500 is recorded with its status and body and is not ok."""
    result = _send(f"http://127.0.0.1:{port}/fail", allow_private=True)
    assert (result.ok, result.status_code, result.response_body, result.error) == (False, 500, "boom", None)


def test_redirect_is_not_followed(port: int) -> None:
    """A 301 is not followed: the attempt fails with status 301 and the Location kept."""
    result = _send(f"http://127.0.0.1:{port}/redirect", allow_private=True)
    assert not result.ok
    assert result.status_code == 301
    assert result.response_headers["location"] == "/ok"


def test_retry_after_exposed(port: int) -> None:
    """A 429's Retry-After header is exposed raw on the result."""
    result = _send(f"http://127.0.0.1:{port}/slow-down", allow_private=True)
    assert (result.status_code, result.retry_after, result.ok) == (429, "120", False)


def test_large_body_is_truncated(port: int) -> None:
    """Only the first 4096 bytes of a 4 MiB response are kept."""
    result = _send(f"http://127.0.0.1:{port}/big", allow_private=True)
    assert result.status_code == 200
    assert result.response_body == "x" * MAX_RESPONSE_BYTES


def test_hanging_server_times_out(port: int) -> None:
    """A server that never answers gives a timeout error naming the total timeout, no status."""
    result = _send(f"http://127.0.0.1:{port}/hang", allow_private=True, total_timeout=0.5)
    assert result.status_code is None
    assert result.error == "timeout after 0.5 s"
    assert not result.ok


def test_closed_port_is_a_connection_error() -> None:
    """Nothing listening on the port gives a connection error, not an exception."""
    result = _send(f"http://127.0.0.1:{_free_port()}/ok", allow_private=True)
    assert result.status_code is None
    assert result.error is not None and result.error.startswith("connection error")


def test_connection_reset_is_a_failed_attempt() -> None:
    """A peer that accepts and then resets the connection (RST) gives an error, not an exception."""
    import struct

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    resets = threading.Event()

    def reset_each() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)  # read the request, then abort with RST instead of answering
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        resets.set()

    thread = threading.Thread(target=reset_each, daemon=True)
    thread.start()
    try:
        result = _send(f"http://127.0.0.1:{listener.getsockname()[1]}/ok", allow_private=True)
    finally:
        thread.join(5)
        listener.close()
    assert resets.is_set()
    assert result.status_code is None and not result.ok
    assert result.error


def test_one_session_serves_many_sends(port: int) -> None:
    """Concurrent sends through one Sender all succeed."""

    async def run() -> list[AttemptResult]:
        async with Sender(allow_private=True, limit=4) as sender:
            url = f"http://127.0.0.1:{port}/ok"
            return await asyncio.gather(*(sender.send(url, HEADERS, BODY) for _ in range(20)))

    assert all(r.status_code == 200 for r in asyncio.run(run()))


def test_send_outside_context_is_a_programming_error() -> None:
    """Calling send() before entering the context manager raises RuntimeError."""
    with pytest.raises(RuntimeError):
        asyncio.run(Sender().send("https://example.com/", HEADERS, BODY))


def test_unusable_url_is_a_failed_attempt() -> None:
    """A URL with a bad scheme or port becomes an AttemptResult error instead of raising."""
    expected = "refused: 'ftp://example.com/x' must use http or https, not 'ftp'"
    assert _send("ftp://example.com/x").error == expected
    assert _send("http://example.com:99999/").error is not None


# --- SSRF ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/ok", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:{port}/ok", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/ok", "loopback (IPv4-mapped)"),
        ("http://0.0.0.0:{port}/ok", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://100.64.0.1/", "not globally routable"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00::1]/", "private"),
    ],
)
def test_literal_private_targets_refused(port: int, url: str, reason: str) -> None:
    """Literal non-public IP hosts are refused by check_url and by send, naming the reason."""
    url = url.format(port=port)
    with pytest.raises(ValidationFailed, match=re.escape(f"points at a {reason} address")):
        check_url(url, allow_private=False, https_only=False)
    result = _send(url, total_timeout=2)
    assert result.status_code is None
    assert result.error is not None and reason in result.error


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f.0.0.1", "017700000001"])
def test_legacy_numeric_ipv4_refused(host: str) -> None:
    """Numeric IPv4 spellings other than dotted quads are refused outright."""
    with pytest.raises(ValidationFailed, match="non-canonically"):
        check_url(f"http://{host}/", allow_private=False, https_only=False)


def test_localhost_refused_by_resolver(port: int) -> None:
    """The hostname localhost passes check_url but the vetting resolver refuses its loopback address."""
    url = f"http://localhost:{port}/ok"
    check_url(url, allow_private=False, https_only=False)
    result = _send(url)
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("refused: localhost resolves to non-public address ")
    address = result.error.rsplit(" ", 1)[1]
    assert ipaddress.ip_address(address).is_loopback


def test_allow_private_reaches_loopback(port: int) -> None:
    """With allow_private the same loopback server is reached by literal IP and by localhost."""
    assert _send(f"http://127.0.0.1:{port}/ok", allow_private=True).status_code == 200
    check_url(f"http://[::1]:{port}/", allow_private=True, https_only=False)
    assert _send(f"http://localhost:{port}/ok", allow_private=True).status_code == 200


@pytest.mark.parametrize(
    ("url", "https_only", "message"),
    [
        ("ftp://example.com/", False, "http or https"),
        ("file:///etc/passwd", False, "http or https"),
        ("http://example.com/", True, "must use https"),
        ("https://user:pw@example.com/", False, "user info"),
        ("https://user@example.com/", False, "user info"),
        ("https:///path", False, "no host"),
        ("https://example.com:notaport/", False, "invalid URL"),
    ],
)
def test_url_shape_rules(url: str, https_only: bool, message: str) -> None:
    """Bad schemes, plain http under https_only, credentials, missing hosts and bad ports are refused."""
    with pytest.raises(ValidationFailed, match=message):
        check_url(url, allow_private=True, https_only=https_only)


def test_public_urls_pass() -> None:
    """Public hostnames and public literal addresses pass check_url."""
    check_url("https://hooks.example.com/relay", allow_private=False, https_only=True)
    check_url("http://93.184.216.34:8080/x", allow_private=False, https_only=False)
    check_url("https://[2606:2800:220:1:248:1893:25c8:1946]/", allow_private=False, https_only=True)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("192.168.1.1", False),
        ("172.16.0.1", False),
        ("::", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.216.34", True),
        ("ff02::1", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    """is_public accepts global unicast addresses only, looking through IPv4-mapped IPv6."""
    assert is_public(ipaddress.ip_address(address)) is public


class _FixedResolver(AbstractResolver):
    """Answers every lookup with fixed addresses, standing in for DNS that may rebind."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


def test_resolver_drops_private_addresses_and_keeps_public() -> None:
    """Mixed DNS answers keep only the public addresses; all-private answers raise TargetRefused."""

    async def run() -> None:
        mixed = VettingResolver(allow_private=False, resolver=_FixedResolver(["10.1.2.3", "93.184.216.34"]))
        assert [r["host"] for r in await mixed.resolve("rebind.example", 443)] == ["93.184.216.34"]
        private = VettingResolver(allow_private=False, resolver=_FixedResolver(["169.254.169.254"]))
        refusal = re.escape("refused: rebind.example resolves to non-public address 169.254.169.254")
        with pytest.raises(TargetRefused, match=refusal):
            await private.resolve("rebind.example", 443)
        allowed = VettingResolver(allow_private=True, resolver=_FixedResolver(["10.1.2.3"]))
        assert [r["host"] for r in await allowed.resolve("rebind.example", 443)] == ["10.1.2.3"]

    asyncio.run(run())
