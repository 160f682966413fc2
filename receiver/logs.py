"""Logging for ``upscale-relay serve``: uvicorn's own configuration, with secrets redacted everywhere.

The per-job token in ``/v1/callbacks/{vendor}/{token}`` is the capability that authenticates a
vendor's callback (DESIGN.md, "Security stance"); the store keeps only its hash, so the logs must not
keep it whole either, nor an admin token sent in a query string, a ``Bearer`` credential or a
``whsec_`` signing secret. :func:`redact` rewrites text:

- a callback path keeps its vendor name and loses everything after it, however many segments or
  slashes follow: ``/v1/callbacks/apixo/Zq3…`` and ``/v1/callbacks/apixo//Zq3…/extra`` are both
  logged as ``/v1/callbacks/apixo/***``; a path whose first segment is not vendor-shaped
  (``/v1/callbacks//apixo/Zq3…``) is logged as ``/v1/callbacks/***``;
- every query-string value is redacted and its parameter name kept when it looks like one:
  ``/v1/jobs?token=abc&limit=5`` → ``/v1/jobs?token=***&limit=***``; a parameter without ``=`` or with
  an odd name is replaced whole (``/v1/jobs?abc`` → ``/v1/jobs?***``);
- ``Bearer abc…`` → ``Bearer ***`` and ``whsec_abc…`` → ``whsec_***``.

:func:`uvicorn_log_config` applies it to every record the server prints, on every handler: uvicorn's
access and error logs, the relay's own ``upscale_relay.*`` loggers and anything else that reaches the
root logger (asyncio, libraries), including the text of tracebacks. Redaction is by shape, so a bare
token that appears without its callback path (``KeyError: 'Zq3…'``) is recognised only where its
value was handed to :func:`remember_secrets` first, as the 500 handler (``receiver.errors``) does with
the failing request's token, query values and ``Authorization`` credential.
"""

from __future__ import annotations

import copy
import logging
import logging.config
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter
from uvicorn.logging import AccessFormatter, DefaultFormatter

REDACTED = "***"
MIN_SECRET_LENGTH = 8  # shorter values given to remember_secrets are not redacted: too likely elsewhere

_SEP = r"(?:/|%2[fF])"
# ``/v1/callbacks/`` as it may reach a log: doubled slashes, any case, percent-encoded slashes.
_CALLBACK_PREFIX = re.compile(rf"{_SEP}+v1{_SEP}+callbacks{_SEP}", re.IGNORECASE)
# ... and in free text, the rest of that path: everything up to whitespace, a quote or a bracket.
_CALLBACK = re.compile(rf"({_CALLBACK_PREFIX.pattern})([^\s\"'<>`]*)", re.IGNORECASE)
# A vendor name as the relay spells them (``apixo``, ``ltxstudio``): short, lower case. A callback
# token (32 URL-safe characters) never fits.
_VENDOR = re.compile(r"[a-z][a-z0-9_-]{0,23}")
# A query string in free text: ``?`` right after a URL character, up to whitespace, a quote or ``#``.
_QUERY = re.compile(r"(?<=[\w/.~%-])\?([^\s\"'<>`#]+)")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\[\]-]{0,23}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]{8,}=*")
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")
# Text every pattern above needs: most lines hold none, and one search is cheaper than four subs
_ANY_PATTERN = re.compile(r"callbacks|bearer|whsec_|\?", re.IGNORECASE)

_TRACEBACKS = logging.Formatter()  # formats exc_info the standard way, for redaction before any handler
# Exact values to redact from what the current context logs (longest first), see remember_secrets.
_KNOWN_SECRETS: ContextVar[tuple[str, ...]] = ContextVar("upscale_relay_log_secrets", default=())


def remember_secrets(*values: str) -> None:
    """Redact these exact values (those of at least :data:`MIN_SECRET_LENGTH` characters) wherever
    they appear in what is logged later in the current context: for a request, its task, where
    uvicorn also reports the exception that escaped the app. Other requests are not affected.

    Example: ``remember_secrets("Zq3abcdefgh")``, then ``redact("KeyError: 'Zq3abcdefgh'")`` →
    ``"KeyError: '***'"`` in the same context.
    """
    known = set(_KNOWN_SECRETS.get())
    known.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)
    _KNOWN_SECRETS.set(tuple(sorted(known, key=len, reverse=True)))


