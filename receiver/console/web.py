"""The console's HTTP plumbing: security headers on every response, the signed-in guard with its CSRF
check, form parsing and template rendering.

Every console handler is wrapped by :meth:`Console.page` (GET: signed in, else a redirect to the
sign-in page) or :meth:`Console.action` (POST: signed in and the session's CSRF token in the form's
``csrf_token`` field or the ``X-CSRF-Token`` header, else 403). Handlers get a :class:`Ctx`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.errors import PayloadTooLarge, RelayError
from dispatch.model import iso_ms, now_ms
from receiver.api.common import Resources, read_body
from receiver.console.session import COOKIE_NAME, SESSION_SECONDS, Session, Sessions
from receiver.mirror_types import IMAGE_TYPES
from receiver.throttle import AuthThrottle
from receiver.vendors._fields import web_url

TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 65_536

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: https:",  # mirrored outputs live on the object store
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""Sent on every console response: scripts and styles only from the shipped files (no inline script,
style or handler), no framing."""

SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Pure ASGI middleware: :data:`SECURITY_HEADERS` on every response, and ``Cache-Control:
    no-store`` on everything but the shipped static files (pages may show a secret once)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers.extend(SECURITY_HEADERS)
                headers.append((b"cache-control", b"public, max-age=3600" if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class Ctx:
    """What a console handler works with: the request, the relay's resources, the session, the form
    fields of a POST and the base path (``/console``)."""

    request: Request
    res: Resources
    session: Session
    base: str
    form: dict[str, list[str]] = field(default_factory=dict)

    def field(self, name: str, default: str = "") -> str:
        """A form field's first value, stripped (``default`` when absent)."""
        values = self.form.get(name)
        return values[0].strip() if values else default

    def fields(self, name: str) -> list[str]:
        """Every value of a repeated form field (checkboxes)."""
        return [v.strip() for v in self.form.get(name, [])]

    @property
    def htmx(self) -> bool:
        """True for a request htmx made (a fragment answers it, not a page)."""
        return self.request.headers.get("hx-request") == "true"


Handler = Callable[[Ctx], Awaitable[Response]]


def _fmt_time(ms: int | None) -> str:
    text = iso_ms(ms)
    return "—" if text is None else text.replace("T", " ")


def _pretty(text: str | bytes | None) -> str:
    """A body pretty-printed when it is JSON, else as it is (bytes decoded as UTF-8, bad bytes replaced)."""
    if text is None:
        return ""
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    try:
        return _escape_surrogates(json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=False))
    except (ValueError, RecursionError):
        return _escape_surrogates(raw)


def _json(value: object) -> str:
    return _escape_surrogates(json.dumps(value, indent=2, ensure_ascii=False, default=str))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogates(text: str) -> str:
    """``text`` with each lone surrogate written as its JSON escape (``"\\ud800"``, as the vendor
    sent it): a stored body may hold one in an escape, which decoding made a character no page can
    be encoded with."""
    if not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def make_environment() -> jinja2.Environment:
    """The console's Jinja2 environment: autoescaped HTML templates from ``templates/``, with the
    filters ``time`` (unix ms → UTC text), ``iso`` (unix ms → ISO-8601), ``pretty`` (JSON body →
    indented) and ``tojson_pretty``, and the test ``web_url`` (an ``http(s)`` URL: only those are
    rendered as links)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = _fmt_time
    env.filters["iso"] = iso_ms
    env.filters["pretty"] = _pretty
    env.filters["tojson_pretty"] = _json
    env.tests["web_url"] = lambda value: web_url(value) is not None
    env.globals["urlencode"] = lambda pairs: urlencode([(k, v) for k, v in pairs.items() if v])
    env.globals["image_types"] = IMAGE_TYPES  # a mirrored copy of another type is a download, never an <img>
    return env


class Console:
    """Renders pages and guards handlers for one relay app (its :class:`Sessions`)."""

    def __init__(self, sessions: Sessions, throttle: AuthThrottle | None = None) -> None:
        self.sessions = sessions
        self.throttle = throttle if throttle is not None else AuthThrottle()
        self.env = make_environment()

    # rendering -------------------------------------------------------------------------------------
    def render(
        self,
        ctx: Ctx | None,
        request: Request,
        template: str,
        values: Mapping[str, Any],
        *,
        status: int = 200,
        session: Session | None = None,
    ) -> HTMLResponse:
        """``template`` rendered with ``values`` plus ``base``, ``csrf`` (the session's token) and
        ``request``; with ``session`` the cookie is (re)issued."""
        current = session or (ctx.session if ctx else None)
        context = {
            "base": _base(request),
            "csrf": self.sessions.csrf_token(current) if current else "",
            "signed_in": bool(current and current.admin),
            "request": request,
            "path": request.url.path,
            **values,
        }
        html = self.env.get_template(template).render(context)
        response = HTMLResponse(html, status_code=status)
        if session is not None:
            self.set_cookie(request, response, session)
        return response

    def set_cookie(self, request: Request, response: Response, session: Session) -> None:
        """Issue ``session`` as the HttpOnly, SameSite=Strict cookie scoped to the console's path
        (``Secure`` when the request came over HTTPS)."""
        response.set_cookie(
            COOKIE_NAME,
            self.sessions.dump(session),
            max_age=SESSION_SECONDS,
            path=_base(request) or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def error(self, ctx: Ctx, exc: RelayError) -> HTMLResponse:
        """A relay error as an HTML page (or, for htmx, a fragment) with the error's status."""
        template = "_flash.html" if ctx.htmx else "error.html"
        return self.render(
            ctx, ctx.request, template, {"ok": False, "message": exc.message}, status=exc.status
        )

    # guards ----------------------------------------------------------------------------------------
    def session_of(self, request: Request) -> Session | None:
        """The request's session (signed in or anonymous), or ``None``."""
        return self.sessions.load(request.cookies.get(COOKIE_NAME))

    async def signed_in(self, request: Request) -> Session | None:
        """The request's signed-in session, or ``None`` (none, anonymous, or signed out: its id was
        revoked in the store by ``/logout``, on whichever process)."""
        session = self.session_of(request)
        if session is None or not session.admin:
            return None
        store = request.state.resources.store
        if await store.session_revoked(session.sid, now=now_ms()):
            return None
        return session

    async def sign_out(self, request: Request, session: Session) -> None:
        """Revoke ``session`` in the store until its cookie would have expired anyway."""
        now = now_ms()
        await request.state.resources.store.revoke_session(
            session.sid, until=now + SESSION_SECONDS * 1000, now=now
        )

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A GET handler for signed-in operators; others are sent to the sign-in page (303), or get
        401 for htmx and event-stream requests."""

        async def endpoint(request: Request) -> Response:
            session = await self.signed_in(request)
            if session is None:
                if request.headers.get("hx-request") or "text/event-stream" in request.headers.get(
                    "accept", ""
                ):
                    return Response("sign in first", status_code=401, media_type="text/plain")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                query = urlencode({"next": target})
                return RedirectResponse(f"{_base(request)}/login?{query}", status_code=303)
            ctx = Ctx(request, request.state.resources, session, _base(request))
            try:
                return await handler(ctx)
            except RelayError as exc:
                return self.error(ctx, exc)

        return endpoint

    def action(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A POST handler for signed-in operators carrying the session's CSRF token; 403 otherwise
        (nothing is done). The form is parsed before the handler runs."""

        async def endpoint(request: Request) -> Response:
            session = await self.signed_in(request)
            if session is None:
                return Response("sign in first", status_code=403, media_type="text/plain")
            try:
                form = await read_form(request)
            except PayloadTooLarge as exc:
                return Response(exc.message, status_code=413, media_type="text/plain")
            given = request.headers.get("x-csrf-token") or next(iter(form.get("csrf_token", [])), None)
            if not self.sessions.check_csrf(session, given):
                return Response(
                    "missing or wrong CSRF token: reload the page and try again",
                    status_code=403,
                    media_type="text/plain",
                )
            ctx = Ctx(request, request.state.resources, session, _base(request), form)
            try:
                return await handler(ctx)
            except RelayError as exc:
                return self.error(ctx, exc)

        return endpoint


async def read_form(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body (at most 64 KiB) as ``{name: [values]}``; any
    other body is empty. Raises :class:`PayloadTooLarge`."""
    body = await read_body(request, MAX_FORM_BYTES)
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    form: dict[str, list[str]] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        form.setdefault(name, []).append(value)
    return form


def _base(request: Request) -> str:
    """The console's mount path as the client sees it, e.g. ``/console``."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")
