"""Secrets stay out of the logs (issue 4): a real ``upscale-relay serve`` process takes a job through a
fake vendor's callback to a verifying subscriber, rotates the subscriber's secret, is sent callback
tokens in malformed callback paths and the admin token in query strings, and then nothing it printed
contains a callback token, a signing secret, a vendor credential or the admin token. A second process
logs a vendor error that quotes its callback URL through the relay's own logger; an in-thread server
and the configured handlers show that tracebacks (uvicorn's "Exception in ASGI application" and the
relay's 500 handler) are redacted too."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import logging.config
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fixtures.harness import free_port, serve_in_thread, wait_until
from receiver.errors import HANDLERS
from receiver.fakes import FakeConfig, create_fake_vendors, fake_state_of, source_image
from receiver.fakes.subscriber import create_subscriber
from receiver.logs import (
    RedactingAccessFormatter,
    RedactingDefaultFormatter,
    RedactSecrets,
    redact,
    redact_target,
    remember_secrets,
    uvicorn_log_config,
)
from tests.procs import RelayProcess, relay_environ, wait_http_ok, wait_while_alive

ADMIN = "admin-token-that-must-not-be-logged"
TOKEN = "Zq3TokenThatMustNotBeLogged_0123"  # the shape of receiver.tokens.new_token(): 32 URL-safe chars
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_serve_logs_no_token_secret_or_credential(tmp_path: Path, relay_database: str) -> None:
    """Access and application logs of a full submit → callback → delivery → rotate run name none of
    the run's secrets; the callback path is logged with its token redacted."""
    fake = FakeConfig(callback_delay=0.02, apixo_allow_http=True)
    sub_app, sub_log = create_subscriber()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {ADMIN}"}
    vendors_app = create_fake_vendors(fake)
    state = fake_state_of(vendors_app)
    with serve_in_thread(vendors_app) as vendors, serve_in_thread(sub_app) as subscriber:
        env = relay_environ(
            relay_database,
            api_token=ADMIN,
            public_url=base,
            allow_private_targets=True,
            apixo_api_key=fake.apixo_api_key,
            apixo_base_url=vendors.url,
            poll_interval=0.05,
        )
        with RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as relay:
            wait_http_ok(relay, f"{base}/readyz")
            created = httpx.post(
                f"{base}/v1/subscribers", json={"url": f"{subscriber.url}/hooks/s"}, headers=auth
            )
            assert created.status_code == 201, created.text
            sub = created.json()
            sub_log.set_verifier(lambda body, headers: Webhook(sub["secret"]).verify(body, dict(headers)))
            job = httpx.post(
                f"{base}/v1/jobs",
                json={"vendor": "apixo", "params": {"input": {"image_urls": [source_image()]}}},
                headers=auth,
            )
            assert job.status_code == 202, job.text
            wait_while_alive(relay, lambda: sub_log.count("s") >= 1, timeout=15, message="nothing delivered")
            assert all(d.verified for d in sub_log.deliveries("s"))
            rotated = httpx.post(f"{base}/v1/subscribers/{sub['id']}/rotate-secret", headers=auth)
            assert rotated.status_code == 200, rotated.text
            callback_url = next(
                s.body["callback_url"] for s in state.submits("apixo") if isinstance(s.body, dict)
            )
            token = callback_url.rsplit("/", 1)[1]
            # The token in malformed callback paths (none of them routes), the admin token in query strings.
            malformed = [
                f"/v1/callbacks/apixo//{token}",
                f"/v1/callbacks//apixo/{token}",
                f"/v1/callbacks/apixo/{token}/extra",
                f"/V1/callbacks/apixo/{token}",
                f"/v1/callbacks/apixo?token={token}",
            ]
            for path in malformed:
                assert httpx.post(f"{base}{path}", content=b"{}").status_code in (404, 405), path
            for name in ("token", "api_key", "access_token"):
                assert httpx.get(f"{base}/v1/jobs?{name}={ADMIN}&limit=5").status_code == 401
            assert httpx.get(f"{base}/v1/jobs?{ADMIN}").status_code == 401
            wait_until(
                lambda: '"GET /v1/jobs?*** HTTP/1.1" 401' in relay.stdout(),
                message=f"no access log:\n{relay.stdout()[-3000:]}",
            )
            relay.send_signal(signal.SIGTERM)
            assert relay.wait_exit(15) == 0
            printed = relay.stdout() + relay.stderr()

    secrets = {
        "callback token": token,
        "subscriber secret": sub["secret"],
        "rotated secret": rotated.json()["secret"],
        "vendor credential": fake.apixo_api_key,
        "admin token": ADMIN,
    }
    leaked = [name for name, value in secrets.items() if value in printed]
    assert leaked == [], f"{leaked} appear in the logs:\n{printed[-3000:]}"
    assert '"POST /v1/callbacks/apixo/*** HTTP/1.1" 200' in printed, printed[-3000:]
    for line in (
        '"POST /v1/callbacks/apixo/*** HTTP/1.1" 404',  # //token, token/extra
        '"POST /v1/callbacks/*** HTTP/1.1" 404',  # //apixo/token
        '"POST /V1/callbacks/apixo/*** HTTP/1.1" 404',
        '"POST /v1/callbacks/apixo?token=*** HTTP/1.1" 404',
        '"GET /v1/jobs?token=***&limit=*** HTTP/1.1" 401',
        '"GET /v1/jobs?api_key=***&limit=*** HTTP/1.1" 401',
        '"GET /v1/jobs?access_token=***&limit=*** HTTP/1.1" 401',
    ):
        assert line in printed, f"{line} not in\n{printed[-3000:]}"
    assert printed.count('"POST /v1/callbacks/apixo/*** HTTP/1.1" 404') == 2, printed[-3000:]