def redact(text: str) -> str:
    """``text`` with callback tokens, query-string values, ``Bearer`` credentials and ``whsec_``
    secrets replaced by ``***`` (see the module docstring), and so is every value given to
    :func:`remember_secrets` in the current context. Idempotent.

    Examples::

        redact('"POST /v1/callbacks/apixo/Zq3abc HTTP/1.1" 200')
        # '"POST /v1/callbacks/apixo/*** HTTP/1.1" 200'
        redact("/v1/callbacks/apixo//Zq3abc/extra")  # "/v1/callbacks/apixo/***"
        redact("/v1/callbacks//apixo/Zq3abc")  # "/v1/callbacks/***"
        redact("GET /v1/jobs?token=abc&limit=5")  # "GET /v1/jobs?token=***&limit=***"
        redact("Authorization: Bearer abcdefgh12")  # "Authorization: Bearer ***"
    """
    for secret in _KNOWN_SECRETS.get():
        text = text.replace(secret, REDACTED)
    if _ANY_PATTERN.search(text) is None:  # most lines: one scan instead of four substitutions
        return text
    text = _CALLBACK.sub(lambda m: m.group(1) + _callback_rest(m.group(2)), text)
    text = _QUERY.sub(lambda m: "?" + _redact_query(m.group(1)), text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    return _WHSEC.sub(f"whsec_{REDACTED}", text)


def redact_target(target: str) -> str:
    """A request target (path and query string, taken whole) redacted like :func:`redact`, even when
    it holds spaces or quotes (a decoded path, a raw query string), which end a match in free text.

    Examples: ``redact_target("/v1/callbacks/apixo/to ken")`` → ``"/v1/callbacks/apixo/***"``;
    ``redact_target('/v1/jobs?token=a "b"')`` → ``"/v1/jobs?token=***"``.
    """
    path, sep, query = target.partition("?")
    match = _CALLBACK_PREFIX.search(path)
    if match is not None:
        return redact(target[: match.start()]) + match.group(0) + _callback_rest(target[match.end() :])
    return redact(path) + sep + _redact_query(query) if sep else redact(path)


def _callback_rest(rest: str) -> str:
    """What follows ``/v1/callbacks/``: ``"apixo/<token>…"`` → ``"apixo/***"``, ``"apixo"`` and
    ``"apixo/"`` unchanged (no token), ``"apixo?k=v"`` → ``"apixo?k=***"``, anything else → ``"***"``."""
    path, sep, query = rest.partition("?")
    vendor, _, after = path.partition("/")
    if _VENDOR.fullmatch(vendor) is None:
        return REDACTED if rest else rest
    if after.strip("/"):
        return f"{vendor}/{REDACTED}"
    return path + sep + _redact_query(query) if sep else path


def _redact_query(query: str) -> str:
    """``"token=abc&limit=5"`` → ``"token=***&limit=***"``; ``"abc"`` → ``"***"``; ``""`` → ``""``."""
    return "&".join(_redact_param(param) for param in query.split("&"))


def _redact_param(param: str) -> str:
    if not param:
        return param
    name, eq, _ = param.partition("=")
    return f"{name}={REDACTED}" if eq and _PARAM_NAME.fullmatch(name) else REDACTED


def _redact_value(value: object) -> object:
    """A log argument: a string starting with ``/`` is taken as a request target (uvicorn's access
    records and the relay's own messages pass paths that way), another string as free text; anything
    else is left to the redaction of the formatted message."""
    if isinstance(value, str):
        return redact_target(value) if value.startswith("/") else redact(value)
    return value


class RedactSecrets(logging.Filter):
    """Redacts a record in place; never drops one. Attached to every handler of
    :func:`uvicorn_log_config`.

    String arguments are redacted one by one (``record.args`` as a tuple or a dict); then, except for
    uvicorn's access records (whose formatter needs their five arguments), the message is formatted
    and redacted as a whole and the arguments dropped, so a token split between the format string
    and an argument is caught too. The traceback text (``exc_text``) and ``stack_info`` are formatted
    and redacted here, so a handler that reuses them prints the redacted form.

    Example: ``log.warning("poll of %s failed: %s", "job_1", "see /v1/callbacks/apixo/Zq3")`` reaches
    the handler as ``"poll of job_1 failed: see /v1/callbacks/apixo/***"``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record``; always ``True`` (keep it)."""
        args = record.args
        if isinstance(args, tuple):
            args = tuple(_redact_value(a) for a in args)
        elif isinstance(args, Mapping):
            args = {k: _redact_value(v) for k, v in args.items()}
        record.args = args
        if not (record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5):
            try:
                message = record.getMessage()
            except Exception:  # a broken log call: keep what it said rather than the logging error
                message = f"{record.msg!s} {args!r}"
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


RedactCallbackTokens = RedactSecrets  # the name this filter had before it redacted more than tokens


class _RedactOutput(logging.Formatter):
    """Redacts the whole formatted record (message, traceback, stack) as it leaves the formatter."""

    def format(self, record: logging.LogRecord) -> str:
        """``redact(super().format(record))``."""
        return redact(super().format(record))


class RedactingDefaultFormatter(_RedactOutput, DefaultFormatter):
    """uvicorn's ``DefaultFormatter`` (``INFO:     message``) whose output is :func:`redact`-ed."""


class RedactingAccessFormatter(_RedactOutput, AccessFormatter):
    """uvicorn's ``AccessFormatter`` (``INFO:     127.0.0.1:5 - "GET /path HTTP/1.1" 200``) whose
    output is :func:`redact`-ed."""


def _redact_json(value: Any) -> Any:
    """``value`` with every string in it :func:`redact`-ed (lists and dicts walked)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redact_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_json(v) for k, v in value.items()}
    return value


class RedactingJsonFormatter(JsonFormatter):
    """python-json-logger's ``JsonFormatter`` (one JSON object a line) whose every string value is
    :func:`redact`-ed before it is serialized: the message, the traceback (``exc_info``), the stack and
    the ``extra=`` fields. Redacting values rather than the JSON text keeps each line valid JSON.

    With the relay's configuration a line looks like ``{"timestamp": "2026-...Z", "level": "INFO",
    "logger": "upscale_relay.worker", "message": "delivery attempt 1 of evt_... ...", "event_id":
    "evt_...", "subscriber_id": "sub_...", "attempt": 1, "status_code": 200, ...}``.
    """

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Redact every string value."""
        redacted: dict[str, Any] = _redact_json(super().process_log_record(log_data))
        return redacted


