"""Keep subscriber URLs away from loopback, private and link-local networks (server-side request forgery).

Two layers, because a URL names a host and the host names addresses:

- :func:`check_url` refuses bad schemes, credentials in the URL and literal non-public IP hosts before
  anything is sent (aiohttp connects to a literal IP without asking the resolver);
- :class:`VettingResolver` is the resolver of the delivery connector: it drops every non-public
  address a hostname resolves to. aiohttp connects to exactly the addresses the resolver returned, so
  a name that resolves to a public address when checked and to ``127.0.0.1`` later (DNS rebinding)
  cannot slip past.

Both are switched off by ``RELAY_ALLOW_PRIVATE_TARGETS=true`` (tests, the demo).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from dispatch.errors import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(OSError):
    """A hostname resolved only to non-public addresses; aiohttp reports it as a connection error.

    ``str(exc)`` is the message alone, e.g.
    ``"refused: localhost resolves to non-public address 127.0.0.1"``.
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


def check_url(url: str, *, allow_private: bool, https_only: bool) -> None:
    """Refuse a subscriber URL that must not be delivered to; return ``None`` when it is fine.

    Example: ``check_url("https://hooks.example.com/relay", allow_private=False, https_only=True)``.

    Rules: the scheme is ``http`` or ``https`` (only ``https`` when ``https_only``); a host is present;
    there is no ``user:password@``; unless ``allow_private``, a literal IP host must be public
    (:func:`is_public`) and legacy numeric IPv4 spellings (``http://2130706433/``) are refused.
    Hostnames are vetted at connect time by :class:`VettingResolver`.

    Raises :class:`ValidationFailed` naming the reason, e.g.
    ``"refused: http://127.0.0.1:9/ points at a loopback address"``.
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
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if _legacy_ipv4(host):
            raise ValidationFailed(f"refused: {url!r} spells an IPv4 address non-canonically") from None
        return
    reason = _non_public_reason(ip)
    if reason is not None:
        raise ValidationFailed(f"refused: {url!r} points at a {reason} address")


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
