"""Disguised non-public hosts never reach a socket: Unicode digits and dots, IDNA labels, numeric spellings.

aiohttp parses URLs with yarl, which maps hosts through IDNA/UTS 46 (NFKC): ``http://①②⑦.⓪.⓪.①/`` is
dialled as ``127.0.0.1`` without asking the resolver. These tests generate such hosts for every blocked
range and send through a real ``Sender(allow_private=False)`` to a real loopback listener that counts
the connections it accepts; the count must stay 0. One test switches ``check_url`` off to prove the
connector's socket factory refuses on its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from yarl import URL

from dispatch.errors import ValidationFailed
from dispatch.sender import AttemptResult, Sender
from dispatch.ssrf import TargetRefused, VettingSocketFactory, check_url

HEADERS = {"webhook-id": "evt_1", "Content-Type": "application/json"}
BODY = b'{"id": "evt_1"}'
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- Unicode look-alikes that NFKC (and so yarl's IDNA/UTS 46 mapping) turns into ASCII --------------


def _nfkc_digit_forms(digit: int) -> list[str]:
    """Characters whose NFKC form is the ASCII ``digit``: fullwidth, mathematical, super/subscript, circled."""
    candidates = [
        str(digit),
        chr(0xFF10 + digit),  # fullwidth
        *(chr(base + digit) for base in (0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6)),  # mathematical
        "⁰¹²³⁴⁵⁶⁷⁸⁹"[digit],  # superscript
        chr(0x2080 + digit),  # subscript
        "⓪" if digit == 0 else chr(0x2460 + digit - 1),  # circled
    ]
    forms = [c for c in candidates if unicodedata.normalize("NFKC", c) == str(digit)]
    assert len(forms) >= 9, forms
    return forms


DIGIT_FORMS = {str(d): _nfkc_digit_forms(d) for d in range(10)}
DOT_FORMS = [".", "\u3002", "\uff0e", "\uff61"]  # full stop, ideographic, fullwidth, halfwidth ideographic
CIRCLED = {str(n): chr(0x2460 + n - 1) for n in range(1, 21)}  # ①..⑳
DIGIT_FULL_STOP = {str(n): chr(0x2488 + n - 1) for n in range(1, 21)}  # ⒈..⒛, NFKC "n."
OTHER_SCRIPT_DIGITS = [0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1040, 0xFF10]  # Arabic-Indic, Devanagari...


def _letter_forms(letter: str) -> list[str]:
    """``letter`` (a hex digit or ``x``), upper case, and fullwidth forms of both."""
    upper = letter.upper()
    return [letter, upper, chr(0xFF41 + ord(letter) - ord("a")), chr(0xFF21 + ord(upper) - ord("A"))]


@st.composite
def _disguised(draw: st.DrawFn, spelled: str, *, exotic: bool = True) -> str:
    """``spelled`` with digits, dots and hex letters swapped for look-alikes that normalize back.

    ``exotic`` also allows circled numbers ⑩..⑳ spanning two digits and ``⒈``-style digit full stops.
    """
    out: list[str] = []
    i = 0
    while i < len(spelled):
        ch = spelled[i]
        pair = spelled[i : i + 2]
        if exotic and pair.isdigit() and pair in CIRCLED and draw(st.booleans()):
            out.append(CIRCLED[pair])
            i += 2
        elif (
            exotic
            and ch.isdigit()
            and spelled[i + 1 : i + 2] == "."
            and ch in DIGIT_FULL_STOP
            and draw(st.booleans())
        ):
            out.append(DIGIT_FULL_STOP[ch])
            i += 2
        else:
            if ch.isdigit():
                out.append(draw(st.sampled_from(DIGIT_FORMS[ch])))
            elif ch == ".":
                out.append(draw(st.sampled_from(DOT_FORMS)))
            elif ch in "abcdefx":
                out.append(draw(st.sampled_from(_letter_forms(ch))))
            else:
                out.append(ch)
            i += 1
    return "".join(out)


def _ipv4_in(network: str) -> st.SearchStrategy[ipaddress.IPv4Address]:
    net = ipaddress.IPv4Network(network)
    return st.integers(int(net.network_address), int(net.broadcast_address)).map(ipaddress.IPv4Address)


BLOCKED_V4 = st.one_of(
    _ipv4_in("127.0.0.0/8"),
    st.just(ipaddress.IPv4Address("127.0.0.1")),
    _ipv4_in("10.0.0.0/8"),
    _ipv4_in("172.16.0.0/12"),
    _ipv4_in("192.168.0.0/16"),
    _ipv4_in("169.254.0.0/16"),
    st.just(ipaddress.IPv4Address("169.254.169.254")),
    st.just(ipaddress.IPv4Address("0.0.0.0")),
    _ipv4_in("100.64.0.0/10"),
)

BLOCKED_V6 = st.one_of(
    st.sampled_from(["::1", "0:0:0:0:0:0:0:1", "::", "fe80::1", "fd00::1", "::ffff:7f00:1"]),
    BLOCKED_V4.map(lambda ip: f"::ffff:{ip}"),
)


def _octet(value: int, style: str) -> str:
    return {"d": str(value), "x": hex(value), "o": f"0{value:o}"}[style]


@st.composite
def _ipv4_spelling(draw: st.DrawFn, ip: ipaddress.IPv4Address) -> str:
    """Dotted quad, mixed decimal/hex/octal octets, 32-bit decimal or hex, ``a.b24`` and ``a.b.c16``."""
    n, octets = int(ip), list(ip.packed)
    form = draw(st.sampled_from(["dotted", "mixed", "decimal", "hex32", "short", "three"]))
    if form == "dotted":
        return str(ip)
    if form == "mixed":
        return ".".join(_octet(o, draw(st.sampled_from("dxo"))) for o in octets)
    if form == "decimal":
        return str(n)
    if form == "hex32":
        return f"0x{n:08x}"
    if form == "short":  # 127.1
        return f"{_octet(octets[0], draw(st.sampled_from('dxo')))}.{n & 0xFFFFFF}"
    return f"{octets[0]}.{octets[1]}.{n & 0xFFFF}"  # 127.0.1


@st.composite
def _as_idna_labels(draw: st.DrawFn, host: str) -> str:
    """Optionally turn non-ASCII labels into ``xn--`` A-labels (raw punycode, no IDNA validation)."""
    labels = host.split(".")
    return ".".join(
        "xn--" + label.encode("punycode").decode("ascii")
        if not label.isascii() and draw(st.booleans())
        else label
        for label in labels
    )


@st.composite
def disguised_blocked_hosts(draw: st.DrawFn) -> str:
    """A URL host (IPv6 in brackets) that spells a blocked address, possibly disguised."""
    if draw(st.integers(0, 4)) == 0:
        return f"[{draw(_disguised(draw(BLOCKED_V6), exotic=False))}]"
    spelled = draw(_ipv4_spelling(draw(BLOCKED_V4)))
    host = draw(_disguised(spelled))
    if draw(st.booleans()):
        host = draw(_as_idna_labels(host))
    if draw(st.integers(0, 5)) == 0:
        host += draw(st.sampled_from(DOT_FORMS))
    return host


@st.composite
def client_literal_hosts(draw: st.DrawFn) -> str:
    """A disguised blocked address that yarl turns into a literal IP (so aiohttp never resolves it)."""
    if draw(st.integers(0, 4)) == 0:
        return f"[{draw(_disguised(draw(BLOCKED_V6), exotic=False))}]"
    return draw(_disguised(str(draw(BLOCKED_V4))))


# --- a loopback listener that counts connections ------------------------------------------------------


class _Listener:
    """Counts accepted connections; answers each request with ``204 No Content``."""

    def __init__(self) -> None:
        self.accepted = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()


@asynccontextmanager
async def _listening() -> AsyncIterator[tuple[_Listener, int]]:
    listener = _Listener()
    server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
    try:
        yield listener, int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def _send_to_listener(host: str, *, allow_private: bool = False) -> tuple[AttemptResult, int, str]:
    """POST to ``http://<host>:<listener port>/``; return the result, connections accepted and the URL."""

    async def run() -> tuple[AttemptResult, int, str]:
        async with _listening() as (listener, port):
            url = f"http://{host}:{port}/"
            async with Sender(allow_private=allow_private, total_timeout=5, connect_timeout=2) as sender:
                result = await sender.send(url, HEADERS, BODY)
            return result, listener.accepted, url

    return asyncio.run(run())


