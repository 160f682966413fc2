"""Keep subscriber URLs away from loopback, private and link-local networks (server-side request forgery).

Three layers, because a URL names a host, the HTTP client normalizes the host, and a host names addresses:

- :func:`check_url` refuses bad schemes, credentials in the URL and non-public IP hosts before
  anything is sent. It judges the host as the HTTP client will see it: aiohttp parses URLs with
  :class:`yarl.URL`, which applies IDNA/UTS 46 mapping (NFKC), so ``http://①②⑦.⓪.⓪.①/`` (or
  fullwidth digits U+FF10..U+FF19 with ``。`` U+3002 as dots) is dialled as ``127.0.0.1``, and
  aiohttp connects to a literal IP without asking the resolver. Non-ASCII hosts must be valid
  IDNA 2008 names;
- :class:`VettingResolver` is the resolver of the delivery connector: it drops every non-public
  address a hostname resolves to. aiohttp connects to exactly the addresses the resolver returned, so
  a name that resolves to a public address when checked and to ``127.0.0.1`` later (DNS rebinding)
  cannot slip past;
- :class:`VettingSocketFactory` is the connector's socket factory: it sees every address actually
  dialled, literal IPs included, and refuses non-public ones, should a URL ever get past
  :func:`check_url`.

All are switched off by ``RELAY_ALLOW_PRIVATE_TARGETS=true`` (tests, the demo).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from urllib.parse import urlsplit

import idna
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from dispatch.errors import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(OSError):
    """A hostname resolved only to non-public addresses, or a non-public address was about to be dialled.

    aiohttp reports it as a connection error. ``str(exc)`` is the message alone, e.g.
    ``"refused: localhost resolves to non-public address 127.0.0.1"`` or
    ``"refused: connecting to 127.0.0.1, a loopback address"``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(None, message)

    def __str__(self) -> str:
        return str(self.strerror)


def _non_public_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address (``"loopback"``, ``"private"``...), or ``None``."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        reason = _non_public_reason(ip.ipv4_mapped)
        return None if reason is None else f"{reason} (IPv4-mapped)"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    )
    for reason, matched in checks:
        if matched:
            return reason
    if not ip.is_global:
        return "not globally routable"  # e.g. 100.64.0.0/10 shared address space
    return None


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address a subscriber may live on.

    False for loopback, private, link-local, multicast, reserved, unspecified and other non-global
    ranges (IANA special-purpose registries, as encoded in :mod:`ipaddress`), also when wrapped as an
    IPv4-mapped IPv6 address. Example: ``is_public(ip_address("93.184.216.34")) is True``,
    ``is_public(ip_address("::ffff:127.0.0.1")) is False``.
    """
    return _non_public_reason(ip) is None


def _legacy_ipv4(host: str) -> bool:
    """True for numeric IPv4 spellings other than dotted quads (``2130706433``, ``127.1``, ``0x7f.1``)."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


_UNICODE_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
"""Full stops that IDNA (UTS 46) treats as label separators: ideographic, fullwidth, halfwidth."""

_ASCII_HOSTNAME = re.compile(r"[a-z0-9._-]+")
"""Characters an ASCII (lower-cased) hostname may contain; IP literals are checked separately."""


def _host_forms(host: str, client_hosts: tuple[str, ...]) -> list[str]:
    """``host``, its NFKC form with Unicode full stops as ``.``, and ``client_hosts``, each also without
    one trailing dot; duplicates dropped, order kept."""
    forms: list[str] = []
    for form in (host, unicodedata.normalize("NFKC", host).translate(_UNICODE_DOTS), *client_hosts):
        for variant in (form, form[:-1] if form.endswith(".") else form):
            if variant and variant not in forms:
                forms.append(variant)
    return forms


