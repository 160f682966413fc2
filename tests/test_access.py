"""Issue 19, finding 7 (sessions and tokens, bad cursors, the start-up summary): signing out of the
console ends the session on the server; failed sign-ins and wrong bearer tokens are limited per
client address (429 with ``Retry-After``); a short ``RELAY_API_TOKEN`` refuses to start and an empty
one is unset (a generated token is printed); a list cursor that decodes to anything unexpected is a
422 on every list; ``serve`` and ``worker`` say when the SSRF guard is off and ``/metrics`` is public.
Real relays on loopback, on SQLite or (``RELAY_TEST_DATABASE``) Postgres."""

from __future__ import annotations

import base64
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from fixtures.harness import free_port
from receiver.cli import cli
from tests.procs import RelayProcess, relay_environ, wait_http_ok
from tests.relay_env import API_TOKEN, TEST_SECRET_KEY, RelayEnv, relay_env

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FAILURE_LIMIT = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    with relay_env(tmp_path_factory.mktemp("access"), auth_failure_limit=FAILURE_LIMIT) as running:
        yield running


def _sign_in(client: httpx.Client, token: str = API_TOKEN, **headers: str) -> httpx.Response:
    form = _CSRF.search(client.get("/console/login").text)
    assert form is not None, "no CSRF token on the sign-in page"
    return client.post("/console/login", data={"csrf_token": form[1], "token": token}, headers=headers)


# -- sessions ----------------------------------------------------------------------------------------
def test_sign_out_revokes_the_session_cookie_on_the_server(env: RelayEnv) -> None:
    """After ``POST /console/logout`` the signed-in cookie, replayed by another client, no longer
    opens a page (303 to the sign-in page) nor performs an action (403)."""
    with httpx.Client(base_url=env.relay.url, timeout=30) as browser:
        assert _sign_in(browser).status_code == 303
        kept = browser.cookies["relay_console"]
        page = browser.get("/console/jobs")
        assert page.status_code == 200
        form = _CSRF.search(page.text)
        assert form is not None
        assert browser.post("/console/logout", data={"csrf_token": form[1]}).status_code == 303
    with httpx.Client(base_url=env.relay.url, timeout=30) as thief:
        thief.cookies.set("relay_console", kept, path="/console")
        answer = thief.get("/console/jobs")
        assert answer.status_code == 303 and "/console/login" in answer.headers["location"]
        assert thief.post("/console/logout", data={"csrf_token": form[1]}).status_code == 403
    with httpx.Client(base_url=env.relay.url, timeout=30) as again:  # signing in anew still works
        assert _sign_in(again).status_code == 303
        assert again.get("/console/jobs").status_code == 200


# -- rate limits -------------------------------------------------------------------------------------
def test_wrong_tokens_and_sign_ins_are_limited_per_client_address(env: RelayEnv) -> None:
    """Past RELAY_AUTH_FAILURE_LIMIT (3) wrong bearer tokens and sign-ins from one address, that
    address gets 429 with ``Retry-After`` on the API (even with the right token) and on the console
    sign-in; another address (behind the trusted loopback proxy, ``X-Forwarded-For``) and vendor
    callbacks are not affected."""
    me = {"X-Forwarded-For": "203.0.113.10"}
    other = {"X-Forwarded-For": "203.0.113.11"}
    base = env.relay.url
    for _ in range(FAILURE_LIMIT - 1):
        assert httpx.get(f"{base}/v1/jobs", headers={**me, "Authorization": "Bearer nope"}).status_code == 401
    with httpx.Client(base_url=base, timeout=30) as browser:
        assert _sign_in(browser, "also-wrong", **me).status_code == 401  # the third failure
        refused = _sign_in(browser, API_TOKEN, **me)
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    right = {**me, "Authorization": f"Bearer {API_TOKEN}"}
    limited = httpx.get(f"{base}/v1/jobs", headers=right)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert (
        httpx.get(f"{base}/v1/jobs", headers={**other, "Authorization": f"Bearer {API_TOKEN}"}).status_code
        == 200
    )
    assert httpx.get(f"{base}/healthz", headers=me).status_code == 200
    missing = httpx.post(f"{base}/v1/callbacks/apixo/not-a-token", headers=me, content=b"{}")
    assert missing.status_code == 404  # callbacks never need the token: not throttled


