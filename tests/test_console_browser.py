"""The operator console in a real browser: Playwright for Python driving Debian's Chromium
(``/usr/bin/chromium``; ``.ci/run`` installs it with apt-get when missing, never ``playwright
install``) against a real relay on loopback seeded with the demo's jobs.

One browser launch: an operator signs in (a wrong token first), reads the overview, finds the demo's
failed APIXO job by reference, reads its error on the timeline, replays its event and watches the
new deliveries arrive live (server-sent events, no reload), previews a reprocess, creates a
subscriber and copies its secret, recovers a subscriber's dead deliveries with a dry run first, a
POST without the CSRF token is refused, and a running job whose callback is lost is followed live
until a status poll finds its outcome. Every page is checked at 1280 px and 390 px wide (no
horizontal overflow, every control has an accessible name) and screenshotted into the folder the
test prints (``console-screenshots/`` under its tmp dir, or ``RELAY_TEST_SCREENSHOTS``);
``overview.png`` and ``failing-apixo-job.png`` there are the stable names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from receiver.fakes.config import source_image
from tests.relay_env import API_TOKEN
from tests.test_console import FAILING_REFERENCE, console_env, seed_demo

CHROMIUM = os.environ.get("RELAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15_000


def require_browser() -> None:
    """Skip, saying how to install it, when Debian's Chromium is missing on a developer's machine;
    fail instead under ``RELAY_TEST_REQUIRE_BROWSER=1`` (``.ci/run`` installs Chromium and sets it, so
    CI never skips the browser tests)."""
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium)"
    if os.environ.get("RELAY_TEST_REQUIRE_BROWSER"):
        pytest.fail(message + "; RELAY_TEST_REQUIRE_BROWSER is set", pytrace=False)
    pytest.skip(message)


LOST_JOB_POLL_AFTER = 4.0
CONTROL_ROLES = {
    "button",
    "checkbox",
    "combobox",
    "link",
    "listbox",
    "radio",
    "searchbox",
    "spinbutton",
    "textbox",
    "DateTime",
}

_UNLABELLED_JS = """
() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
  .filter((el) => {
    const byLabel = Array.from(el.labels || []).some((l) => l.textContent.trim());
    const byAria = (el.getAttribute('aria-label') || '').trim()
      || (el.getAttribute('aria-labelledby') || '').split(' ').some(
        (id) => id && document.getElementById(id) && document.getElementById(id).textContent.trim());
    const byText = el.tagName === 'BUTTON' && el.textContent.trim();
    return !(byLabel || byAria || byText || (el.getAttribute('title') || '').trim());
  })
  .map((el) => el.outerHTML.slice(0, 120))
"""


def _unnamed_controls(page: Page) -> list[str]:
    """Controls without an accessible name: by Chromium's own accessibility tree (CDP), and by the
    DOM (every input, select, textarea and button has a label, aria-label, text or title)."""
    cdp = page.context.new_cdp_session(page)
    try:
        tree: dict[str, Any] = cdp.send("Accessibility.getFullAXTree")
    finally:
        cdp.detach()
    missing = []
    for node in tree["nodes"]:
        role = node.get("role", {}).get("value")
        if node.get("ignored") or role not in CONTROL_ROLES:
            continue
        if not str(node.get("name", {}).get("value", "")).strip():
            missing.append(f"{role} (AX node {node.get('backendDOMNodeId')})")
    missing.extend(page.evaluate(_UNLABELLED_JS))
    return missing


class Shots:
    """Screenshots of every page into one folder, each checked to be more than one colour."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def take(self, page: Page, name: str) -> Path:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        with Image.open(path) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1)
        assert colours is None, f"screenshot {path} is blank (one colour)"
        self.taken.append(path)
        return path


def _unexpected(kind: str, text: str) -> bool:
    """A browser console error other than the refusals this test provokes (the wrong token's 401,
    the missing CSRF token's 403): a CSP violation or a script error fails the test."""
    return kind == "error" and not _PROVOKED.search(text)


_PROVOKED = re.compile(r"^Failed to load resource: the server responded with a status of 40[13] ")


def check_page(page: Page, shots: Shots, name: str) -> None:
    """The page at hand has no horizontal overflow, names every control, and is screenshotted."""
    widths = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{name}: page is {widths[0]} px wide in a {widths[1]} px window"
    assert _unnamed_controls(page) == [], f"{name}: controls without an accessible name"
    shots.take(page, name)


