"""Logging for ``upscale-relay serve``: uvicorn's own configuration, with callback tokens redacted.

The per-job token in ``/v1/callbacks/{vendor}/{token}`` is the capability that authenticates a
vendor's callback (DESIGN.md, "Security stance"); the store keeps only its hash, so the access log
must not keep it whole either. :class:`RedactCallbackTokens` rewrites the path of every access-log
record: ``POST /v1/callbacks/apixo/Zq3…`` is logged as ``POST /v1/callbacks/apixo/***``.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_CALLBACK_TOKEN = re.compile(r"(/v1/callbacks/[^/?#\s]+/)[^/?#\s\"]+")
REDACTED = "***"


def redact(text: str) -> str:
    """``text`` with every callback token replaced by ``***``.

    Example: ``redact("/v1/callbacks/apixo/abc?x=1")`` → ``"/v1/callbacks/apixo/***?x=1"``.
    """
    return _CALLBACK_TOKEN.sub(rf"\g<1>{REDACTED}", text)


class RedactCallbackTokens(logging.Filter):
    """Redacts callback tokens in a record's message and string arguments (uvicorn's access records
    carry the path as ``args[2]``). Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always ``True`` (keep it)."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default ``log_config`` (``uvicorn.config.LOGGING_CONFIG``) with
    :class:`RedactCallbackTokens` on both of its handlers; pass it to ``uvicorn.run(log_config=...)``."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactCallbackTokens}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_tokens")
    return config