# -- cursors -----------------------------------------------------------------------------------------
def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSORS = [
    _cursor(f"{2**63}:job_1"),  # one past the largest BIGINT: SQLite raised OverflowError (500)
    _cursor(f"{2**64 + 5}:job_1"),
    _cursor("9" * 40 + ":job_1"),
    _cursor("-1:job_1"),
    _cursor("1.5:job_1"),
    _cursor("1e3:job_1"),
    _cursor("\uff11\uff12:job_1"),  # fullwidth digits
    _cursor("12:"),
    _cursor("12:job\x00_1"),
    _cursor("12:job 1"),
    _cursor('12:{"id": 1}'),
    _cursor("12:" + "j" * 200),
    "not base64 at all!",
    "",
]
LISTS = ["/v1/jobs", "/v1/events", "/v1/inbound", "/v1/subscribers", "/v1/deliveries", "/v1/sources"]


@pytest.mark.parametrize("path", LISTS)
def test_a_cursor_that_decodes_to_anything_unexpected_is_a_422(env: RelayEnv, path: str) -> None:
    """Every list endpoint answers 422 ``validation_failed`` naming ``cursor`` for a cursor holding a
    time of 2^63 or more, a negative or non-integer time, or an id no relay makes (on both engines);
    a cursor the list itself returned still works."""
    for cursor in BAD_CURSORS:
        answer = env.client.get(path, params={"cursor": cursor})
        if cursor == "":
            assert answer.status_code in (200, 422), answer.text
            continue
        assert answer.status_code == 422, f"{cursor!r}: {answer.status_code} {answer.text}"
        assert answer.json()["error"]["message"].startswith("cursor:")
    good = env.client.get(path, params={"cursor": _cursor("1764480000000:job_0abc")})
    assert good.status_code == 200, good.text


def test_console_and_cli_lists_refuse_bad_cursors(env: RelayEnv) -> None:
    """The console's job and delivery lists and ``upscale-relay jobs list --cursor`` refuse the same
    cursors with a clear error instead of failing."""
    cli_env = {"RELAY_SECRET_KEY": TEST_SECRET_KEY}
    with httpx.Client(base_url=env.relay.url, timeout=30) as console:
        assert _sign_in(console).status_code == 303
        for cursor in BAD_CURSORS[:12]:
            for path in ("/console/jobs", "/console/deliveries"):
                page = console.get(path, params={"cursor": cursor})
                assert page.status_code == 422, f"{path} {cursor!r}: {page.status_code}"
            result = CliRunner().invoke(
                cli, ["--database", env.database_url, "jobs", "list", "--cursor", cursor], env=cli_env
            )
            assert result.exit_code == 2 and "--cursor" in result.output, result.output


# -- tokens and the start-up summary -----------------------------------------------------------------
@pytest.mark.parametrize("token", ["a", "x" * 23, " " * 5])
def test_a_short_api_token_refuses_to_start(tmp_path: Path, relay_database: str, token: str) -> None:
    """``RELAY_API_TOKEN`` shorter than 24 characters: ``serve`` exits non-zero at once, naming the
    variable and the minimum, without echoing the token."""
    env = relay_environ(relay_database, api_token=token)
    with RelayProcess.start("serve", ["serve", "--port", str(free_port())], env, tmp_path) as proc:
        status = proc.wait_exit(30)
    assert status != 0
    assert "RELAY_API_TOKEN: must be at least 24 characters" in proc.stderr()