def test_console_in_a_browser(tmp_path: Path) -> None:
    """An operator finds the failed APIXO job, reads its error, replays its event and sees the new
    deliveries arrive live, creates a subscriber and copies its secret, recovers with a dry run; a
    wrong token and a missing CSRF token are refused; every page works at 1280 and 390 px."""
    require_browser()
    folder = Path(os.environ.get("RELAY_TEST_SCREENSHOTS") or tmp_path / "console-screenshots")
    shots = Shots(folder)
    print(f"\nconsole screenshots: {folder}")
    # APIXO's first status poll comes LOST_JOB_POLL_AFTER s after the submit: long enough to watch a job
    # whose callback never comes (the fake's "lost" scenario) while it runs, until the poll finds it
    with console_env(tmp_path / "relay", poll_after={"apixo": LOST_JOB_POLL_AFTER}) as env:
        seeded = seed_demo(env)
        base = env.relay.url
        failing = env.job(seeded.failing_job)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                desktop = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base)
                desktop.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
                page = desktop.new_page()
                page.set_default_timeout(WAIT_MS)
                problems: list[str] = []
                page.on("console", lambda m: problems.append(m.text) if _unexpected(m.type, m.text) else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                _desktop_story(page, shots, seeded, failing, base)
                _narrow_pages(
                    browser.new_context(
                        viewport={"width": 390, "height": 844},
                        base_url=base,
                        storage_state=desktop.storage_state(),
                    ),
                    shots,
                    seeded,
                )
                assert problems == [], f"browser console errors (a CSP violation, say): {problems}"
            finally:
                browser.close()
    for stable in ("overview.png", "failing-apixo-job.png"):
        assert (folder / stable).is_file()


def _desktop_story(page: Page, shots: Shots, seeded: Any, failing: dict[str, Any], base: str) -> None:
    env = seeded.env
    # sign in: the wrong token first
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    check_page(page, shots, "login")
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the relay's admin token")
    page.get_by_label("Admin token").fill(API_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.locator('[data-figure="dead_letters"]')).not_to_have_text("0")
    check_page(page, shots, "overview")

    # the jobs page: find the failing APIXO job by its reference
    page.get_by_role("navigation").get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_label("Search").fill(FAILING_REFERENCE)
    page.get_by_role("button", name="Find jobs").click()
    rows = page.locator("#jobs-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("failed")
    check_page(page, shots, "jobs-search")

    # its page: the error on the timeline
    rows.first.get_by_role("link", name=seeded.failing_job).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(seeded.failing_job)
    code = failing["error"]["code"]
    failed_entry = page.locator(
        "li.entry.event", has=page.get_by_role("heading", name="State change → failed")
    )
    expect(failed_entry.locator(".note")).to_contain_text(code)
    expect(page.locator(".job-error")).to_contain_text(code)
    expect(failed_entry.locator('li.delivery[data-status="dead"]')).to_have_count(1)  # the flaky one
    shots.take(page, "failing-apixo-job")
    check_page(page, shots, "job")

    # replay its event to every matching subscriber: the new deliveries appear live, no reload
    deliveries = failed_entry.locator("li.delivery")
    before = deliveries.count()
    page.evaluate("window.__sameDocument = true")
    failed_entry.get_by_label("Replay to").select_option(label="every matching subscriber")
    failed_entry.get_by_role("button", name="Replay event").click()
    expect(page.locator("#flash")).to_contain_text("Replay queued: 2 new deliveries")
    expect(deliveries).to_have_count(before + 2, timeout=WAIT_MS)
    expect(failed_entry.locator('li.delivery[data-status="succeeded"]')).to_have_count(2, timeout=WAIT_MS)
    expect(failed_entry.locator('li.delivery[data-status="dead"]')).to_have_count(2, timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    check_page(page, shots, "job-after-replay")

    # reprocess its callback: the dry run comes first
    callback = page.locator("li.entry.inbound", has=page.get_by_role("heading", name="Vendor callback"))
    callback.get_by_role("button", name=re.compile("Reprocess")).click()
    preview = callback.locator(".preview")
    expect(preview).to_contain_text("Dry run")
    expect(preview).to_contain_text("would not change")
    check_page(page, shots, "job-reprocess-preview")

    # a POST without the CSRF token is refused, even from the signed-in page
    event_id = failed_entry.locator("form.replay").get_attribute("action")
    status = page.evaluate("(url) => fetch(url, {method: 'POST'}).then((r) => r.status)", event_id)
    assert status == 403

    # subscribers: create one, its secret shown once, copied with the button
    page.get_by_role("navigation").get_by_role("link", name="Subscribers", exact=True).click()
    check_page(page, shots, "subscribers")
    page.get_by_label("Endpoint URL").fill(f"{env.subscriber.url}/hooks/browser")
    page.get_by_label("Description").fill("added in the browser")
    page.get_by_role("button", name="Create subscriber").click()
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    page.get_by_role("button", name="Copy secret").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    check_page(page, shots, "subscriber-secret")
    page.get_by_role("link", name=re.compile("go to the subscriber")).click()
    assert secret not in page.content()

    # dead letters: the flaky subscriber's, with the last error
    page.get_by_role("navigation").get_by_role("link", name="Dead letters", exact=True).click()
    expect(page.get_by_role("heading", name="Dead letters", level=1)).to_be_visible()
    expect(page.locator("#deliveries-table tbody tr").first).to_contain_text("HTTP 500")
    flaky_retry_all = page.locator(f"#retry-all-{seeded.flaky['id']}")
    page.get_by_role("button", name=re.compile("Retry all of flaky endpoint")).click()
    expect(flaky_retry_all).to_contain_text("would be sent again")
    check_page(page, shots, "dead-letters")

    # recover the flaky subscriber's dead deliveries: the count first, then the send
    dead = env.client.get("/v1/deliveries", params={"status": "dead", "subscriber_id": seeded.flaky["id"]})
    count = len(dead.json()["data"])
    page.goto(f"/console/subscribers/{seeded.flaky['id']}")
    page.get_by_role("button", name="Count deliveries (dry run)").click()
    expect(page.locator("#recover-result")).to_contain_text(f"{count} failed and dead deliveries")
    expect(page.locator("#recover-result")).to_contain_text("would be sent again")
    check_page(page, shots, "subscriber-recover-dry-run")
    page.get_by_role("button", name=f"Send {count} again").click()
    expect(page.locator("#recover-result")).to_contain_text("due again")

    # a succeeded job: its mirrored output as a thumbnail (loaded under the CSP), re-mirrored on demand
    page.goto(f"/console/jobs/{seeded.job_ids['demo-1']}")
    thumb = page.get_by_role("img", name=re.compile("mirrored copy"))
    expect(thumb).to_be_visible()
    page.wait_for_function("() => document.querySelector('img.thumb').naturalWidth > 0", timeout=WAIT_MS)
    page.get_by_role("button", name="Re-mirror outputs").click()
    expect(page.locator("#flash")).to_contain_text("Re-mirrored: 1 of 1 outputs copied")
    check_page(page, shots, "succeeded-job")

    # a running job whose callback is lost: its page follows it live until the poll finds the outcome
    job = env.submit("apixo", {"input": {"image_urls": [source_image("lost")]}}, "live-1")
    page.goto(f"/console/jobs/{job['id']}")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#job-status")).to_have_text(re.compile("queued|running"))
    expect(page.locator(".live-dot")).to_be_visible()
    check_page(page, shots, "job-running")
    expect(page.locator("#job-status")).to_have_text(
        "succeeded", timeout=int(LOST_JOB_POLL_AFTER * 1000) + WAIT_MS
    )
    expect(
        page.locator("li.entry.inbound", has=page.get_by_role("heading", name="Status poll answer"))
    ).to_have_count(1)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"

    # the overview again, now with a lost callback, dead letters and a replay behind it (the stable shot)
    page.get_by_role("navigation").get_by_role("link", name="Overview", exact=True).click()
    expect(page.locator("#vendor-apixo")).to_be_visible()
    shots.take(page, "overview")


def _narrow_pages(context: BrowserContext, shots: Shots, seeded: Any) -> None:
    """Every page at 390 px wide (a phone): no horizontal overflow, controls named."""
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    for name, path in (
        ("overview", "/console/"),
        ("jobs", f"/console/jobs?reference={FAILING_REFERENCE}"),
        ("job", f"/console/jobs/{seeded.failing_job}"),
        ("succeeded-job", f"/console/jobs/{seeded.job_ids['demo-1']}"),
        ("subscribers", "/console/subscribers"),
        ("subscriber", f"/console/subscribers/{seeded.flaky['id']}"),
        ("dead-letters", "/console/deliveries"),
    ):
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        check_page(page, shots, f"390px-{name}")
    context.close()