def leaky_vendor(callback_urls: list[str]) -> Starlette:
    """An APIXO that accepts jobs (keeping their callback URLs) and answers every status poll with an
    error whose message quotes the callback URL, an ``Authorization`` header and a signing secret."""

    async def submit(request: Request) -> Response:
        callback_urls.append((await request.json())["callback_url"])
        return JSONResponse({"code": 200, "message": "success", "data": {"taskId": "task_leaky"}})

    async def status(request: Request) -> Response:
        quoted = callback_urls[-1] if callback_urls else "?"
        message = f"cannot call {quoted} (Authorization: Bearer {ADMIN}, secret {SECRET})"
        return JSONResponse({"code": 503, "message": message})

    return Starlette(
        routes=[
            Route("/api/v1/generateTask/image-upscaler", submit, methods=["POST"]),
            Route("/api/v1/statusTask/image-upscaler", status, methods=["GET"]),
        ]
    )


def test_serve_relay_logger_redacts_vendor_error_quoting_the_token(
    tmp_path: Path, relay_database: str, log_format: str
) -> None:
    """The poller (``upscale_relay.poller``) logs a vendor's error message, which quotes the job's
    callback URL: the relay prints the warning with the token, bearer credential and secret redacted,
    in text and in JSON (``RELAY_LOG_FORMAT=json``: then every line it prints is a JSON object)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    callback_urls: list[str] = []
    with serve_in_thread(leaky_vendor(callback_urls)) as vendor:
        env = relay_environ(
            relay_database,
            api_token=ADMIN,
            public_url=base,
            apixo_api_key="apixo-credential-never-logged",
            apixo_base_url=vendor.url,
            poll_interval=0.05,
            poll_after=json.dumps({"apixo": 0.05}),
            poll_every=json.dumps({"apixo": 0.05}),
            log_format=log_format,
        )
        with RelayProcess.start("serve", ["serve", "--port", str(port)], env, tmp_path) as relay:
            wait_http_ok(relay, f"{base}/readyz")
            job = httpx.post(
                f"{base}/v1/jobs",
                json={"vendor": "apixo", "params": {"input": {"image_urls": [source_image()]}}},
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
            assert job.status_code == 202, job.text
            wait_while_alive(
                relay, lambda: "failed: cannot call" in relay.stderr(), message="no poll warning"
            )
            relay.send_signal(signal.SIGTERM)
            assert relay.wait_exit(15) == 0
            printed = relay.stdout() + relay.stderr()

    token = callback_urls[0].rsplit("/", 1)[1]
    for name, value in {"callback token": token, "admin token": ADMIN, "secret": SECRET}.items():
        assert value not in printed, f"the {name} appears in the logs:\n{printed[-3000:]}"
    expected = f"cannot call {base}/v1/callbacks/apixo/*** (Authorization: Bearer ***, secret whsec_***)"
    assert expected in printed, printed[-3000:]
    if log_format == "json":
        logged = [
            line for line in relay.stdout().splitlines() + relay.stderr().splitlines() if line.startswith("{")
        ]
        assert any(expected in json.loads(line)["message"] for line in logged), printed[-3000:]
        access = [json.loads(line) for line in relay.stdout().splitlines()]
        assert any(a.get("path") == "/v1/jobs" and a.get("status_code") == 202 for a in access), access


LogStreams = Callable[[], tuple[io.StringIO, io.StringIO]]


@pytest.fixture(params=["text", "json"])
def log_format(request: pytest.FixtureRequest) -> str:
    """``RELAY_LOG_FORMAT``: every redaction test of the configured handlers runs in both formats."""
    fmt: str = request.param
    return fmt


def as_text(printed: str, fmt: str) -> str:
    """What the handlers printed, as the text format prints it: JSON lines (each must parse) become
    ``LEVEL:    message`` followed by the traceback, so one set of expectations covers both formats."""
    if fmt == "text":
        return printed
    lines = []
    for line in printed.splitlines():
        record = json.loads(line)
        assert {"timestamp", "level", "logger", "message"} <= set(record), record
        lines.append(f"{record['level'] + ':':<10}{record['message']}\n")
        if record.get("exc_info"):
            lines.append(record["exc_info"] + "\n")
    return "".join(lines)


@pytest.fixture
def configured_logs(log_format: str) -> Iterator[LogStreams]:
    """A function that installs :func:`uvicorn_log_config` in ``log_format`` (access handler → first
    buffer, default handler → second buffer, no colours); every logger's state is restored afterwards."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    saved = [
        (lg, lg.level, lg.handlers[:], lg.propagate, lg.disabled)
        for lg in loggers
        if isinstance(lg, logging.Logger)
    ]

    def configure() -> tuple[io.StringIO, io.StringIO]:
        out, err = io.StringIO(), io.StringIO()
        config = uvicorn_log_config("INFO", log_format)
        config["handlers"]["access"]["stream"] = out
        config["handlers"]["default"]["stream"] = err
        for formatter in config["formatters"].values():
            if log_format == "text":
                formatter["use_colors"] = False
        logging.config.dictConfig(config)
        return out, err

    yield configure
    for lg, level, handlers, propagate, disabled in saved:
        lg.setLevel(level)
        lg.handlers = handlers
        lg.propagate = propagate
        lg.disabled = disabled


