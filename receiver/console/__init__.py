"""The operator console at ``/console``: find a job, see its whole story, fix it with a click.

Server-rendered Jinja2 pages with htmx (its file shipped in ``static/``, no build step, no CDN),
served by the relay's own app. Operators sign in with the admin token; every action goes through
:mod:`receiver.operations`, like the HTTP API and the CLI. Example::

    app = Starlette(routes=[..., console.mount(settings, api_token)])
    # then open http://127.0.0.1:8000/console and paste the admin token
"""

from __future__ import annotations

from starlette.routing import Mount, Router

from receiver.console.routes import routes
from receiver.console.session import Sessions
from receiver.console.web import Console, SecurityHeaders
from receiver.settings import Settings
from receiver.throttle import AuthThrottle

PATH = "/console"


def mount(settings: Settings, api_token: str, throttle: AuthThrottle | None = None) -> Mount:
    """The console mounted at :data:`PATH`, its sessions signed with a key derived from the relay's
    secret key and ``api_token``, its failed sign-ins counted in ``throttle`` (shared with the API's
    wrong bearer tokens; its own when ``None``); every response carries the console's security headers."""
    if throttle is None:
        throttle = AuthThrottle(settings.auth_failure_limit, settings.auth_failure_window)
    console = Console(Sessions(settings, api_token), throttle)
    return Mount(PATH, app=SecurityHeaders(Router(routes(console))), name="console")