def test_serve_with_an_empty_token_prints_one_and_says_what_is_open(
    tmp_path: Path, relay_database: str
) -> None:
    """``RELAY_API_TOKEN=`` (empty) is unset: ``serve`` prints the one token it generated, which opens
    /v1; with the SSRF guard off and /metrics public, ``serve`` and ``worker`` say so at start."""
    port = free_port()
    env = relay_environ(relay_database, api_token="", allow_private_targets=True, metrics_public=True)
    with RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as proc:
        wait_http_ok(proc, f"http://127.0.0.1:{port}/healthz")
        printed = re.findall(r"this run's admin token is: (\S+)", proc.stderr())
        assert len(printed) == 1, proc.stderr()
        auth = {"Authorization": f"Bearer {printed[0]}"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/jobs", headers=auth).status_code == 200
        said = proc.stderr()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(30) == 0
    assert "warning: RELAY_ALLOW_PRIVATE_TARGETS=true: the SSRF guard is off" in said
    assert "warning: RELAY_METRICS_PUBLIC=true: GET /metrics answers anyone" in said
    with RelayProcess.start("worker", ["worker"], env, tmp_path) as worker:
        wait_for_line(worker, "worker ")
        said = worker.stderr()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait_exit(30) == 0
    assert "the SSRF guard is off" in said and "GET /metrics answers anyone" in said


def test_serve_without_exposure_settings_prints_no_such_warning(tmp_path: Path, relay_database: str) -> None:
    """With the SSRF guard on and /metrics behind the token, no such warning is printed."""
    port = free_port()
    env = relay_environ(relay_database, api_token=API_TOKEN)
    with RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as proc:
        wait_http_ok(proc, f"http://127.0.0.1:{port}/healthz")
        said = proc.stderr()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(30) == 0
    assert "SSRF guard" not in said and "RELAY_METRICS_PUBLIC" not in said and "admin token is" not in said


def wait_for_line(proc: RelayProcess, text: str) -> None:
    """Wait until ``proc`` wrote ``text`` to stderr (failing early if it exits)."""
    from fixtures.harness import wait_until

    def said() -> bool:
        proc.check_alive()
        return text in proc.stderr()

    wait_until(said, timeout=30, message=f"{proc.name} never printed {text!r}")


def test_store_keeps_a_revoked_session_until_its_cookie_expires(store: Any) -> None:
    """On both engines: a revoked session id reads as revoked until ``until``, another id never, and
    a later revocation forgets the ones that ended."""
    store.revoke_session("sid-one", until=2_000, now=1_000)
    assert store.session_revoked("sid-one", now=1_500) is True
    assert store.session_revoked("sid-two", now=1_500) is False
    assert store.session_revoked("sid-one", now=2_001) is False
    store.revoke_session("sid-two", until=9_000, now=3_000)  # sid-one ended at 2,000: pruned
    rows = store.conn.execute("SELECT key FROM relay_meta WHERE key LIKE 'revoked_session:%'").fetchall()
    assert [row[0] for row in rows] == ["revoked_session:sid-two"]


CHEAP_REFUSALS = [  # a request head promising a body that never comes, and the status answered at once
    (
        b"POST /console/login HTTP/1.1\r\nHost: relay\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 1000\r\n\r\n",
        b"403",  # no session cookie from the sign-in page
    ),
    (
        b"POST /console/login HTTP/1.1\r\nHost: relay\r\nCookie: relay_console=forged\r\nContent-Length: 1000\r\n\r\n",
        b"403",
    ),
    (
        b"POST /v1/callbacks/apixo/unknown-token HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n",
        b"404",
    ),
    (b"POST /v1/callbacks/nosuchvendor/x HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n", b"404"),
]


@pytest.mark.parametrize(
    ("head", "status"),
    CHEAP_REFUSALS,
    ids=["login-no-cookie", "login-forged", "callback-unknown", "vendor-unknown"],
)
def test_sign_in_and_callbacks_refuse_before_reading_the_body(
    env: RelayEnv, head: bytes, status: bytes
) -> None:
    """A sign-in without the sign-in page's session cookie and a callback to an unknown URL are
    answered at once, without waiting for a body that never comes (RELAY_BODY_TIMEOUT is 10 s; the
    answer must come within 5)."""
    host, port = env.relay.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 " + status), answer