def test_log_config_redacts_on_every_handler() -> None:
    """Every handler has the filter and a redacting formatter; the relay's loggers and the root reach
    one of them."""
    config = uvicorn_log_config()
    assert all("redact_secrets" in h["filters"] for h in config["handlers"].values())
    assert config["filters"]["redact_secrets"]["()"] == "receiver.logs.RedactSecrets"
    assert config["formatters"]["default"]["()"] == "receiver.logs.RedactingDefaultFormatter"
    assert config["formatters"]["access"]["()"] == "receiver.logs.RedactingAccessFormatter"
    assert config["root"]["handlers"] == ["default"]
    assert config["loggers"]["upscale_relay"].get("propagate", True)


def test_configured_handlers_redact_every_logger(configured_logs: LogStreams, log_format: str) -> None:
    """Relay, uvicorn and library records (tuple or dict arguments, a token split between the message
    and an argument, tracebacks) print without the token, the admin token or a secret."""
    out, err = configured_logs()
    url = f"http://relay.example.com/v1/callbacks/apixo/{TOKEN}"
    logging.getLogger("upscale_relay.poller").warning("poll of %s failed: %s", "job_1", f"see {url}")
    logging.getLogger("upscale_relay.worker").warning("split /v1/callbacks/apixo/%s", TOKEN)
    logging.getLogger("upscale_relay.http").warning(
        "%(path)s refused", {"path": f"/v1/callbacks//apixo/{TOKEN}"}
    )
    decoded = f"/v1/callbacks/apixo/{TOKEN[:9]} {TOKEN[9:]}"  # a decoded path (%20) passed as an argument
    logging.getLogger("upscale_relay.http").info("decoded %s", decoded)
    logging.getLogger("some.library").error("sent Authorization: Bearer %s and %s", ADMIN, SECRET)
    access = logging.getLogger("uvicorn.access")
    access.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/v1/jobs?token={ADMIN}&limit=5", "1.1", 401
    )
    access.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "POST", f"/v1/callbacks/apixo/{TOKEN}/x", "1.1", 404
    )
    try:
        raise ValueError(f"cannot parse {url}?access_token={ADMIN}")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application\n")
    try:
        raise RuntimeError(f"callback {url} lost") from KeyError(f"/v1/callbacks/apixo/{TOKEN}")
    except RuntimeError as exc:
        logging.getLogger("upscale_relay.dispatch").error("delivery task failed", exc_info=exc)
    logging.getLogger("upscale_relay.worker").info(
        "delivered", extra={"url": f"http://hooks.example.com/v1/callbacks/apixo/{TOKEN}?key={ADMIN}"}
    )
    printed = out.getvalue() + err.getvalue()
    errors = as_text(err.getvalue(), log_format)

    for name, value in {
        "callback token": TOKEN,
        "half of it": TOKEN[9:],
        "admin": ADMIN,
        "secret": SECRET,
    }.items():
        assert value not in printed, f"the {name} appears in the logs:\n{printed}"
    for line in (
        "WARNING:  poll of job_1 failed: see http://relay.example.com/v1/callbacks/apixo/***\n",
        "WARNING:  split /v1/callbacks/apixo/***\n",
        "WARNING:  /v1/callbacks/*** refused\n",
        "INFO:     decoded /v1/callbacks/apixo/***\n",
        "ERROR:    sent Authorization: Bearer *** and whsec_***\n",
        "ERROR:    Exception in ASGI application\n",
        "ValueError: cannot parse http://relay.example.com/v1/callbacks/apixo/***\n",
        "KeyError: '/v1/callbacks/apixo/***'\n",
        "RuntimeError: callback http://relay.example.com/v1/callbacks/apixo/*** lost\n",
    ):
        assert line in errors, f"{line!r} not in\n{err.getvalue()}"
    if log_format == "text":
        assert out.getvalue() == (
            'INFO:     127.0.0.1:5 - "GET /v1/jobs?token=***&limit=*** HTTP/1.1" 401 Unauthorized\n'
            'INFO:     127.0.0.1:5 - "POST /v1/callbacks/apixo/*** HTTP/1.1" 404 Not Found\n'
        )
    else:  # the access record's arguments are fields of their own, redacted like the message
        first, second = (json.loads(line) for line in out.getvalue().splitlines())
        assert first["message"] == '127.0.0.1:5 - "GET /v1/jobs?token=***&limit=*** HTTP/1.1" 401'
        assert (first["method"], first["path"], first["status_code"]) == (
            "GET",
            "/v1/jobs?token=***&limit=***",
            401,
        )
        assert second["path"] == "/v1/callbacks/apixo/***" and second["client_addr"] == "127.0.0.1:5"
        (delivered,) = [json.loads(x) for x in err.getvalue().splitlines() if '"delivered"' in x]
        assert delivered["url"] == "http://hooks.example.com/v1/callbacks/apixo/***"  # extra= fields too
    assert errors.count("Traceback (most recent call last):") == 2


