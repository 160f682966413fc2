"""The operator console over plain HTTP (httpx against a real relay on loopback, seeded with the demo's
jobs): sign-in, the session cookie, CSRF, the security headers, pages and actions through the
operations layer. The browser suite (``test_console_browser.py``) drives the same relay shape.
"""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch.model import JobState, JobUpdate, Output
from dispatch.store.face import RunnerStore
from dispatch.store.records import RawMessage
from dispatch.store.sql import parse_page_key
from fixtures.harness import wait_until
from receiver.console.search import JobQuery, find_jobs
from receiver.database import open_runner, open_store
from receiver.demo import DEMO_JOBS
from receiver.fakes.config import FakeConfig, source_image
from receiver.fakes.examples import payload
from receiver.fakes.subscriber import Behaviour
from receiver.settings import load_settings
from tests.databases import database_url_for
from tests.procs import open_test_store
from tests.relay_env import API_TOKEN, TEST_SECRET_KEY, RelayEnv, relay_env

ROOT = Path(__file__).resolve().parent.parent
ALL_EVENTS = ["job.queued", "job.running", "job.progress", "job.succeeded", "job.failed"]
FAILING_REFERENCE = f"demo-{len(DEMO_JOBS)}"  # the demo's failing APIXO job is its last
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Seeded:
    """A relay with the demo's six jobs (references ``demo-1`` … ``demo-6``) and two subscribers:
    ``main`` (every event type, answers 200) and ``flaky`` (``job.failed`` only, always 500, so its
    delivery of the failing job ends dead)."""

    env: RelayEnv
    job_ids: dict[str, str]  # reference → job id
    main: dict[str, object]
    flaky: dict[str, object]

    @property
    def failing_job(self) -> str:
        return self.job_ids[FAILING_REFERENCE]


def seed_demo(env: RelayEnv) -> Seeded:
    """Run the demo's scenario on ``env``: subscribers first, then the six demo jobs, each waited
    for until terminal, and the flaky subscriber's delivery waited for until dead."""
    main = env.subscribe("main", event_types=ALL_EVENTS, description="demo subscriber")
    env.sub_log.program(Behaviour.fail(500, times=None), name="flaky")
    flaky = env.subscribe("flaky", event_types=["job.failed"], description="flaky endpoint")
    ids = {}
    for n, spec in enumerate(DEMO_JOBS, 1):
        ids[f"demo-{n}"] = env.submit(spec.vendor, spec.params, f"demo-{n}")["id"]
    for n, spec in enumerate(DEMO_JOBS, 1):
        env.wait_status(ids[f"demo-{n}"], spec.expect, timeout=30)

    def flaky_dead() -> bool:
        rows = env.client.get("/v1/deliveries", params={"status": "dead", "subscriber_id": flaky["id"]})
        return bool(rows.json()["data"])

    wait_until(flaky_dead, timeout=20, message="the flaky subscriber's delivery never died")
    return Seeded(env, ids, main, flaky)


def console_env(tmp_path: Path, **overrides: Any) -> AbstractContextManager[RelayEnv]:
    """:func:`relay_env` with mirroring on (a ``file://`` mirror under ``tmp_path``; the fake vendors
    serve real result images), so succeeded jobs show thumbnails and can be re-mirrored."""
    fake = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True, serve_assets=True)
    mirror = f"file://{tmp_path / 'mirror'}"
    return relay_env(tmp_path, fake, mirror_url=mirror, mirror_backoff=0.05, **overrides)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One seeded relay for this module's tests."""
    with console_env(tmp_path_factory.mktemp("console")) as env:
        yield seed_demo(env)