# --- the probe's findings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address", "reason"),
    [
        ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1", "loopback"),  # fullwidth digits
        ("127\u30020\u30020\u30021", "127.0.0.1", "loopback"),  # ideographic full stops
        ("①②⑦.⓪.⓪.①", "127.0.0.1", "loopback"),
        ("⑫⑦.⓪.⓪.①", "127.0.0.1", "loopback"),
        ("⑯⑨.②⑤④.⑯⑨.②⑤④", "169.254.169.254", "link-local"),
        ("\U0001d7cf\U0001d7ce.\U0001d7ce.\U0001d7ce.\U0001d7cf", "10.0.0.1", "private"),  # math bold
        ("127.0.0.1.", "127.0.0.1", "loopback"),
    ],
)
def test_known_disguises_refused_naming_the_address(host: str, address: str, reason: str) -> None:
    """The hosts from the probe are refused by check_url and by send, naming the normalized address."""
    expected = f"host normalizes to {address}, a {reason} address"
    with pytest.raises(ValidationFailed, match=expected):
        check_url(f"http://{host}/", allow_private=False, https_only=False)
    result, accepted, url = _send_to_listener(host)
    assert result.error == f"refused: {url!r} {expected}"
    assert (result.status_code, accepted) == (None, 0)


def test_disguise_really_reaches_loopback_when_allowed() -> None:
    """Control: with allow_private the fullwidth host is dialled as 127.0.0.1 and the listener counts it."""
    result, accepted, _ = _send_to_listener("\uff11\uff12\uff17.\uff10.\uff10.\uff11", allow_private=True)
    assert (result.status_code, result.error, accepted) == (204, None, 1)


