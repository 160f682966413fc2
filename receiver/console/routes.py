"""The console's pages and actions. Each handler reads through the store verbs and acts through
:mod:`receiver.operations` (the functions behind the HTTP API and the CLI), then renders a template.

Pages (GET): ``/`` overview, ``/jobs``, ``/jobs/{id}`` (with ``/jobs/{id}/live``, its event stream),
``/subscribers``, ``/subscribers/{id}``, ``/deliveries`` (dead letters by default). Actions (POST,
CSRF-checked): sign in and out, replay an event, retry a delivery, reprocess a stored callback
(``/inbound/{id}/preview`` shows its dry run first), re-mirror a job's outputs, create, edit,
enable, disable a subscriber, rotate its secret, recover its deliveries (dry run first).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from dispatch.errors import NotConfigured, NotFound, PayloadTooLarge, ValidationFailed
from dispatch.model import EVENT_TYPES, JobState, now_ms
from dispatch.store.records import DELIVERY_STATUSES
from dispatch.store.sql import page_key, parse_page_key
from dispatch.store.stats import OUTCOME_PATHS
from receiver import operations
from receiver.console.overview import DAY_MS, HOUR_MS, read_overview
from receiver.console.preview import reprocess_preview
from receiver.console.search import JobQuery, find_jobs
from receiver.console.session import Session
from receiver.console.story import read_story
from receiver.console.web import Console, Ctx, read_form
from receiver.mirroring import output_entry, remirror
from receiver.throttle import client_address
from receiver.vendors import ADAPTERS

STATIC = "static"
LIVE_INTERVAL = 1.0
"""Seconds between two looks at a job while its page streams live updates."""
LIVE_MAX_SECONDS = 300.0
"""A live stream ends after this long; the browser's EventSource reconnects by itself."""


def _ms(value: str, name: str) -> int | None:
    """A form or query time as unix ms: ``2026-11-30T08:40`` (a datetime-local value, UTC) or any
    ISO-8601 time; empty is ``None``. Raises :class:`ValidationFailed`."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{name}: not a time (use YYYY-MM-DDTHH:MM, UTC): {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _local(ms: int | None) -> str:
    """Unix ms as a datetime-local value in UTC (``2026-11-30T08:40``), ``""`` for ``None``."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


