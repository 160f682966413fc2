"""Helpers every API module shares: reading JSON bodies into models, the app's resources, paging."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from dispatch.errors import PayloadTooLarge, ValidationFailed
from dispatch.model import parse_iso
from dispatch.store.face import Store
from dispatch.store.sql import page_key, parse_page_key
from receiver.ingest import Ingest
from receiver.metrics import RelayMetrics
from receiver.mirroring import MirrorTarget
from receiver.operations import BODY_PREVIEW_BYTES as BODY_PREVIEW_BYTES  # one definition
from receiver.settings import Settings
from receiver.submit import Submitter, validation_details

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
MAX_LIMIT = 500


@dataclass
class Resources:
    """What the lifespan opens and handlers use (``request.state.resources``)."""

    settings: Settings
    store: Store
    submitter: Submitter
    ingest: Ingest
    api_token: str
    wake: Callable[[], None]  # tells an in-process dispatcher that new deliveries exist
    metrics: RelayMetrics = field(default_factory=RelayMetrics)  # this process's, served at /metrics
    mirror: MirrorTarget | None = None  # RELAY_MIRROR_URL's store, when mirroring is on


def resources(request: Request) -> Resources:
    """The lifespan's :class:`Resources` for this request."""
    res: Resources = request.state.resources
    return res


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading it whole.

    Raises :class:`PayloadTooLarge` when ``Content-Length`` or the streamed size exceeds ``limit``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_json(request: Request, model: type[M]) -> M:
    """Read a JSON body of at most ``RELAY_MAX_API_BODY_BYTES`` into ``model`` (an empty body is ``{}``).

    Raises :class:`PayloadTooLarge` over the limit and :class:`ValidationFailed` naming the first bad
    field (``"params.imageIndex: Input should be less than or equal to 3"``) or saying the body is
    not JSON.
    """
    body = await read_body(request, resources(request).settings.max_api_body_bytes)
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValidationFailed("body is not valid JSON: nested too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        raise ValidationFailed(f"{details[0]['field']}: {details[0]['message']}", details=details) from None


def query_choice(request: Request, name: str, choices: Iterable[str]) -> str | None:
    """``?name=value`` when ``value`` is one of ``choices``, ``None`` when absent.

    Raises :class:`ValidationFailed` for anything else (``status: unknown value 'dead '; one of
    pending, retrying, ...``), so a typo is an error instead of an empty list.
    """
    raw = request.query_params.get(name)
    known = list(choices)
    if raw is None or raw in known:
        return raw
    raise ValidationFailed(f"{name}: unknown value {raw[:100]!r}; one of {', '.join(known)}")


def query_cursor(request: Request) -> tuple[int, str] | None:
    """``?cursor=`` as the ``(unix ms, id)`` keyset position a list's ``next_cursor`` gave, or
    ``None``. Raises :class:`ValidationFailed` for anything a list did not return."""
    raw = request.query_params.get("cursor")
    if raw is None:
        return None
    try:
        return parse_page_key(raw)
    except ValueError as exc:
        raise ValidationFailed(f"cursor: {exc}") from None


def page(rows: Sequence[R], limit: int, key: Callable[[R], tuple[int, str]]) -> dict[str, Any]:
    """A list answer from ``rows`` fetched with ``limit + 1``: ``{"data": [...], "next_cursor": ...}``,
    ``next_cursor`` being ``None`` on the last page. Each row needs ``to_json()``."""
    more = len(rows) > limit
    shown = rows[:limit]
    cursor = page_key(*key(shown[-1])) if more and shown else None
    return {"data": [row.to_json() for row in shown], "next_cursor": cursor}  # type: ignore[attr-defined]


def query_time(request: Request, name: str) -> int | None:
    """``?name=`` as unix ms from an ISO-8601 time (``2026-11-01T00:00:00Z``; a time without a zone is
    UTC), ``None`` when absent or empty. Raises :class:`ValidationFailed` for anything else."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isascii():
        raise ValidationFailed(f"{name}: not an ISO-8601 time in ASCII: {raw[:100]!r}")
    try:
        parsed: datetime | None = parse_iso(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: not an ISO-8601 time: {raw[:100]!r}") from None
    return None if parsed is None else int(parsed.timestamp() * 1000)


def query_limit(request: Request, default: int = 50) -> int:
    """``?limit=N`` as an int in 1..500 written in ASCII digits (fullwidth and superscript digits are refused, as is
    an empty value). Raises :class:`ValidationFailed`."""
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationFailed(f"limit: must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)