# --- generated disguises ------------------------------------------------------------------------------


@SETTINGS
@given(host=disguised_blocked_hosts())
def test_disguised_blocked_hosts_are_never_connected_to(host: str) -> None:
    """Every disguised spelling of a blocked address is refused before sending; nothing connects."""
    with pytest.raises(ValidationFailed) as refusal:
        check_url(f"http://{host}:80/", allow_private=False, https_only=False)
    assert refusal.value.message.startswith(("refused: ", "invalid URL "))
    result, accepted, url = _send_to_listener(host)
    assert result.status_code is None
    assert result.error is not None and result.error.startswith(("refused: ", "invalid URL "))
    assert accepted == 0, f"{url!r} reached the loopback listener"


@SETTINGS
@given(host=client_literal_hosts())
def test_socket_factory_refuses_literal_ips_even_without_check_url(host: str) -> None:
    """A connector with only the socket factory (no check_url in front, as if it were bypassed)
    still refuses every literal IP: aiohttp dials through the factory, which refuses first."""
    client_host = URL(f"http://{host}/").raw_host
    assert client_host is not None
    ip = ipaddress.ip_address(client_host)  # the strategy only yields hosts yarl reads as IP literals

    async def run() -> tuple[BaseException | None, int, str]:
        async with _listening() as (listener, port):
            url = f"http://{host}:{port}/"
            connector = aiohttp.TCPConnector(socket_factory=VettingSocketFactory(allow_private=False))
            async with aiohttp.ClientSession(connector=connector) as session:
                try:
                    async with session.post(url, data=BODY, allow_redirects=False):
                        return None, listener.accepted, url
                except aiohttp.ClientConnectorError as exc:
                    return exc.os_error, listener.accepted, url

    refused, accepted, url = asyncio.run(run())
    assert isinstance(refused, TargetRefused), refused
    assert str(refused).startswith(f"refused: connecting to {ip}"), refused
    assert accepted == 0, f"{url!r} reached the loopback listener"


