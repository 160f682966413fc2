"""What ``upscale-relay serve`` says when it starts: where its data lives, where vendors call back,
which vendors can be used, whether it delivers, and what looks wrong (a callback URL vendors cannot
reach or will refuse, the SSRF guard off, ``/metrics`` public; ``worker`` prints those last two too)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from receiver.settings import Settings
from receiver.submit import callback_url_warnings
from receiver.vendors import ADAPTERS

LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def safe_database_url(url: str) -> str:
    """``url`` without a password, e.g. ``postgresql://relay:***@db:5432/relay``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def startup_summary(settings: Settings, *, port: int, worker: bool) -> list[str]:
    """Lines for stderr, e.g. ``["database: sqlite:///relay.db", "public URL: http://127.0.0.1:8000
    (callbacks arrive at /v1/callbacks/...)", "vendors configured: apixo, artnex; not configured:
    ltxstudio, dreamina (set RELAY_USEAPI_TOKEN), apiframe (set RELAY_APIFRAME_API_KEY)", "delivery
    worker: on", "warning: ..."]``."""
    configured = [a.name for a in ADAPTERS.values() if settings.vendor_credential(a.credential_setting)]
    missing = [
        f"{a.name} (set RELAY_{a.credential_setting.upper()})"
        for a in ADAPTERS.values()
        if not settings.vendor_credential(a.credential_setting)
    ]
    lines = [
        f"database: {safe_database_url(settings.database_url)}",
        f"public URL: {settings.public_url} (vendors call back at {settings.public_url}/v1/callbacks/...)",
        f"vendors configured: {', '.join(configured) or 'none'}"
        + (f"; not configured: {', '.join(missing)}" if missing else ""),
        f"delivery worker: {'on' if worker else 'off (run upscale-relay worker)'}",
    ]
    public = urlsplit(settings.public_url)
    public_port = public.port or (443 if public.scheme == "https" else 80)
    if public.hostname in LOOPBACK and port != 0 and public_port != port:
        lines.append(
            f"warning: RELAY_PUBLIC_URL is {settings.public_url} but serve listens on port {port}: vendors"
            f" would call back to port {public_port}; set RELAY_PUBLIC_URL to the address vendors can reach"
        )
    lines += [f"warning: {w}" for w in callback_url_warnings(settings)]
    return lines + exposure_warnings(settings)


def exposure_warnings(settings: Settings) -> list[str]:
    """Lines ``serve`` and ``worker`` print when a setting opens the relay up: the SSRF guard off
    (``RELAY_ALLOW_PRIVATE_TARGETS``) or ``/metrics`` without the token (``RELAY_METRICS_PUBLIC``),
    e.g. ``["warning: RELAY_ALLOW_PRIVATE_TARGETS=true: the SSRF guard is off; ..."]``; ``[]``
    when neither is set."""
    lines = []
    if settings.allow_private_targets:
        lines.append(
            "warning: RELAY_ALLOW_PRIVATE_TARGETS=true: the SSRF guard is off; deliveries and mirror"
            " downloads may reach loopback, private and link-local addresses (cloud metadata included)"
        )
    if settings.metrics_public:
        lines.append(
            "warning: RELAY_METRICS_PUBLIC=true: GET /metrics answers anyone, without the admin token"
        )
    return lines