class Pages:
    """The handlers, bound to one :class:`Console` (its templates and sessions)."""

    def __init__(self, console: Console) -> None:
        self.c = console

    # sign-in ---------------------------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        """The sign-in page; hands out an anonymous session whose CSRF token the form carries."""
        if await self.c.signed_in(request) is not None:
            return RedirectResponse(f"{request.scope.get('root_path', '')}/", status_code=303)
        session = self.c.session_of(request)
        fresh = session if session is not None and not session.admin else Session.new(admin=False)
        values = {"next": _safe_next(request.query_params.get("next", "")), "message": None}
        return self.c.render(None, request, "login.html", values, session=fresh)

    async def login(self, request: Request) -> Response:
        """Check the CSRF token and the admin token; on success a new signed-in session (303 to
        ``next``), else the form again with 401 (403 without a valid CSRF token). Before any of the
        body is read: without the session cookie the sign-in page hands out the answer is 403, and
        from an address past its failed-attempt budget (:mod:`receiver.throttle`) 429 with
        ``Retry-After``. A wrong token counts against the address's budget."""
        session = self.c.session_of(request)
        if session is None:  # no form of ours was loaded: refused before reading a body
            return Response("missing or wrong CSRF token: reload the page", status_code=403)
        address = client_address(request.scope)
        wait = self.c.throttle.retry_after(address)
        if wait is not None:
            refusal = self.c.throttle.refusal(wait)
            headers = {"Retry-After": str(wait)}
            return Response(refusal.message, status_code=429, media_type="text/plain", headers=headers)
        try:
            form = await read_form(request)
        except PayloadTooLarge as exc:
            return Response(exc.message, status_code=413, media_type="text/plain")
        if not self.c.sessions.check_csrf(session, _first(form, "csrf_token")):
            return Response("missing or wrong CSRF token: reload the page", status_code=403)
        token = (_first(form, "token") or "").strip()
        target = _safe_next(_first(form, "next") or "")
        if not token or not self.c.sessions.check_token(token):
            self.c.throttle.failed(address)
            values = {"next": target, "message": "That is not the relay's admin token."}
            return self.c.render(None, request, "login.html", values, status=401, session=session)
        base = request.scope.get("root_path", "")
        response = RedirectResponse(target or f"{base}/", status_code=303)
        self.c.set_cookie(request, response, Session.new(admin=True))
        return response

    async def logout(self, ctx: Ctx) -> Response:
        """End the session on the server (its id is revoked in the store, so its cookie no longer
        signs anyone in, on any process) and replace the cookie by an anonymous one."""
        await self.c.sign_out(ctx.request, ctx.session)
        response = RedirectResponse(f"{ctx.base}/login", status_code=303)
        self.c.set_cookie(ctx.request, response, Session.new(admin=False))
        return response

    # overview --------------------------------------------------------------------------------------
    async def overview(self, ctx: Ctx) -> Response:
        """Per vendor: last hour and day by state, success rate, p95, lost callbacks, a 24 h chart;
        the delivery backlog."""
        now = now_ms()
        view = await read_overview(ctx.res.store, now=now)
        values = {
            "view": view,
            "states": [s.value for s in JobState],
            "hour_since": _local(now - HOUR_MS),
            "day_since": _local(now - DAY_MS),
        }
        return self.c.render(ctx, ctx.request, "overview.html", values)

    # jobs ------------------------------------------------------------------------------------------
    async def jobs(self, ctx: Ctx) -> Response:
        """Filter by vendor, state, reference and time; search by job id, vendor job id or reference."""
        q = ctx.request.query_params
        vendor = q.get("vendor") or None
        status = q.get("status") or None
        if vendor is not None and vendor not in ADAPTERS:
            raise ValidationFailed(f"vendor: unknown value {vendor[:40]!r}")
        if status is not None and status not in {s.value for s in JobState}:
            raise ValidationFailed(f"status: unknown value {status[:40]!r}")
        via = q.get("via") or None
        if via is not None and via not in OUTCOME_PATHS:
            raise ValidationFailed(f"via: unknown value {via[:40]!r}; one of {', '.join(OUTCOME_PATHS)}")
        cursor = q.get("cursor")
        try:
            after = parse_page_key(cursor) if cursor else None
        except ValueError as exc:
            raise ValidationFailed(f"cursor: {exc}") from None
        query = JobQuery(
            vendor=vendor,
            status=status,
            reference=(q.get("reference") or "").strip() or None,
            q=(q.get("q") or "").strip() or None,
            via=via,
            since=_ms(q.get("since", ""), "since"),
            until=_ms(q.get("until", ""), "until"),
            after=after,
        )
        found = await find_jobs(ctx.res.store, query)
        filters = {k: q.get(k, "") for k in ("vendor", "status", "reference", "q", "via", "since", "until")}
        next_url = None
        if found.cursor:
            kept = {k: v for k, v in filters.items() if v}
            next_url = f"{ctx.base}/jobs?{urlencode({**kept, 'cursor': found.cursor})}"
        values = {
            "page": found,
            "query": query,
            "filters": filters,
            "vendors": sorted(ADAPTERS),
            "states": [s.value for s in JobState],
            "paths": OUTCOME_PATHS,
            "next_url": next_url,
        }
        return self.c.render(ctx, ctx.request, "jobs.html", values)

    async def job(self, ctx: Ctx) -> Response:
        """One job's story; the live region follows it through ``/jobs/{id}/live``."""
        story = await read_story(ctx.res.store, ctx.request.path_params["id"])
        live = self._live_html(ctx, story)
        values = {"story": story, "live_html": live, "live_version": _digest(live)}
        return self.c.render(ctx, ctx.request, "job.html", values)

    def _live_html(self, ctx: Ctx, story: Any) -> str:
        values = {
            "base": ctx.base,
            "csrf": self.c.sessions.csrf_token(ctx.session),
            "story": story,
            "mirroring": ctx.res.settings.mirror_url is not None,
        }
        return self.c.env.get_template("_story.html").render(values)

    async def job_live(self, ctx: Ctx) -> Response:
        """Server-sent events: ``event: story`` with the job's live region each time it changes
        (looked at every :data:`LIVE_INTERVAL` s; ``?v=`` is the version the page already shows)."""
        job_id = ctx.request.path_params["id"]
        await ctx.res.store.get_job(job_id)  # 404 before the stream starts
        shown = ctx.request.query_params.get("v", "")

        async def stream() -> AsyncIterator[str]:
            nonlocal shown
            yield "retry: 2000\n\n"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LIVE_MAX_SECONDS
            while loop.time() < deadline:
                if await ctx.request.is_disconnected():
                    return
                html = self._live_html(ctx, await read_story(ctx.res.store, job_id))
                version = _digest(html)
                if version != shown:
                    shown = version
                    data = "".join(f"data: {line}\n" for line in html.splitlines())
                    yield f"event: story\n{data}\n"
                else:
                    yield ": idle\n\n"  # a comment: keeps proxies from timing the stream out
                await asyncio.sleep(LIVE_INTERVAL)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
        )

    # job actions -----------------------------------------------------------------------------------
    async def replay(self, ctx: Ctx) -> Response:
        """Replay an event to every matching subscriber, or to the one chosen."""
        sub = ctx.field("subscriber_id") or None
        deliveries = await operations.replay(
            ctx.res.store, ctx.request.path_params["id"], sub, wake=ctx.res.wake
        )
        message = (
            f"Replay queued: {len(deliveries)} new deliveries."
            if deliveries
            else ("Nothing to replay: no enabled subscriber wants this event.")
        )
        return await self._done(ctx, message)

    async def retry(self, ctx: Ctx) -> Response:
        """Make a dead, failed or retrying delivery due now."""
        delivery = await operations.retry_delivery(
            ctx.res.store, ctx.request.path_params["id"], wake=ctx.res.wake
        )
        return await self._done(ctx, f"Delivery {delivery.id} is due again.")

    async def reprocess_preview(self, ctx: Ctx) -> Response:
        """The dry run of a reprocess: the verdict and the job fields it would change."""
        preview = await reprocess_preview(ctx.res.ingest, ctx.res.store, ctx.request.path_params["id"])
        return self.c.render(ctx, ctx.request, "_reprocess_preview.html", {"preview": preview})

    async def reprocess(self, ctx: Ctx) -> Response:
        """Re-run a stored callback through the current adapter (stored as a new ``reprocess`` message)."""
        row = await operations.reprocess(ctx.res.ingest, ctx.res.store, ctx.request.path_params["id"])
        return await self._done(
            ctx, f"Reprocessed as {row.id}: {row.verdict}" + (f" ({row.error})" if row.error else "")
        )

    async def remirror(self, ctx: Ctx) -> Response:
        """Copy a succeeded job's outputs to the mirror again now (one attempt each)."""
        if ctx.res.settings.mirror_url is None:
            raise NotConfigured("mirroring is off: set RELAY_MIRROR_URL (file:///PATH or s3://BUCKET/PREFIX)")
        job = await remirror(
            ctx.res.store,
            ctx.res.settings,
            ctx.request.path_params["id"],
            metrics=ctx.res.metrics,
            on_event=ctx.res.wake,
        )
        copied = sum(1 for o in job.outputs if o.mirror is not None)
        return await self._done(ctx, f"Re-mirrored: {copied} of {len(job.outputs)} outputs copied.")

    async def output(self, ctx: Ctx) -> Response:
        """A mirrored output's thumbnail source: a redirect (302) to a freshly signed URL of the
        relay's copy, so the page's ``<img>`` never shows an expired one and the live region's HTML
        stays the same from one look to the next. 404 when that output was not mirrored."""
        job = await ctx.res.store.get_job(ctx.request.path_params["job_id"])
        index = ctx.request.path_params["index"]
        entry = output_entry(job, index)
        assert entry.mirror is not None  # output_entry returns mirrored outputs only
        target = ctx.res.mirror
        url = target.url(job.id, index)[0] if target is not None else entry.mirror.url
        return RedirectResponse(url, status_code=302)

    async def _done(self, ctx: Ctx, message: str) -> Response:
        """An action's answer: a flash fragment for htmx, else back to where the form was."""
        if ctx.htmx:
            return self.c.render(ctx, ctx.request, "_flash.html", {"ok": True, "message": message})
        back = _safe_next(ctx.field("back")) or f"{ctx.base}/"
        return RedirectResponse(back, status_code=303)

    # subscribers -----------------------------------------------------------------------------------
    async def subscribers(self, ctx: Ctx) -> Response:
        """Every subscriber; ``?enabled=false`` only the disabled ones."""
        subs = await ctx.res.store.list_subscribers()
        enabled = ctx.request.query_params.get("enabled")
        if enabled in ("true", "false"):
            subs = [s for s in subs if s.enabled == (enabled == "true")]
        values = {"subscribers": subs, "event_types": EVENT_TYPES, "enabled": enabled, "created": None}
        return self.c.render(ctx, ctx.request, "subscribers.html", values)

    async def create_subscriber(self, ctx: Ctx) -> Response:
        """Create a subscriber; the page shows its secret this once."""
        types = ctx.fields("event_types") or None
        sub, secret = await operations.add_subscriber(
            ctx.res.settings,
            ctx.res.store,
            ctx.field("url"),
            event_types=_event_types(types),
            description=ctx.field("description") or None,
        )
        values = {"subscriber": sub, "secret": secret, "what": "created"}
        return self.c.render(ctx, ctx.request, "secret.html", values, status=201)

    async def subscriber(self, ctx: Ctx) -> Response:
        """One subscriber: edit, enable or disable, rotate the secret, recover a time window, its
        dead letters."""
        sub = await ctx.res.store.get_subscriber(ctx.request.path_params["id"])
        now = now_ms()
        values = {
            "sub": sub,
            "event_types": EVENT_TYPES,
            "since": _local(now - DAY_MS),
            "until": "",
        }
        return self.c.render(ctx, ctx.request, "subscriber.html", values)

    async def update_subscriber(self, ctx: Ctx) -> Response:
        """Change the URL, description and event types."""
        sub_id = ctx.request.path_params["id"]
        changes: dict[str, Any] = {"url": ctx.field("url"), "description": ctx.field("description") or None}
        types = ctx.fields("event_types")
        if types:
            changes["event_types"] = _event_types(types)
        await operations.update_subscriber(ctx.res.settings, ctx.res.store, sub_id, changes)
        return RedirectResponse(f"{ctx.base}/subscribers/{sub_id}", status_code=303)

    async def set_enabled(self, ctx: Ctx) -> Response:
        """Enable (``enabled=true``) or disable a subscriber."""
        sub_id = ctx.request.path_params["id"]
        enabled = ctx.field("enabled") == "true"
        await operations.update_subscriber(ctx.res.settings, ctx.res.store, sub_id, {"enabled": enabled})
        back = _safe_next(ctx.field("back")) or f"{ctx.base}/subscribers/{sub_id}"
        return RedirectResponse(back, status_code=303)

    async def rotate(self, ctx: Ctx) -> Response:
        """A new secret, shown this once; the old one keeps signing beside it for the overlap."""
        sub, secret = await operations.rotate_secret(
            ctx.res.settings, ctx.res.store, ctx.request.path_params["id"]
        )
        values = {"subscriber": sub, "secret": secret, "what": "rotated"}
        return self.c.render(ctx, ctx.request, "secret.html", values)

    async def recover(self, ctx: Ctx) -> Response:
        """Recover a subscriber's failed and dead deliveries in [since, until): ``dry_run=true``
        answers the count with a confirm button; without it the deliveries are sent again."""
        sub_id = ctx.request.path_params["id"]
        since = _ms(ctx.field("since"), "since") or 0
        until = _ms(ctx.field("until"), "until")
        dry_run = ctx.field("dry_run") == "true"
        done = await operations.recover(
            ctx.res.store, sub_id, since=since, until=until, dry_run=dry_run, wake=ctx.res.wake
        )
        values = {
            "sub_id": sub_id,
            "count": done.count,
            "dry_run": done.dry_run,
            "since": ctx.field("since"),
            "until": ctx.field("until"),
            "label": ctx.field("label") or "failed and dead deliveries in that window",
        }
        return self.c.render(ctx, ctx.request, "_recover.html", values)

    # deliveries ------------------------------------------------------------------------------------
    async def deliveries(self, ctx: Ctx) -> Response:
        """Deliveries by status (``dead`` by default: the dead letters), optionally one subscriber's,
        each with its last error (and its last response's first bytes) and its event's job."""
        q = ctx.request.query_params
        status = q.get("status") or "dead"
        if status not in DELIVERY_STATUSES:
            raise ValidationFailed(f"status: unknown value {status[:40]!r}")
        sub_id = q.get("subscriber_id") or None
        cursor = q.get("cursor")
        try:
            after = parse_page_key(cursor) if cursor else None
        except ValueError as exc:
            raise ValidationFailed(f"cursor: {exc}") from None
        limit = 50
        rows = await ctx.res.store.list_deliveries(
            status=status, subscriber_id=sub_id, limit=limit + 1, after=after
        )
        more = len(rows) > limit
        rows = [await ctx.res.store.get_delivery(d.id) for d in rows[:limit]]  # with their attempts
        jobs: dict[str, str] = {}
        for d in rows:
            if d.event_id not in jobs:
                try:
                    jobs[d.event_id] = (await ctx.res.store.get_event(d.event_id)).job_id
                except NotFound:
                    jobs[d.event_id] = ""
        subs = {s.id: s for s in await ctx.res.store.list_subscribers()}
        retry_all = []  # (subscriber, its failed and dead deliveries) for "retry all of a subscriber's"
        if status == "dead":
            for sub in subs.values():
                if sub_id in (None, sub.id):
                    count = await ctx.res.store.count_recoverable(sub.id, since=0, until=None)
                    if count:
                        retry_all.append((sub, count))
        next_url = None
        if more and rows:
            params = {"status": status, **({"subscriber_id": sub_id} if sub_id else {})}
            params["cursor"] = page_key(rows[-1].created_at, rows[-1].id)
            next_url = f"{ctx.base}/deliveries?{urlencode(params)}"
        values = {
            "rows": rows,
            "jobs": jobs,
            "subs": subs,
            "status": status,
            "statuses": DELIVERY_STATUSES,
            "sub_id": sub_id,
            "retry_all": retry_all,
            "next_url": next_url,
        }
        return self.c.render(ctx, ctx.request, "deliveries.html", values)