def test_unhandled_exception_is_logged_redacted(configured_logs: LogStreams, log_format: str) -> None:
    """A real 500 on a callback URL: the relay's 500 handler and uvicorn's "Exception in ASGI
    application" both log the traceback, which holds the token bare (``KeyError``) and in the URL; the
    request's token, query values and bearer credential are redacted from both, and from the access
    line."""

    async def boom(request: Request) -> Response:
        try:
            {}[request.path_params["token"]]
        except KeyError as exc:
            raise RuntimeError(f"cannot ingest {request.url}") from exc
        raise AssertionError("unreachable")

    app = Starlette(
        routes=[Route("/v1/callbacks/{vendor}/{token}", boom, methods=["POST"])], exception_handlers=HANDLERS
    )
    with serve_in_thread(app) as server:
        out, err = configured_logs()  # after the server's uvicorn.Config, which installs its own logging
        answer = httpx.post(
            f"{server.url}/v1/callbacks/apixo/{TOKEN}?token={ADMIN}",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "internal_error"
        wait_until(lambda: "Exception in ASGI application" in err.getvalue(), message=err.getvalue())
    printed = as_text(out.getvalue() + err.getvalue(), log_format)

    assert TOKEN not in printed, printed
    assert ADMIN not in printed, printed
    assert "ERROR:    unhandled error on POST /v1/callbacks/apixo/***\n" in printed, printed
    assert printed.count("KeyError: '***'") == 2, printed
    assert printed.count("RuntimeError: cannot ingest http://127.0.0.1:") == 2, printed
    assert f"{server.url}/v1/callbacks/apixo/***\n" in printed, printed


def test_remembered_secrets_stay_in_their_context() -> None:
    """Values given to ``remember_secrets`` are redacted in that context only, and only from 8
    characters on."""

    def in_request() -> tuple[str, str]:
        remember_secrets(TOKEN, "short")
        return redact(f"KeyError: '{TOKEN}' short"), redact(TOKEN[:-1])

    assert contextvars.copy_context().run(in_request) == ("KeyError: '***' short", TOKEN[:-1])
    assert redact(TOKEN) == TOKEN


def test_filter_redacts_record_in_place() -> None:
    """The filter formats and redacts the message (dropping the arguments), the traceback text and
    the stack; it keeps uvicorn's access arguments, each redacted; a broken call still gets out."""

    def record(name: str, msg: str, args: tuple[object, ...], exc: bool = False) -> logging.LogRecord:
        exc_info = None
        if exc:
            try:
                raise ValueError(f"at /v1/callbacks/apixo/{TOKEN}")
            except ValueError:
                exc_info = sys.exc_info()
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, exc_info)

    split = record("upscale_relay.x", "/v1/callbacks/apixo/%s", (TOKEN,), exc=True)
    assert RedactSecrets().filter(split)
    assert (split.msg, split.args) == ("/v1/callbacks/apixo/***", None)
    assert split.exc_text is not None and split.exc_text.endswith("ValueError: at /v1/callbacks/apixo/***")
    keyed = record("upscale_relay.x", "%(target)s", ({"target": f"/v1/jobs?token={ADMIN}"},))
    assert RedactSecrets().filter(keyed)
    assert keyed.getMessage() == "/v1/jobs?token=***"
    access_args = ("127.0.0.1:5", "GET", f"/v1/callbacks/apixo/{TOKEN}?x=1", "1.1", 404)
    access = record("uvicorn.access", '%s - "%s %s HTTP/%s" %d', access_args)
    assert RedactSecrets().filter(access)
    assert access.args == ("127.0.0.1:5", "GET", "/v1/callbacks/apixo/***", "1.1", 404)
    broken = record("upscale_relay.x", "%s and %s", (f"/v1/callbacks/apixo/{TOKEN}",))
    assert RedactSecrets().filter(broken)
    assert TOKEN not in broken.getMessage() and "/v1/callbacks/apixo/***" in broken.getMessage()