class RedactingJsonAccessFormatter(RedactingJsonFormatter):
    """:class:`RedactingJsonFormatter` for uvicorn's access records: their five arguments become the
    fields ``client_addr``, ``method``, ``path``, ``http_version`` and ``status_code``."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """The standard fields, plus the request's when ``record`` is uvicorn's access record."""
        super().add_fields(log_data, record, message_dict)
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client_addr, method, path, http_version, status_code = args
            log_data.update(
                client_addr=client_addr,
                method=method,
                path=redact_target(str(path)),
                http_version=http_version,
                status_code=status_code,
            )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
JSON_FIELDS: dict[str, Any] = {  # RedactingJsonFormatter keywords: which fields, named how
    "fmt": "%(levelname)s %(name)s %(message)s",
    "rename_fields": {"levelname": "level", "name": "logger"},
}


def uvicorn_log_config(level: str = "INFO", fmt: str = "text") -> dict[str, Any]:
    """uvicorn's default ``log_config`` (``uvicorn.config.LOGGING_CONFIG``) with secrets redacted on
    every handler; pass it to ``uvicorn.run(log_config=...)`` or :func:`logging.config.dictConfig`.

    Both handlers (``access`` to stdout, ``default`` to stderr) get the :class:`RedactSecrets` filter
    and a formatter that redacts its output. The relay's own loggers (``upscale_relay.*``, at ``level``:
    ``RELAY_LOG_LEVEL``) and every other logger (through the root logger, at WARNING, or ``level`` when
    that is higher) print through the ``default`` handler; uvicorn's own loggers use ``level`` too.
    ``fmt`` (``RELAY_LOG_FORMAT``) ``"json"`` prints one JSON object a line
    (:class:`RedactingJsonFormatter`: ``timestamp``, ``level``, ``logger``, ``message`` and each record's
    ``extra=`` fields), ``"text"`` uvicorn's ``INFO:     message`` lines.

    Example: ``uvicorn.run(app, log_config=uvicorn_log_config("INFO", "json"))``.
    """
    from uvicorn.config import LOGGING_CONFIG

    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    if fmt == "json":
        config["formatters"]["default"] = {
            "()": f"{__name__}.RedactingJsonFormatter",
            "timestamp": True,
            **JSON_FIELDS,
        }
        config["formatters"]["access"] = {
            "()": f"{__name__}.RedactingJsonAccessFormatter",
            "timestamp": True,
            **JSON_FIELDS,
        }
    else:
        config["formatters"]["default"]["()"] = f"{__name__}.RedactingDefaultFormatter"
        config["formatters"]["access"]["()"] = f"{__name__}.RedactingAccessFormatter"
    config.setdefault("filters", {})["redact_secrets"] = {"()": f"{__name__}.RedactSecrets"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_secrets")
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        config["loggers"].setdefault(name, {})["level"] = level
    config["loggers"]["upscale_relay"] = {"level": level}  # propagates to the root's handler
    root_level = level if LOG_LEVELS.index(level) > LOG_LEVELS.index("WARNING") else "WARNING"
    config["root"] = {"handlers": ["default"], "level": root_level}
    return config


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Install :func:`uvicorn_log_config` (``level``, ``fmt``) in this process, for commands that log
    without uvicorn (the delivery worker, say): ``configure_logging("INFO", "json");
    logging.getLogger("upscale_relay.worker")`` then prints to stderr with secrets redacted."""
    logging.config.dictConfig(uvicorn_log_config(level, fmt))