def _refuse_ip_forms(url: str, host: str, forms: list[str]) -> None:
    """Raise :class:`ValidationFailed` if any of ``forms`` is a non-public IP or a legacy IPv4 spelling."""
    for form in forms:
        try:
            ip = ipaddress.ip_address(form)
        except ValueError:
            if not _legacy_ipv4(form):
                continue
            if form == host:
                raise ValidationFailed(f"refused: {url!r} spells an IPv4 address non-canonically") from None
            raise ValidationFailed(
                f"refused: {url!r} host normalizes to {form!r}, a non-canonical IPv4 spelling"
            ) from None
        reason = _non_public_reason(ip)
        if reason is None:
            continue
        if form == host:
            raise ValidationFailed(f"refused: {url!r} points at a {reason} address")
        raise ValidationFailed(f"refused: {url!r} host normalizes to {ip}, a {reason} address")


def _ascii_form(url: str, host: str) -> str:
    """The ASCII (A-label) form of ``host`` after IDNA 2008 checks; raises :class:`ValidationFailed`.

    A non-ASCII host must encode under strict IDNA 2008 (:func:`idna.encode`, no UTS 46 mapping, only
    ``.`` separates labels); an ASCII host is an IP literal, or holds only ``[a-z0-9._-]`` with each
    ``xn--`` label decoding as valid IDNA 2008.
    """
    if host.isascii():
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return host  # a public IP literal, already vetted
        if not _ASCII_HOSTNAME.fullmatch(host):
            raise ValidationFailed(
                f"refused: {url!r} host {host!r} contains characters not allowed in a hostname"
            )
        for label in host.split("."):
            if label.startswith("xn--"):
                try:
                    idna.decode(label)
                except idna.IDNAError as exc:
                    raise ValidationFailed(
                        f"refused: {url!r} host is not a valid IDNA name ({exc})"
                    ) from None
        return host
    try:
        return idna.encode(host, strict=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValidationFailed(f"refused: {url!r} host is not a valid IDNA name ({exc})") from None


def _same_host(expected: str, client: str) -> bool:
    """True when the host we checked (``expected``) is the one the HTTP client will dial (``client``)."""
    if expected == client:
        return True
    try:
        return ipaddress.ip_address(expected) == ipaddress.ip_address(client)
    except ValueError:
        return False


def check_url(url: str, *, allow_private: bool, https_only: bool) -> None:
    """Refuse a subscriber URL that must not be delivered to; return ``None`` when it is fine.

    Example: ``check_url("https://hooks.example.com/relay", allow_private=False, https_only=True)``.

    Rules: the scheme is ``http`` or ``https`` (only ``https`` when ``https_only``); a host is present;
    there is no ``user:password@``. Unless ``allow_private``, the host is judged both as
    :func:`urllib.parse.urlsplit` reads it and as the HTTP client does (:class:`yarl.URL`, which maps
    the host through IDNA/UTS 46, i.e. NFKC: fullwidth, circled and mathematical digits become ASCII
    digits; U+3002, U+FF0E and U+FF61 become ``.``):

    - an IP host in any of these forms must be public (:func:`is_public`);
    - legacy numeric IPv4 spellings (``http://2130706433/``, ``0x7f.1``, ``127.1``) are refused;
    - a non-ASCII host must be a valid IDNA 2008 name (``bücher.example`` passes), ``xn--`` labels
      must decode as one, and an ASCII hostname may only hold ``[a-z0-9._-]``;
    - the host checked must be exactly the one the client will dial.

    Hostnames are vetted at connect time by :class:`VettingResolver` and :class:`VettingSocketFactory`.

    Raises :class:`ValidationFailed` naming the reason, e.g.
    ``"refused: 'http://127.0.0.1:9/' points at a loopback address"``,
    ``"refused: 'http://①②⑦.⓪.⓪.①:9/' host normalizes to 127.0.0.1, a loopback address"``,
    ``"refused: 'http://⒈⒉⒎/' host is not a valid IDNA name (...)"``.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValidationFailed(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValidationFailed(f"refused: {url!r} must use http or https, not {scheme or 'no scheme'!r}")
    if https_only and scheme != "https":
        raise ValidationFailed(f"refused: {url!r} must use https (https-only targets are configured)")
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed(f"refused: {url!r} must not contain user info (user:password@)")
    host = parts.hostname
    if not host:
        raise ValidationFailed(f"refused: {url!r} has no host")
    if allow_private:
        return
    _refuse_ip_forms(url, host, _host_forms(host, ()))
    expected = _ascii_form(url, host)
    try:
        client_url = URL(url)
        client_host, client_display = client_url.raw_host, client_url.host
    except ValueError as exc:  # idna.IDNAError is a UnicodeError, a ValueError
        raise ValidationFailed(f"invalid URL {url!r}: {exc}") from None
    if not client_host or not client_display:
        raise ValidationFailed(f"refused: {url!r} has no host for the HTTP client")
    if client_url.user is not None or client_url.password is not None:
        raise ValidationFailed(f"refused: {url!r} must not contain user info (user:password@)")
    _refuse_ip_forms(url, host, _host_forms(host, (client_host.lower(), client_display.lower())))
    if not _same_host(expected, client_host.lower()):
        raise ValidationFailed(
            f"refused: {url!r} host {host!r} is read as {client_host!r} by the HTTP client"
        )


class VettingResolver(AbstractResolver):
    """An aiohttp resolver that only hands out public addresses (unless ``allow_private``).

    Wraps ``resolver`` (default: aiohttp's :class:`~aiohttp.resolver.ThreadedResolver`, i.e.
    ``getaddrinfo`` in a thread; it must be created inside a running event loop). Non-public addresses
    are dropped; when none remain, :class:`TargetRefused` (an ``OSError``) is raised, which aiohttp
    turns into ``ClientConnectorDNSError`` carrying the message
    ``"refused: <host> resolves to non-public address <ip>"``.

    Example: ``aiohttp.TCPConnector(resolver=VettingResolver(allow_private=False))``.
    """

    def __init__(self, *, allow_private: bool, resolver: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._resolver = resolver if resolver is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and keep the public addresses; raises :class:`TargetRefused` if none remain."""
        results = await self._resolver.resolve(host, port, family)
        if self._allow_private:
            return results
        kept: list[ResolveResult] = []
        refused: str | None = None
        for result in results:
            try:
                ip = ipaddress.ip_address(result["host"].split("%", 1)[0])
            except ValueError:
                refused = refused or result["host"]
                continue
            if is_public(ip):
                kept.append(result)
            else:
                refused = refused or result["host"]
        if not kept and refused is None:
            raise TargetRefused(f"refused: {host} resolves to no address")
        if not kept:
            raise TargetRefused(f"refused: {host} resolves to non-public address {refused}")
        return kept

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._resolver.close()


class VettingSocketFactory:
    """The delivery connector's socket factory: refuses to dial non-public addresses unless ``allow_private``.

    aiohttp (>= 3.11, through :mod:`aiohappyeyeballs`) calls it with each ``(family, type, proto,
    canonname, sockaddr)`` it is about to connect to, literal-IP hosts included (those never reach
    :class:`VettingResolver`). Returns a new unconnected socket; raises :class:`TargetRefused` (an
    ``OSError``, which aiohttp turns into ``ClientConnectorError``) with the message
    ``"refused: connecting to 127.0.0.1, a loopback address"`` before any socket exists.

    Example: ``aiohttp.TCPConnector(socket_factory=VettingSocketFactory(allow_private=False))``.
    """

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private

    def __call__(self, addr_info: AddrInfoType) -> socket.socket:
        """Vet ``addr_info``'s address and return ``socket.socket(family, type, proto)``."""
        family, type_, proto, _, sockaddr = addr_info
        if not self._allow_private:
            address = str(sockaddr[0])
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                raise TargetRefused(f"refused: connecting to {address!r}, not an IP address") from None
            reason = _non_public_reason(ip)
            if reason is not None:
                raise TargetRefused(f"refused: connecting to {ip}, a {reason} address")
        return socket.socket(family=family, type=type_, proto=proto)
