"""Issue 19, findings 3 and 5: text from vendors is clean at every depth. Lone surrogates and NUL,
wherever a vendor puts them (a nested JSON string such as APIXO's ``resultJson``, an error code, an
error answer's message), never make a callback, a poll or a submit answer 5xx, and never break a read
of the job afterwards: the API, the console, ``upscale-relay jobs show`` and the analytics (on
Postgres, a NUL in a failure code once broke ``/v1/stats``, ``/console/`` and ``upscale-relay stats``
for good). Real relay, real fake vendors or a scripted vendor server, real subscriber, on loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatch.model import event_id
from fixtures import payload, payload_names
from fixtures.harness import serve_in_thread, wait_until
from receiver.cli import cli
from receiver.fakes import FakeConfig, apiframe_signature, dreamina_source_job, ltx_source_job, source_image
from tests.relay_env import API_TOKEN, TEST_SECRET_KEY, RelayEnv, relay_env

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FAR_FUTURE_MS = 4_102_444_800_000  # 2100-01-01: the fake serves its asset until then


@contextmanager
def console_client(env: RelayEnv) -> Iterator[httpx.Client]:
    """An ``httpx.Client`` signed in to ``env``'s console."""
    with httpx.Client(base_url=env.relay.url, timeout=30) as client:
        form = _CSRF.search(client.get("/console/login").text)
        assert form is not None, "no CSRF token on the sign-in page"
        answer = client.post("/console/login", data={"csrf_token": form[1], "token": API_TOKEN})
        assert answer.status_code == 303, answer.text
        yield client


def cli_run(env: RelayEnv, *args: str) -> Result:
    """``upscale-relay --database <env's> <args>`` through click's runner."""
    cli_env = {"RELAY_SECRET_KEY": TEST_SECRET_KEY, "RELAY_ALLOW_PRIVATE_TARGETS": "true"}
    return CliRunner().invoke(cli, ["--database", env.database_url, *args], env=cli_env)


def read_everything(env: RelayEnv, console: httpx.Client, job_id: str) -> dict[str, Any]:
    """Every read of ``job_id`` and of the relay's analytics answers 200 (the API, the console, the
    CLI); returns the job as ``GET /v1/jobs/{id}`` shows it."""
    job: dict[str, Any] = env.ok(env.client.get(f"/v1/jobs/{job_id}"), 200)
    for path in ("/v1/jobs?limit=500", f"/v1/events?job_id={job_id}", f"/v1/inbound?job_id={job_id}"):
        env.ok(env.client.get(path), 200)
    for event in job["events"]:
        env.ok(env.client.get(f"/v1/events/{event['id']}"), 200)
    env.ok(env.client.get("/v1/stats"), 200)
    for path in (f"/console/jobs/{job_id}", "/console/", "/console/jobs"):
        page = console.get(path)
        assert page.status_code == 200, f"{path}: {page.status_code} {page.text[-500:]}"
    for args in (("jobs", "show", job_id), ("stats", "--json"), ("stats",)):
        result = cli_run(env, *args)
        assert result.exit_code == 0, f"{args}: {result.output[-1000:]} {result.exception!r}"
    return job


def apixo_callback(task_id: str, result_json: str) -> bytes:
    """An APIXO success callback [seed:003] whose ``resultJson`` string is ``result_json``."""
    data: dict[str, Any] = json.loads(payload("apixo", "callback_success"))
    data["data"].update(taskId=task_id, resultJson=result_json)
    return json.dumps(data).encode()


def lost_apixo_job(env: RelayEnv) -> tuple[dict[str, Any], str]:
    """A submitted APIXO job the fake never calls back, and its callback URL."""
    job = env.submit("apixo", {"input": {"image_urls": [source_image("lost")]}})
    return job, env.callback_url("image-upscaler")


