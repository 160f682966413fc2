"""Issue 19, finding 1: mirrored bytes never run on the relay's origin. A vendor (or a forger holding a
callback URL) plants an SVG with a script and an HTML "image" among real images; the relay types each
copy from its bytes, serves non-images as attachments, and every ``/v1/outputs`` answer carries
``nosniff`` and a sandboxing CSP. The browser half (Debian's Chromium via Playwright) clicks the job
page's links to the copies and checks nothing ran. Runs on Postgres too under ``RELAY_TEST_DATABASE``."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import features
from playwright.sync_api import Download, Page, expect, sync_playwright

from fixtures.harness import RunningServer, serve_in_thread, wait_until
from receiver.fakes import FakeConfig
from tests.databases import query
from tests.output_host import OutputHost, plant_outputs
from tests.relay_env import API_TOKEN, RelayEnv, relay_env
from tests.test_console_browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, require_browser

OCTETS = "application/octet-stream"
FAKE = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True)
OUTPUT_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
}


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[OutputHost, RunningServer]]:
    outputs = OutputHost()
    with serve_in_thread(outputs.app()) as server:
        yield outputs, server


def _mirrored(env: RelayEnv, job_id: str, count: int) -> list[dict[str, Any]]:
    """The job's outputs once every one has its mirror."""

    def done() -> bool:
        outputs = env.job(job_id)["outputs"]
        return len(outputs) == count and all(o.get("mirror") for o in outputs)

    wait_until(done, timeout=20, message="outputs not mirrored")
    outputs: list[dict[str, Any]] = env.job(job_id)["outputs"]
    return outputs


def _has_output_headers(response: httpx.Response) -> bool:
    return all(response.headers.get(name) == value for name, value in OUTPUT_HEADERS.items())


def test_a_mirrored_copy_is_typed_from_its_bytes_and_served_safely(
    tmp_path: Path, host: tuple[OutputHost, RunningServer]
) -> None:
    """An SVG and an HTML page become application/octet-stream attachments; PNG, JPEG, WebP, GIF (and
    AVIF where Pillow has it) declared as text/plain become their image type with their real size, a
    2 MiB WebP its type; every /v1/outputs answer, 401s and 404s included, carries nosniff and the
    sandboxing CSP."""
    _outputs, server = host
    names = ["evil.svg", "result", "img/a.png", "img/b.jpg", "img/c.webp", "img/d.gif", "img/big.webp"]
    images = ["image/png", "image/jpeg", "image/webp", "image/gif", "image/webp"]
    if features.check("avif"):
        names.append("img/e.avif")
        images.append("image/avif")
    with relay_env(tmp_path, FAKE, mirror_url=f"file://{tmp_path / 'mirror'}", mirror_backoff=0.05) as env:
        job = plant_outputs(env.relay.url, env.client.headers, env.fake, [f"{server.url}/{n}" for n in names])
        copies = _mirrored(env, job["id"], len(names))
        types = [o["mime_type"] for o in copies]
        assert types == [OCTETS, OCTETS, *images]
        sizes = [(o["width"], o["height"]) for o in copies[2:]]
        assert sizes.pop(4) == (None, None)  # the big WebP: typed by its signature, its size not read
        assert sizes == [(64, 48)] * len(sizes)
        for index, copy in enumerate(copies):
            served = httpx.get(copy["mirror"]["url"])  # the signed URL the event carries
            assert served.status_code == 200, served.text
            assert hashlib.sha256(served.content).hexdigest() == copy["mirror"]["sha256"]
            assert served.headers["content-type"] == types[index]
            assert _has_output_headers(served), served.headers
            attachment = served.headers.get("content-disposition", "")
            assert attachment.startswith("attachment") if index < 2 else attachment == ""
        path = f"{env.relay.url}/v1/outputs/{job['id']}"
        refusals = [
            httpx.get(f"{path}/0"),  # no credential: the auth middleware's 401
            httpx.get(f"{path}/0?expires=1&sig=00"),  # a forged signature: the handler's 401
            env.client.get(f"{path}/99"),  # no such output: 404
            env.client.get(f"{env.relay.url}/v1/outputs/job_nope/0"),
        ]
        assert [r.status_code for r in refusals] == [401, 401, 404, 404]
        assert all(_has_output_headers(r) for r in refusals), [dict(r.headers) for r in refusals]
        assert not _has_output_headers(env.client.get("/v1/jobs"))  # only the outputs' own answers