def test_formatters_redact_their_output() -> None:
    """A record that skipped the filter is still printed redacted, traceback included."""
    try:
        raise ValueError(f"at /v1/callbacks/apixo/{TOKEN}")
    except ValueError:
        exc_info = sys.exc_info()
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "got %s", (f"Bearer {ADMIN}",), exc_info)
    printed = RedactingDefaultFormatter("%(levelprefix)s %(message)s", use_colors=False).format(rec)
    assert printed.startswith("ERROR:    got Bearer ***\nTraceback"), printed
    assert printed.endswith("ValueError: at /v1/callbacks/apixo/***"), printed
    access_args = ("127.0.0.1:5", "GET", f"/v1/jobs?api_key={ADMIN}", "1.1", 401)
    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s %s %s %s %s", access_args, None)
    printed = RedactingAccessFormatter(
        '%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
    ).format(rec)
    assert printed == '127.0.0.1:5 - "GET /v1/jobs?api_key=*** HTTP/1.1" 401 Unauthorized', printed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/v1/callbacks/apixo/Zq3abc", "/v1/callbacks/apixo/***"),
        ("/v1/callbacks/dreamina/Zq3abc?x=1", "/v1/callbacks/dreamina/***"),
        (
            '"POST /v1/callbacks/ltxstudio/a-b_c HTTP/1.1" 200',
            '"POST /v1/callbacks/ltxstudio/*** HTTP/1.1" 200',
        ),
        ("/v1/callbacks/apixo/", "/v1/callbacks/apixo/"),
        ("/v1/callbacks/apixo", "/v1/callbacks/apixo"),
        ("/v1/callbacks/", "/v1/callbacks/"),
        ("/v1/jobs/job_01", "/v1/jobs/job_01"),
        ("a /v1/callbacks/x/t1 and /v1/callbacks/y/t2", "a /v1/callbacks/x/*** and /v1/callbacks/y/***"),
        # malformed callback paths: everything after the vendor goes, and the vendor too if odd-shaped
        ("/v1/callbacks/apixo//Zq3abc", "/v1/callbacks/apixo/***"),
        ("/v1/callbacks//apixo/Zq3abc", "/v1/callbacks/***"),
        ("/v1/callbacks/apixo/Zq3abc/extra", "/v1/callbacks/apixo/***"),
        ("/v1/callbacks/apixo/Zq3abc/", "/v1/callbacks/apixo/***"),
        ("/v1//callbacks/apixo/Zq3abc", "/v1//callbacks/apixo/***"),
        ("/V1/Callbacks/apixo/Zq3abc", "/V1/Callbacks/apixo/***"),
        ("/v1%2Fcallbacks%2Fapixo%2FZq3abc", "/v1%2Fcallbacks%2F***"),
        (f"/v1/callbacks/{TOKEN}", "/v1/callbacks/***"),
        ("/v1/callbacks/Apixo/Zq3abc", "/v1/callbacks/***"),
        (
            "https://relay.example.com/relay/v1/callbacks/apixo/Zq3",
            "https://relay.example.com/relay/v1/callbacks/apixo/***",
        ),
        # query strings: names kept when name-shaped, every value redacted
        ("/v1/callbacks/apixo?token=abc", "/v1/callbacks/apixo?token=***"),
        ("GET /v1/jobs?token=abc&limit=5 HTTP/1.1", "GET /v1/jobs?token=***&limit=*** HTTP/1.1"),
        ("/v1/jobs?api_key=abc", "/v1/jobs?api_key=***"),
        ("/v1/jobs?access_token=abc&", "/v1/jobs?access_token=***&"),
        ("/v1/jobs?abc", "/v1/jobs?***"),
        (f"/v1/jobs?{TOKEN}=1", "/v1/jobs?***"),
        ("/v1/jobs?", "/v1/jobs?"),
        ("https://vendor.example/x?key=abc#frag", "https://vendor.example/x?key=***#frag"),
        ("'https://vendor.example/x?key=abc'", "'https://vendor.example/x?key=***'"),
        # credentials
        ("Authorization: Bearer abcdefgh12", "Authorization: Bearer ***"),
        (f"authorization: bearer {ADMIN}", "authorization: bearer ***"),
        (f"secret {SECRET} end", "secret whsec_*** end"),
        # prose stays
        ("what? nothing", "what? nothing"),
        ("the bearer token is missing", "the bearer token is missing"),
        ("whsec_ secrets", "whsec_ secrets"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    """Callback paths lose what follows the vendor, query strings their values, credentials their
    value; other paths and text stay as they are. Redacting again changes nothing."""
    assert redact(text) == expected
    assert redact(expected) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/v1/callbacks/apixo/to ken", "/v1/callbacks/apixo/***"),
        ('/v1/callbacks/apixo/to"ken', "/v1/callbacks/apixo/***"),
        (f"/v1/callbacks/apixo?token={TOKEN} x", "/v1/callbacks/apixo?token=***"),
        ('/v1/jobs?token=a "b"&limit=5', "/v1/jobs?token=***&limit=***"),
        ("/v1/jobs?a b", "/v1/jobs?***"),
        ("/v1/jobs", "/v1/jobs"),
        ("/healthz?x=1&&y", "/healthz?x=***&&***"),
    ],
)
def test_redact_target_takes_the_target_whole(target: str, expected: str) -> None:
    """A request target is redacted to its end, through spaces and quotes."""
    assert redact_target(target) == expected