# -- finding 3: a lone surrogate inside resultJson ---------------------------------------------------
@pytest.mark.parametrize("mirror", [False, True], ids=["no-mirror", "mirror"])
def test_lone_surrogate_inside_apixo_result_json_is_replaced_and_delivered(
    tmp_path: Path, mirror: bool
) -> None:
    """``resultJson`` holding ``{"resultUrls": ["…/up\\ud800.png"], "note": "\\u0000\\udfff"}``
    (escapes inside the nested JSON text): the callback is 200 ``applied``, the output URL carries
    U+FFFD in the surrogate's place, every read of the job works, and ``job.succeeded`` reaches the
    subscriber (after the copy, with mirroring on)."""
    fake = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True, serve_assets=True)
    overrides: dict[str, Any] = {}
    if mirror:
        overrides = {"mirror_url": f"file://{tmp_path / 'mirror'}", "mirror_backoff": 0.05}
    with relay_env(tmp_path, fake, **overrides) as env:
        env.subscribe()
        job, url = lost_apixo_job(env)
        asset = f"{env.vendors.url}/_fake/assets/{FAR_FUTURE_MS}/file.apixo.ai/t1/up"
        # JSON text with the escapes: a lone surrogate in the URL, NUL and another one in a field beside
        # it (a URL with a control character is no URL: it is left out as an anomaly, issue 20)
        inner = '{"resultUrls": ["' + asset + '\\ud800.png"], "note": "\\u0000\\udfff"}'
        body = apixo_callback(job["vendor_job_id"], inner)
        assert b"\\\\ud800" in body  # the escape sits inside the nested JSON string, not the outer one
        answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["verdict"] == "applied"
        eid = event_id(job["id"], "job.succeeded")
        wait_until(
            lambda: eid in env.sub_log.by_event_id(), timeout=15, message="job.succeeded not delivered"
        )
        delivered = env.sub_log.by_event_id()[eid][0]
        assert delivered.verified is True and delivered.contract_error is None, delivered.contract_error
        output = delivered.json["data"]["outputs"][0]
        assert output["url"] == asset + "\ufffd.png"
        if mirror:
            assert output["mirror"] is not None, output
        with console_client(env) as console:
            shown = read_everything(env, console, job["id"])
        assert shown["status"] == "succeeded" and shown["outputs"][0]["url"] == output["url"]


# -- finding 5: a NUL in a failure code --------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "message"),
    [("Bad\x00Code", "failed"), ("Bad\x00Code\udfff", "m\x00\ud800")],
    ids=["nul", "nul-and-surrogates"],
)
def test_nul_in_a_failure_code_leaves_stats_and_the_console_working(
    tmp_path: Path, code: str, message: str
) -> None:
    """An APIXO ``failCode`` holding NUL (and lone surrogates, in ``failMsg`` too): the callback is
    200, the job fails with U+FFFD in their place, and ``/v1/stats``, ``/console/`` and
    ``upscale-relay stats`` keep answering (on Postgres they failed with ``\u0000 cannot be
    converted to text``, for good)."""
    with relay_env(tmp_path) as env:
        job, url = lost_apixo_job(env)
        data: dict[str, Any] = json.loads(payload("apixo", "callback_failed"))
        data["data"].update(taskId=job["vendor_job_id"], failCode=code, failMsg=message)
        body = json.dumps(data).encode()
        answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200 and answer.json()["verdict"] == "applied", answer.text
        with console_client(env) as console:
            shown = read_everything(env, console, job["id"])
        clean = re.sub("[\x00\ud800-\udfff]", "\ufffd", code)
        assert shown["error"] == {"code": clean, "message": re.sub("[\x00\ud800-\udfff]", "\ufffd", message)}
        stats = env.ok(env.client.get("/v1/stats"), 200)
        (apixo,) = [v for v in stats["vendors"] if v["vendor"] == "apixo"]
        assert apixo["failure_codes"] == [{"code": clean, "count": 1}]


# -- the property: arbitrary text in every adapter's callback, poll and submit answer -----------------
VENDORS: dict[str, dict[str, Any]] = {
    "apixo": {"input": {"image_urls": [source_image("lost")]}},
    "apiframe": {"model": "topaz-image-upscale", "topazUpscaleParams": {"image": source_image("lost")}},
    "ltxstudio": {"jobId": ltx_source_job("lost")},
    "dreamina": {"jobid": dreamina_source_job("lost")},
    "artnex": {"image": source_image("lost")},
}
BASE_URLS = {"apixo": "apixo", "apiframe": "apiframe", "useapi": "useapi", "artnex": "artnex"}
ERROR_STATUS = {"error_invalid_api_key": 401, "error_invalid_scale": 400, "error_rate_limit": 400}
CALLBACK_URL_KEYS = ("replyUrl", "webhookUrl", "callback_url")