def test_a_copy_recorded_with_a_script_type_before_the_fix_is_served_as_an_attachment(
    tmp_path: Path, host: tuple[OutputHost, RunningServer]
) -> None:
    """A job whose stored output says image/svg+xml (a copy made before this fix kept the vendor's
    type) is still served as an application/octet-stream attachment; an answer that fails
    unexpectedly (a corrupt job row: 500) carries nosniff and the CSP too."""
    _outputs, server = host
    with relay_env(tmp_path, FAKE, mirror_url=f"file://{tmp_path / 'mirror'}", mirror_backoff=0.05) as env:
        job = plant_outputs(env.relay.url, env.client.headers, env.fake, [f"{server.url}/evil.svg"])
        _mirrored(env, job["id"], 1)
        ((stored,),) = query(env.database_url, "SELECT outputs FROM jobs WHERE id = ?", (job["id"],))
        query(
            env.database_url,
            "UPDATE jobs SET outputs = ? WHERE id = ?",
            (stored.replace(OCTETS, "image/svg+xml"), job["id"]),
        )
        assert env.job(job["id"])["outputs"][0]["mime_type"] == "image/svg+xml"
        served = env.client.get(f"/v1/outputs/{job['id']}/0")
        assert served.status_code == 200 and b"<script>" in served.content
        assert served.headers["content-type"] == OCTETS
        assert served.headers["content-disposition"] == "attachment"
        assert _has_output_headers(served)
        query(env.database_url, "UPDATE jobs SET outputs = ? WHERE id = ?", ("{not json", job["id"]))
        broken = env.client.get(f"/v1/outputs/{job['id']}/0")  # an unexpected error: the 500 handler
        assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal_error"
        assert _has_output_headers(broken)


# the browser ----------------------------------------------------------------------------------------
def test_planted_svg_and_html_outputs_never_run_from_the_console(
    tmp_path: Path, host: tuple[OutputHost, RunningServer]
) -> None:
    """An operator signed in to the console opens a job whose vendor "results" are an SVG with a script
    and an HTML page, and clicks every link to their mirrored copies: no script runs (the canary is
    never called) and no subscriber is created; a real PNG beside them still shows as a thumbnail."""
    require_browser()
    outputs, server = host
    outputs.canary.clear()
    urls = [f"{server.url}/evil.svg", f"{server.url}/result", f"{server.url}/img/{uuid.uuid4().hex}.png"]
    with relay_env(tmp_path, FAKE, mirror_url=f"file://{tmp_path / 'mirror'}", mirror_backoff=0.05) as env:
        job = plant_outputs(env.relay.url, env.client.headers, env.fake, urls)
        _mirrored(env, job["id"], len(urls))
        subscribers_before = env.ok(env.client.get("/v1/subscribers"), 200)["data"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(base_url=env.relay.url, accept_downloads=True)
                page = context.new_page()
                page.set_default_timeout(WAIT_MS)
                page.goto("/console/login")
                page.get_by_label("Admin token").fill(API_TOKEN)
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
                page.goto(f"/console/jobs/{job['id']}")
                expect(page.get_by_role("heading", level=1)).to_contain_text(job["id"])

                opened: list[Page] = []
                downloads: list[Download] = []
                context.on("page", lambda popup: opened.append(popup))
                page.on("download", lambda download: downloads.append(download))
                links = page.locator(f'ul.outputs a[href*="/console/outputs/{job["id"]}/"]')
                expect(links).to_have_count(len(urls))
                for index in range(len(urls)):
                    seen = len(opened) + len(downloads)
                    links.nth(index).click()
                    _pump_until(page, partial(_more_than, seen, opened, downloads))
                for popup in opened:
                    popup.wait_for_load_state("load")  # a script's synchronous canary call is done by then
                assert outputs.canary == [], f"a planted script ran on the relay's origin: {outputs.canary}"
                thumbs = page.locator("ul.outputs img.thumb")
                expect(thumbs).to_have_count(1)  # the PNG only
                page.wait_for_function("() => document.querySelector('img.thumb').naturalWidth > 0")
                assert [d.url for d in downloads] and all("/v1/outputs/" in d.url for d in downloads)
            finally:
                browser.close()
        assert outputs.canary == [], f"a planted script ran on the relay's origin: {outputs.canary}"
        assert env.ok(env.client.get("/v1/subscribers"), 200)["data"] == subscribers_before


def _pump_until(page: Page, condition: Callable[[], bool], timeout: float = WAIT_MS / 1000) -> None:
    """Poll ``condition()`` with a deadline, letting Playwright deliver its events (a popup, a
    download) between looks: its sync API dispatches events only inside its own calls."""
    deadline = timeout * 1000
    waited = 0
    while not condition():
        assert waited < deadline, "the click opened nothing (no page, no download)"
        page.wait_for_timeout(50)
        waited += 50


def _more_than(count: int, *seen: list[Any]) -> bool:
    return sum(len(events) for events in seen) > count