def _event_types(types: list[str] | None) -> list[str]:
    if not types:
        return ["job.succeeded", "job.failed"]
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(f"event types: unknown {unknown}")
    return list(dict.fromkeys(types))


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _safe_next(value: str) -> str:
    """``value`` when it is a path on this site (``/console/...``), else ``""`` (no open redirect)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value and "\n" not in value:
        return value
    return ""


def _digest(html: str) -> str:
    return hashlib.sha256(html.encode()).hexdigest()[:16]


def routes(console: Console) -> list[BaseRoute]:
    """Every console route, relative to its mount (``/console``)."""
    p = Pages(console)
    page, action = console.page, console.action
    static = StaticFiles(packages=[("receiver.console", STATIC)])
    return [
        Route("/", page(p.overview), methods=["GET"]),
        Route("/login", p.login_form, methods=["GET"]),
        Route("/login", p.login, methods=["POST"]),
        Route("/logout", action(p.logout), methods=["POST"]),
        Route("/jobs", page(p.jobs), methods=["GET"]),
        Route("/jobs/{id}", page(p.job), methods=["GET"]),
        Route("/jobs/{id}/live", page(p.job_live), methods=["GET"]),
        Route("/jobs/{id}/remirror", action(p.remirror), methods=["POST"]),
        Route("/outputs/{job_id}/{index:int}", page(p.output), methods=["GET"]),
        Route("/events/{id}/replay", action(p.replay), methods=["POST"]),
        Route("/deliveries", page(p.deliveries), methods=["GET"]),
        Route("/deliveries/{id}/retry", action(p.retry), methods=["POST"]),
        Route("/inbound/{id}/preview", page(p.reprocess_preview), methods=["GET"]),
        Route("/inbound/{id}/reprocess", action(p.reprocess), methods=["POST"]),
        Route("/subscribers", page(p.subscribers), methods=["GET"]),
        Route("/subscribers", action(p.create_subscriber), methods=["POST"]),
        Route("/subscribers/{id}", page(p.subscriber), methods=["GET"]),
        Route("/subscribers/{id}", action(p.update_subscriber), methods=["POST"]),
        Route("/subscribers/{id}/enabled", action(p.set_enabled), methods=["POST"]),
        Route("/subscribers/{id}/rotate-secret", action(p.rotate), methods=["POST"]),
        Route("/subscribers/{id}/recover", action(p.recover), methods=["POST"]),
        Mount("/static", app=static, name="console-static"),
    ]