def _templates(vendor: str, *prefixes: str) -> list[tuple[int, str]]:
    """``(HTTP status, payload name)`` of the vendor's documented answers whose names start with one
    of ``prefixes`` (``error_402`` → 402)."""
    found = []
    for name in payload_names(vendor):
        if name.startswith(prefixes):
            digits = name.removeprefix("error_")
            status = int(digits) if digits.isdigit() else ERROR_STATUS.get(name, 200)
            found.append((status, name))
    return sorted(found)


@dataclass
class Script:
    """What the scripted vendor answers next: per vendor, ``(status, body)`` for a submit and for a
    status request, and the callback URLs the relay sent it."""

    submit: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    status: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    callback_urls: list[str] = field(default_factory=list)


def _vendor_of(path: str) -> str:
    head, _, rest = path.strip("/").partition("/")
    if head == "useapi":
        return "dreamina" if "/dreamina/" in f"/{rest}" else "ltxstudio"
    return head


def scripted_vendor(script: Script) -> Starlette:
    """One server answering every vendor's submit (POST) and status (GET) requests from ``script``,
    under ``/<apixo|apiframe|useapi|artnex>/…`` (the relay's base URLs point there)."""

    async def answer(request: Request) -> Response:
        vendor = _vendor_of(request.url.path)
        if request.method == "POST":
            body = json.loads(await request.body() or b"{}")
            for key in CALLBACK_URL_KEYS:
                if isinstance(body, dict) and isinstance(body.get(key), str):
                    script.callback_urls.append(body[key])
            status, content = script.submit[vendor]
        else:
            status, content = script.status.get(vendor, (404, b'{"error": "not found"}'))
        return Response(content, status_code=status, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths of the string leaves of a JSON value; a string that holds a JSON object or array (APIXO's
    ``resultJson``) is walked into too, its inner paths marked with ``"<json>"``."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _leaves(inner, (*path, index))
    elif isinstance(value, str):
        yield path
        if value.startswith(("{", "[")):
            try:
                nested = json.loads(value)
            except ValueError:
                return
            for inner in _leaves(nested):
                yield (*path, "<json>", *inner)


def _replace(value: Any, path: tuple[Any, ...], text: str, *, append: bool) -> Any:
    if not path:
        return value + text if append else text
    head, *rest = path
    if head == "<json>":
        return json.dumps(_replace(json.loads(value), tuple(rest), text, append=append))
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[head] = _replace(value[head], tuple(rest), text, append=append)
    return copy


def inject(document: bytes, choice: int, text: str, *, append: bool) -> bytes:
    """``document`` (JSON) with its ``choice``-th string leaf (modulo their number, nested JSON strings
    included) replaced by ``text``, or with ``text`` appended to it; JSON-encoded with ASCII escapes,
    so a lone surrogate travels as ``\\udXXX`` and NUL as ``\\u0000``."""
    data = json.loads(document)
    paths = list(_leaves(data))
    if paths:
        data = _replace(data, paths[choice % len(paths)], text, append=append)
    return json.dumps(data).encode()


@dataclass
class Scripted:
    env: RelayEnv
    script: Script
    console: httpx.Client


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scripted]:
    script = Script()
    with serve_in_thread(scripted_vendor(script)) as vendor:
        bases: dict[str, Any] = {
            f"{name}_base_url": f"{vendor.url}/{path}" for name, path in BASE_URLS.items()
        }
        polled = {vendor: 0.05 for vendor in STATUS_ID}  # LTX: no status answer documented
        with (
            relay_env(
                tmp_path_factory.mktemp("vendor_text"),
                max_inbound_per_job=1000,
                poll_after=polled,
                poll_every=polled,
                submit_backoff=600.0,
                **bases,
            ) as env,
            console_client(env) as console,
        ):
            env.subscribe()
            yield Scripted(env, script, console)