@SETTINGS
@given(
    digits=st.lists(st.sampled_from(OTHER_SCRIPT_DIGITS), min_size=4, max_size=4),
    ip=BLOCKED_V4,
    dot=st.sampled_from(DOT_FORMS),
)
def test_other_script_digits_never_become_ip_literals(
    digits: list[int], ip: ipaddress.IPv4Address, dot: str
) -> None:
    """Digits NFKC leaves alone (Arabic-Indic, Devanagari...) are refused or stay DNS names.

    A DNS name goes through the vetting resolver; it is never a literal IP dialled unchecked.
    """
    host = dot.join(
        "".join(chr(base + int(d)) for d in str(octet)) for base, octet in zip(digits, ip.packed, strict=True)
    )
    try:
        check_url(f"http://{host}/", allow_private=False, https_only=False)
    except ValidationFailed as exc:
        assert exc.message.startswith("refused: ")
        return
    client_host = URL(f"http://{host}/").raw_host
    assert client_host is not None and client_host.isascii()
    with pytest.raises(ValueError):
        ipaddress.ip_address(client_host)
    with pytest.raises(OSError):
        socket.inet_aton(client_host)


# --- names that must keep working ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://bücher.example/relay",
        "https://BÜCHER.example/relay",
        "https://xn--bcher-kva.example/relay",
        "https://straße.de/",
        "https://例え.テスト/",
        "https://münchen.de:8443/x",
        "https://hooks.example.com/relay",
        "https://hooks.example.com./relay",
        "https://my_service.internal.example/",
        "http://93.184.216.34:8080/x",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/",
    ],
)
def test_valid_idna_and_public_hosts_pass(url: str) -> None:
    """Valid IDNA 2008 names, ordinary hostnames and public literals pass check_url."""
    check_url(url, allow_private=False, https_only=False)


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("\u2102.example", "host is not a valid IDNA name"),  # double-struck C: UTS 46 maps it, IDNA 2008 not
        ("⑳.example", "host is not a valid IDNA name"),
        ("\uff19\uff13.\uff11\uff18\uff14.\uff12\uff11\uff16.\uff13\uff14", "host is not a valid IDNA name"),
        ("xn--127.0.0.1", "host is not a valid IDNA name"),
        (
            "xn--" + "\uff11\uff12\uff17".encode("punycode").decode() + ".example",
            "host is not a valid IDNA name",
        ),
        ("%31%32%37.0.0.1", "contains characters not allowed in a hostname"),
        ("⒈⒉⒎", "non-canonical IPv4 spelling"),
        ("\uff10\uff58\uff17\uff46.\uff11", "host normalizes to '0x7f.1', a non-canonical IPv4 spelling"),
    ],
)
def test_invalid_or_misleading_names_refused(host: str, message: str) -> None:
    """Non-ASCII hosts that are not IDNA 2008 names, even public-looking ones, are refused."""
    with pytest.raises(ValidationFailed, match=message):
        check_url(f"https://{host}/", allow_private=False, https_only=False)


def test_allow_private_skips_host_rules() -> None:
    """allow_private (tests, demo) lets normalized loopback hosts through check_url."""
    check_url("http://①②⑦.⓪.⓪.①/", allow_private=True, https_only=False)


# --- the socket factory on its own --------------------------------------------------------------------


def _addr_info(address: str) -> tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int]]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, 443))


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("100.64.0.1", "not globally routable"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback (IPv4-mapped)"),
        ("fe80::1%1", "link-local"),
    ],
)
def test_socket_factory_refuses_non_public(address: str, reason: str) -> None:
    """VettingSocketFactory raises TargetRefused for a non-public address, before making a socket."""
    factory = VettingSocketFactory(allow_private=False)
    with pytest.raises(TargetRefused, match=re.escape(f", a {reason} address") + "$"):
        factory(_addr_info(address))


def test_socket_factory_makes_sockets_for_public_or_allowed() -> None:
    """A public address, or any address with allow_private, gets a fresh socket of the right family."""
    for factory, address in [
        (VettingSocketFactory(allow_private=False), "93.184.216.34"),
        (VettingSocketFactory(allow_private=True), "127.0.0.1"),
    ]:
        with factory(_addr_info(address)) as sock:
            assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_STREAM)