def csrf_of(html: str) -> str:
    """The CSRF token in a console page's first form."""
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@contextmanager
def sign_in(base_url: str, token: str = API_TOKEN) -> Iterator[httpx.Client]:
    """A client signed in to the console (its cookie jar holds the session)."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        page = client.get("/console/login")
        answer = client.post("/console/login", data={"csrf_token": csrf_of(page.text), "token": token})
        assert answer.status_code == 303, answer.text
        yield client


def test_signed_out_requests_go_to_sign_in(seeded: Seeded) -> None:
    """Without a session, pages redirect to the sign-in page, htmx/event-stream GETs get 401 and
    actions get 403, and nothing is done."""
    with httpx.Client(base_url=seeded.env.relay.url, timeout=30) as client:
        page = client.get("/console/jobs?vendor=apixo")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/login?next=%2Fconsole%2Fjobs%3Fvendor%3Dapixo"
        live = client.get(f"/console/jobs/{seeded.failing_job}/live", headers={"accept": "text/event-stream"})
        assert live.status_code == 401
        event = seeded.env.job(seeded.failing_job)["events"][-1]["id"]
        assert client.post(f"/console/events/{event}/replay", data={"csrf_token": "x"}).status_code == 403
        assert client.get("/console").status_code in (307, 308)  # to /console/


def test_wrong_token_is_refused_and_sets_no_session(seeded: Seeded) -> None:
    """A wrong admin token answers 401 with the form again and leaves the session anonymous."""
    with httpx.Client(base_url=seeded.env.relay.url, timeout=30) as client:
        page = client.get("/console/login")
        assert page.status_code == 200
        answer = client.post("/console/login", data={"csrf_token": csrf_of(page.text), "token": "nope"})
        assert answer.status_code == 401
        assert "not the relay&#39;s admin token" in answer.text
        assert "nope" not in answer.text
        assert client.get("/console/").status_code == 303  # still signed out


def test_sign_in_needs_the_login_forms_csrf_token(seeded: Seeded) -> None:
    """The sign-in form itself is CSRF-protected: without the token (or with another session's) the
    right admin token is refused with 403."""
    with httpx.Client(base_url=seeded.env.relay.url, timeout=30) as client:
        client.get("/console/login")
        assert client.post("/console/login", data={"token": API_TOKEN}).status_code == 403
        other = httpx.get(f"{seeded.env.relay.url}/console/login")
        answer = client.post("/console/login", data={"token": API_TOKEN, "csrf_token": csrf_of(other.text)})
        assert answer.status_code == 403
    with httpx.Client(base_url=seeded.env.relay.url, timeout=30) as fresh:  # no cookie at all
        assert fresh.post("/console/login", data={"token": API_TOKEN, "csrf_token": "x"}).status_code == 403


def test_session_cookie_is_httponly_strict_and_signed(seeded: Seeded) -> None:
    """The session cookie is HttpOnly, SameSite=Strict, scoped to /console; a tampered one is no
    session."""
    with httpx.Client(base_url=seeded.env.relay.url, timeout=30) as client:
        page = client.get("/console/login")
        answer = client.post("/console/login", data={"csrf_token": csrf_of(page.text), "token": API_TOKEN})
        cookie = answer.headers["set-cookie"].lower()
        for part in ("httponly", "samesite=strict", "path=/console", "relay_console="):
            assert part in cookie
        value = client.cookies["relay_console"]
        assert client.get("/console/").status_code == 200
        forged = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
        client.cookies.set("relay_console", forged, path="/console")
        assert client.get("/console/").status_code == 303


def test_every_console_response_carries_a_strict_csp(seeded: Seeded) -> None:
    """Pages, fragments, static files and refusals all carry the CSP (no inline script or style) and
    pages are never cached (a secret is shown once)."""
    with sign_in(seeded.env.relay.url) as client:
        for path in ("/console/", "/console/login", "/console/static/htmx.min.js", "/console/jobs"):
            answer = client.get(path)
            csp = answer.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert answer.headers["x-frame-options"] == "DENY"
        assert client.get("/console/jobs").headers["cache-control"] == "no-store"
        page = client.get(f"/console/jobs/{seeded.failing_job}").text
        assert "<script>" not in page and " onclick=" not in page and " style=" not in page


def test_missing_or_wrong_csrf_token_refuses_an_action(seeded: Seeded) -> None:
    """A signed-in POST without the session's CSRF token (or with a wrong one) is 403 and replays
    nothing; with it the replay is done."""
    event = seeded.env.job(seeded.failing_job)["events"][-1]["id"]
    before = seeded.env.client.get("/v1/deliveries", params={"event_id": event}).json()["data"]
    with sign_in(seeded.env.relay.url) as client:
        assert client.post(f"/console/events/{event}/replay", data={}).status_code == 403
        wrong = {"csrf_token": "A" * 43}
        assert client.post(f"/console/events/{event}/replay", data=wrong).status_code == 403
        assert (
            client.post(f"/console/events/{event}/replay", headers={"x-csrf-token": "nope"}).status_code
            == 403
        )
        after = seeded.env.client.get("/v1/deliveries", params={"event_id": event}).json()["data"]
        assert len(after) == len(before)
        token = csrf_of(client.get(f"/console/jobs/{seeded.failing_job}").text)
        done = client.post(
            f"/console/events/{event}/replay",
            data={"csrf_token": token, "subscriber_id": str(seeded.main["id"])},
            headers={"hx-request": "true"},
        )
        assert done.status_code == 200 and "Replay queued: 1 new deliveries" in done.text
        after = seeded.env.client.get("/v1/deliveries", params={"event_id": event}).json()["data"]
        assert len(after) == len(before) + 1


def test_jobs_search_finds_by_reference_vendor_job_id_and_id(seeded: Seeded) -> None:
    """The jobs page finds the failing job by reference, by vendor job id and by job id, and its
    filters narrow the list."""
    job = seeded.env.job(seeded.failing_job)
    with sign_in(seeded.env.relay.url) as client:
        for params in (
            {"reference": FAILING_REFERENCE},
            {"q": FAILING_REFERENCE},
            {"q": job["vendor_job_id"]},
            {"q": job["id"]},
            {"vendor": "apixo", "status": "failed"},
            {"vendor": "apixo", "via": "callback", "status": "failed"},
        ):
            page = client.get("/console/jobs", params=params).text
            assert job["id"] in page, params
            assert page.count('class="badge ') == 1, params
        everything = client.get("/console/jobs").text
        assert everything.count('class="badge ') == len(DEMO_JOBS)
        assert (
            client.get("/console/jobs", params={"until": "2000-01-01T00:00"}).text.count('class="badge ') == 0
        )
        assert client.get("/console/jobs", params={"status": "bogus"}).status_code == 422
        assert client.get("/console/jobs", params={"via": "poll"}).text.count('class="badge ') == 0


def test_job_page_tells_the_failing_jobs_story(seeded: Seeded) -> None:
    """The failing APIXO job's page shows its submit, the vendor's acceptance, the callback body, the
    failed state change with its error, and each delivery with its attempts."""
    job = seeded.env.job(seeded.failing_job)
    with sign_in(seeded.env.relay.url) as client:
        page = client.get(f"/console/jobs/{seeded.failing_job}").text
    assert job["error"]["code"] in page
    for title in ("Job created", "Vendor accepted the submit", "Vendor callback", "State change → failed"):
        assert title in page, title
    assert "flaky endpoint" in page
    assert 'data-status="dead"' in page and 'data-status="succeeded"' in page
    assert "<td>500</td>" in page


def test_reprocess_dry_run_then_reprocess(seeded: Seeded) -> None:
    """The reprocess preview stores nothing and says the failed job would not change; the confirmed
    reprocess stores a new ``reprocess`` message."""
    inbound = seeded.env.client.get("/v1/inbound", params={"job_id": seeded.failing_job}).json()["data"]
    callback = next(m for m in inbound if m["kind"] == "callback")
    with sign_in(seeded.env.relay.url) as client:
        preview = client.get(f"/console/inbound/{callback['id']}/preview", headers={"hx-request": "true"})
        assert preview.status_code == 200
        assert "Dry run" in preview.text and "would not change" in preview.text
        again = seeded.env.client.get("/v1/inbound", params={"job_id": seeded.failing_job}).json()["data"]
        assert len(again) == len(inbound)
        done = client.post(
            f"/console/inbound/{callback['id']}/reprocess",
            data={"csrf_token": csrf_of(preview.text)},
            headers={"hx-request": "true"},
        )
        assert done.status_code == 200 and "duplicate" in done.text
    kinds = [
        m["kind"]
        for m in seeded.env.client.get("/v1/inbound", params={"job_id": seeded.failing_job}).json()["data"]
    ]
    assert kinds.count("reprocess") == 1


def test_subscriber_secret_is_shown_only_at_creation(seeded: Seeded) -> None:
    """Creating a subscriber shows its whsec_ secret once; no later page contains it; rotating shows
    the new one once."""
    with sign_in(seeded.env.relay.url) as client:
        token = csrf_of(client.get("/console/subscribers").text)
        created = client.post(
            "/console/subscribers",
            data={
                "csrf_token": token,
                "url": f"{seeded.env.subscriber.url}/hooks/console",
                "description": "made in the console",
                "event_types": ["job.failed", "job.succeeded"],
            },
        )
        assert created.status_code == 201
        secret = re.search(r'value="(whsec_[^"]+)"', created.text)
        assert secret
        sub_id = re.search(r"(sub_[A-Za-z0-9]+)", created.text)
        assert sub_id
        for path in ("/console/subscribers", f"/console/subscribers/{sub_id.group(1)}"):
            assert secret.group(1) not in client.get(path).text
        rotated = client.post(
            f"/console/subscribers/{sub_id.group(1)}/rotate-secret", data={"csrf_token": token}
        )
        new = re.search(r'value="(whsec_[^"]+)"', rotated.text)
        assert new and new.group(1) != secret.group(1)


def test_dead_letters_page_lists_the_flaky_delivery_with_its_error(seeded: Seeded) -> None:
    """The dead-letters page lists the flaky subscriber's dead delivery with its last error and job;
    retrying one makes it due again."""
    sub_id = str(seeded.flaky["id"])
    with sign_in(seeded.env.relay.url) as client:
        page = client.get("/console/deliveries", params={"subscriber_id": sub_id}).text
        rows = seeded.env.client.get(
            "/v1/deliveries", params={"status": "dead", "subscriber_id": sub_id}
        ).json()
        assert rows["data"][0]["id"] in page and "HTTP 500" in page
        answer = client.post(
            f"/console/deliveries/{rows['data'][0]['id']}/retry",
            data={"csrf_token": csrf_of(page)},
            headers={"hx-request": "true"},
        )
        assert answer.status_code == 200 and "is due again" in answer.text

    def dead_again() -> bool:  # the flaky endpoint fails the retry too
        again = seeded.env.client.get(f"/v1/deliveries/{rows['data'][0]['id']}").json()
        return bool(again["status"] == "dead")

    wait_until(dead_again, timeout=20, message="the retried delivery never ended dead again")


def test_recover_counts_first_then_sends_again(seeded: Seeded) -> None:
    """Recover with a dry run answers the count of the flaky subscriber's dead deliveries and changes
    nothing; confirming makes them due again."""
    sub_id = str(seeded.flaky["id"])
    dead = seeded.env.client.get("/v1/deliveries", params={"status": "dead", "subscriber_id": sub_id}).json()
    with sign_in(seeded.env.relay.url) as client:
        token = csrf_of(client.get(f"/console/subscribers/{sub_id}").text)
        form = {"csrf_token": token, "since": "2000-01-01T00:00", "dry_run": "true"}
        counted = client.post(
            f"/console/subscribers/{sub_id}/recover", data=form, headers={"hx-request": "true"}
        )
        count = int(re.search(r'data-count="(\d+)"', counted.text).group(1))  # type: ignore[union-attr]
        assert count == len(dead["data"]) > 0
        still = seeded.env.client.get("/v1/deliveries", params={"status": "dead", "subscriber_id": sub_id})
        assert len(still.json()["data"]) == count
        form.pop("dry_run")
        sent = client.post(
            f"/console/subscribers/{sub_id}/recover", data=form, headers={"hx-request": "true"}
        )
        assert f'data-count="{count}"' in sent.text and "due again" in sent.text


def test_overview_figures_link_to_their_lists(seeded: Seeded) -> None:
    """The overview shows APIXO's failed job of the last day as a link to that filtered list, and the
    backlog figures link to the deliveries and subscribers behind them."""
    with sign_in(seeded.env.relay.url) as client:
        page = client.get("/console/").text
        links = re.findall(r'href="(/console/jobs\?[^"]*vendor=apixo[^"]*status=failed[^"]*)">(\d+)<', page)
        assert any(int(n) >= 1 for _, n in links), links
        href = next(h for h, n in links if int(n) >= 1).replace("&amp;", "&")
        assert seeded.failing_job in client.get(href).text
        for figure in ("deliveries_due", "dead_letters", "disabled_subscribers"):
            assert f'data-figure="{figure}"' in page
        assert "<svg" in page and "jobs per hour, last 24 h" in page


def test_live_stream_sends_the_story_when_it_changes(seeded: Seeded) -> None:
    """The job's event stream sends the live region at once for an outdated version, as SSE
    ``event: story`` lines."""
    with sign_in(seeded.env.relay.url) as client:
        with client.stream("GET", f"/console/jobs/{seeded.failing_job}/live", params={"v": "old"}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            seen = ""
            for chunk in stream.iter_text():
                seen += chunk
                if "event: story" in seen and "\n\n" in seen.split("event: story", 1)[1]:
                    break
        assert "data: " in seen and "Timeline" in seen


def test_static_files_are_shipped_with_their_licence(seeded: Seeded) -> None:
    """htmx and its SSE extension are served from the package with their licence headers."""
    with httpx.Client(base_url=seeded.env.relay.url, timeout=30) as client:
        htmx = client.get("/console/static/htmx.min.js")
        assert htmx.status_code == 200 and htmx.text.startswith("/*! htmx 2.0.11")
        sse = client.get("/console/static/htmx-ext-sse.js")
        assert sse.status_code == 200 and "htmx-ext-sse 2.2.4" in sse.text
        assert client.get("/console/static/console.css").status_code == 200


def test_templates_and_static_files_are_package_data() -> None:
    """Every template and static file of the console is declared package data, so a wheel ships it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["receiver.console"]
    package = ROOT / "receiver" / "console"
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    files = {p for folder in ("templates", "static") for p in (package / folder).rglob("*") if p.is_file()}
    assert files and files == shipped


def test_job_search_pages_through_every_match_once(tmp_path: Path) -> None:
    """Cursor pagination of the jobs query, plain and while matching a reference or a search term,
    returns every matching job once, newest first, whatever the page size."""
    with database_url_for(tmp_path) as url:
        settings = load_settings(database_url=url, secret_key=TEST_SECRET_KEY)
        runner = open_runner(settings)
        runner.start()
        try:
            asyncio.run(_page_through(RunnerStore(runner)))
        finally:
            runner.stop()


async def _page_through(store: RunnerStore) -> None:
    made = [
        await store.create_job("apixo", {"input": {}}, reference=f"ref-{n % 3}", token_hash=None)
        for n in range(11)
    ]
    newest_first = [j.id for j in sorted(made, key=lambda j: (j.created_at, j.id), reverse=True)]

    async def collect(query: JobQuery, limit: int) -> list[str]:
        seen: list[str] = []
        while True:
            page = await find_jobs(store, query, limit=limit)
            seen.extend(j.id for j in page.jobs)
            if page.cursor is None:
                return seen
            query = replace(query, after=parse_page_key(page.cursor))

    for limit in (1, 2, 3, 50):
        assert await collect(JobQuery(), limit) == newest_first
        ref_1 = [j for j in newest_first if j in {m.id for m in made if m.reference == "ref-1"}]
        assert await collect(JobQuery(reference="ref-1"), limit) == ref_1
        assert await collect(JobQuery(q="REF-1"), limit) == ref_1
    assert await collect(JobQuery(q=made[4].id), 2) == [made[4].id]


def test_succeeded_job_shows_mirrored_thumbnails_and_remirrors(seeded: Seeded) -> None:
    """A succeeded job's page shows its mirrored outputs as thumbnails (through a redirect to a freshly
    signed URL of the relay's copy, same origin, so the CSP lets it load) and re-mirrors them through
    the operations layer; the failed job's button is disabled."""
    ltx = seeded.job_ids["demo-1"]
    with sign_in(seeded.env.relay.url) as client:
        page = client.get(f"/console/jobs/{ltx}").text
        thumb = re.search(r'<img class="thumb" src="([^"]+)"', page)
        assert thumb, "no thumbnail"
        assert thumb.group(1) == f"/console/outputs/{ltx}/0"
        redirect = client.get(thumb.group(1))
        assert redirect.status_code == 302
        assert redirect.headers["location"].startswith(f"{seeded.env.relay.url}/v1/outputs/{ltx}/0?expires=")
        image = client.get(redirect.headers["location"])
        assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
        assert client.get(f"/console/outputs/{seeded.failing_job}/0").status_code == 404
        done = client.post(
            f"/console/jobs/{ltx}/remirror",
            data={"csrf_token": csrf_of(page)},
            headers={"hx-request": "true"},
        )
        assert done.status_code == 200 and "Re-mirrored: 1 of 1 outputs copied" in done.text
        failed = client.get(f"/console/jobs/{seeded.failing_job}").text
        assert re.search(r"<button [^>]*disabled title=\"Only a succeeded job", failed)


def test_remirror_button_is_disabled_when_mirroring_is_off(tmp_path: Path) -> None:
    """Without ``RELAY_MIRROR_URL`` the job page's re-mirror button is disabled and says mirroring is
    off, and a forced POST is refused with the reason."""
    with relay_env(tmp_path) as env:
        job = env.submit("artnex", {"image": source_image(), "scale": 2}, "no-mirror")
        with sign_in(env.relay.url) as client:
            page = client.get(f"/console/jobs/{job['id']}").text
            assert re.search(r'<button [^>]*disabled title="Mirroring is off on this relay', page)
            refused = client.post(
                f"/console/jobs/{job['id']}/remirror",
                data={"csrf_token": csrf_of(page)},
                headers={"hx-request": "true"},
            )
            assert refused.status_code == 503 and "RELAY_MIRROR_URL" in refused.text


def test_subscriber_edit_disable_and_enable(seeded: Seeded) -> None:
    """Editing a subscriber's URL, description and event types, then disabling and enabling it, goes
    through the operations layer (the API sees each change)."""
    created = seeded.env.subscribe("editable", event_types=["job.failed"])
    sub_id = str(created["id"])
    with sign_in(seeded.env.relay.url) as client:
        token = csrf_of(client.get(f"/console/subscribers/{sub_id}").text)
        form = {
            "csrf_token": token,
            "url": f"{seeded.env.subscriber.url}/hooks/edited",
            "description": "edited in the console",
            "event_types": ["job.succeeded", "job.failed"],
        }
        assert client.post(f"/console/subscribers/{sub_id}", data=form).status_code == 303
        sub = seeded.env.client.get(f"/v1/subscribers/{sub_id}").json()
        assert sub["url"].endswith("/hooks/edited") and sub["description"] == "edited in the console"
        assert sub["event_types"] == ["job.succeeded", "job.failed"]
        off = {"csrf_token": token, "enabled": "false"}
        assert client.post(f"/console/subscribers/{sub_id}/enabled", data=off).status_code == 303
        assert seeded.env.client.get(f"/v1/subscribers/{sub_id}").json()["enabled"] is False
        assert sub_id in client.get("/console/subscribers", params={"enabled": "false"}).text
        on = {"csrf_token": token, "enabled": "true"}
        assert client.post(f"/console/subscribers/{sub_id}/enabled", data=on).status_code == 303
        assert seeded.env.client.get(f"/v1/subscribers/{sub_id}").json()["enabled"] is True
        bad = {**form, "url": "ftp://nowhere"}
        refused = client.post(f"/console/subscribers/{sub_id}", data=bad)
        assert refused.status_code == 422 and "&#39;ftp&#39;" in refused.text


def test_reprocess_preview_shows_what_a_stored_invalid_callback_would_change(seeded: Seeded) -> None:
    """A callback once stored ``invalid`` (say, before an adapter fix) that the current adapter reads
    as a failure: the dry run lists the status and error it would set, nothing changes until the
    operator confirms, then the job fails with that error."""
    store = open_test_store(seeded.env.database_url)
    try:
        job = store.create_job("apixo", {"input": {}}, reference="stored-invalid", token_hash=None)
        raw = RawMessage({"content-type": "application/json"}, payload("apixo", "callback_failed"))
        message = store.record_message(
            job.id, "callback", raw, None, verdict="invalid", error="old adapter bug"
        )
    finally:
        store.close()
    with sign_in(seeded.env.relay.url) as client:
        preview = client.get(f"/console/inbound/{message.inbound_id}/preview", headers={"hx-request": "true"})
        assert preview.status_code == 200
        text = re.sub(r"\s+", " ", preview.text)
        assert "would be <span" in text and "verdict-applied" in text
        assert '<th scope="row">status</th><td><del>queued</del></td><td><ins>failed</ins></td>' in text
        assert "CONTENT_VIOLATION" in text
        assert seeded.env.job(job.id)["status"] == "queued"
        done = client.post(
            f"/console/inbound/{message.inbound_id}/reprocess",
            data={"csrf_token": csrf_of(preview.text)},
            headers={"hx-request": "true"},
        )
        assert done.status_code == 200 and "applied" in done.text
    after = seeded.env.job(job.id)
    assert after["status"] == "failed" and after["error"]["code"] == "CONTENT_VIOLATION"


def test_templates_have_no_inline_script_style_or_handler() -> None:
    """No template carries an inline ``<script>``, ``<style>``, ``style=`` or ``on…=`` handler: the CSP
    would block them, so the pages must not need them."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", re.IGNORECASE)
    offending = [
        f"{path.name}: {match.group(0)}"
        for path in sorted((ROOT / "receiver" / "console" / "templates").glob("*.html"))
        for match in inline.finditer(path.read_text())
    ]
    assert offending == []


def test_anomalies_show_and_only_http_urls_are_outputs_or_links(tmp_path: Path) -> None:
    """A vendor message's unusable fields are listed on the job (API and console page) and flagged; a
    ``javascript:`` result URL is left out of the outputs, never delivered to a subscriber, and an output
    that is not http(s) already stored (older data) is shown as text, never as a link."""
    with relay_env(tmp_path) as env:
        env.subscribe("main", event_types=["job.succeeded"])
        source = env.ok(env.client.post("/v1/sources", json={"vendor": "apixo"}), 201)
        urls = ["javascript:alert(1)", "https://file.apixo.ai/ok.jpg"]
        data = {
            "taskId": "task_js1",
            "state": "success",
            "costTime": "41s",
            "resultJson": json.dumps({"resultUrls": urls}),
        }
        answer = httpx.post(source["callback_url"], json={"code": 200, "message": "success", "data": data})
        assert answer.status_code == 200, answer.text
        (listed,) = [
            j for j in env.ok(env.client.get("/v1/jobs"), 200)["data"] if j["source_id"] == source["id"]
        ]
        job = env.job(listed["id"])
        assert job["status"] == "succeeded" and [o["url"] for o in job["outputs"]] == [urls[1]]
        assert "payload_anomaly" in job["flags"]
        assert job["anomalies"] == [
            {"path": "data.costTime", "seen": '"41s"'},
            {"path": "data.resultJson.resultUrls[0]", "seen": '"javascript:alert(1)"'},
        ]
        (delivered,) = env.sub_log.wait_for(1, "main")
        assert b"javascript:" not in delivered.body and urls[1] in delivered.body.decode()
        settings = load_settings(database_url=env.database_url, secret_key=TEST_SECRET_KEY)
        store = open_store(settings)
        try:  # an output stored before outputs were checked
            old = store.create_job("apixo", {}, reference="old", token_hash=None)
            bad = (Output("javascript:alert(2)"), Output("https://file.apixo.ai/fine.jpg"))
            store.record_message(
                old.id, "callback", RawMessage({}, b"{}"), JobUpdate(JobState.SUCCEEDED, outputs=bad)
            )
        finally:
            store.close()
        with sign_in(env.relay.url) as client:
            page = client.get(f"/console/jobs/{job['id']}").text
            stored = client.get(f"/console/jobs/{old.id}").text
        assert "Vendor fields left out (2)" in page and "data.resultJson.resultUrls[0]" in page
        assert "payload_anomaly" in page and 'href="javascript:' not in page
        assert "javascript:alert(2)" in stored and 'href="javascript:' not in stored
        assert 'href="https://file.apixo.ai/fine.jpg"' in stored