HOSTILE_CHARS = st.characters(exclude_categories=())  # surrogates (Cs) and NUL included
HOSTILE_TEXT = st.one_of(
    st.text(HOSTILE_CHARS, max_size=40),
    st.sampled_from(["\ud800", "\udfff", "\x00", "a\x00b\ud83d", "\ud800\udc00", "\u202e\x1b[31m", "é\x7f"]),
    st.integers(1_000, 20_000).map(lambda n: ("\ud800\x00é" * n)[:n]),  # huge-ish
)
#: Where each vendor's documented answers name the vendor job: submit answers, status answers, callbacks.
SUBMIT_ID = {
    "apixo": ("data", "taskId"),
    "apiframe": ("jobId",),
    "dreamina": ("jobid",),
    "ltxstudio": ("jobId",),
    "artnex": ("request_id",),
}
STATUS_ID = {"apixo": ("data", "taskId"), "apiframe": ("id",), "dreamina": ("jobid",)}
CALLBACK_ID = {
    "apixo": ("data", "taskId"),
    "apiframe": ("jobId",),
    "dreamina": ("jobid",),
    "ltxstudio": ("jobId",),
}


def _dig(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        document = document.get(key) if isinstance(document, dict) else None
    return document


def _about(name: str, vendor: str, ids: dict[str, tuple[str, ...]], job_id: Any) -> bytes:
    """The vendor's payload ``name`` made about vendor job ``job_id`` (where it names one)."""
    document = json.loads(payload(vendor, name))
    path = ids.get(vendor)
    if path and isinstance(job_id, str) and isinstance(_dig(document, path[:-1]) or document, dict):
        target = _dig(document, path[:-1]) if len(path) > 1 else document
        if isinstance(target, dict):
            target[path[-1]] = job_id
    return json.dumps(document).encode()


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    channel=st.sampled_from(["submit", "poll", "callback"]),
    text=HOSTILE_TEXT,
    choice=st.integers(0, 200),
    append=st.booleans(),
    templates=st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)),
)
@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_hostile_text_in_any_vendor_answer_is_never_a_5xx_and_every_read_works(
    scripted: Scripted,
    vendor: str,
    channel: str,
    text: str,
    choice: int,
    append: bool,
    templates: tuple[int, int, int],
) -> None:
    """Arbitrary text (lone surrogates, NUL, control characters, non-ASCII, tens of KB) put into any
    string of one of a vendor's documented answers, the others as documented: its submit answer
    (success or error), its status answer or its callback body, nested JSON strings included. No
    request to the relay answers 5xx, and every read of the job, its events, the console pages,
    ``jobs show`` and the stats succeeds."""
    env, script = scripted.env, scripted.script

    def hostile(body: bytes, wanted: str) -> bytes:
        return inject(body, choice, text, append=append) if channel == wanted else body

    submits = _templates(vendor, "submit_", "response_", "error_")
    status, name = submits[templates[0] % len(submits)]
    submit_body = json.loads(payload(vendor, name))
    vendor_job_id = _dig(submit_body, SUBMIT_ID[vendor])
    script.submit[vendor] = (status, hostile(json.dumps(submit_body).encode(), "submit"))
    polls = _templates(vendor, "status_")
    if polls:
        status, name = polls[templates[1] % len(polls)]
        script.status[vendor] = (status, hostile(_about(name, vendor, STATUS_ID, vendor_job_id), "poll"))
    known = len(script.callback_urls)
    created = env.client.post("/v1/jobs", json={"vendor": vendor, "params": VENDORS[vendor]})
    assert created.status_code < 500, created.text
    assert created.status_code == 202, created.text
    job: dict[str, Any] = created.json()
    if polls and job["vendor_job_id"] and job["status"] in ("queued", "running"):
        wait_until(
            lambda: any(i["kind"] == "poll" for i in env.job(job["id"])["inbound"]),
            timeout=15,
            message="the job was never polled",
        )
    callbacks = _templates(vendor, "callback_")
    if callbacks and len(script.callback_urls) > known:
        _, name = callbacks[templates[2] % len(callbacks)]
        body = hostile(_about(name, vendor, CALLBACK_ID, job["vendor_job_id"]), "callback")
        headers = {"Content-Type": "application/json"}
        if vendor == "apiframe":
            headers["X-Webhook-Signature"] = apiframe_signature(env.fake.config.apiframe_api_key, body)
        answer = httpx.post(script.callback_urls[-1], content=body, headers=headers, timeout=30)
        assert answer.status_code < 500, answer.text
    read_everything(env, scripted.console, job["id"])
