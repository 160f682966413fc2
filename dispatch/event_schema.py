"""The event contract as pydantic models: what :func:`dispatch.events.event_body` writes and every
subscriber receives (README, "The event contract"), and the JSON Schema generated from them.

The schema is published at ``schemas/event.schema.json`` (regenerate it with
``python -m dispatch.event_schema``; a test fails while the file is stale) and served at
``GET /v1/schemas/event.json``. The API's job and event responses reuse :class:`OutputModel` and
:class:`JobErrorModel`.

Example::

    EventPayload.model_validate_json(body)  # a delivered body; raises ValidationError on drift
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dispatch.model import EventType, JobState

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
EVENT_SCHEMA_ID = "urn:upscale-relay:schema:event"
EVENT_SCHEMA_FILE = Path("schemas") / "event.schema.json"
"""Where the published schema lives, relative to the repository root."""


class MirrorModel(BaseModel):
    """The relay's copy of an output (``RELAY_MIRROR_URL``): ``{"url", "size_bytes", "sha256",
    "expires_at"}``."""

    model_config = ConfigDict(extra="forbid", title="Mirror")
    url: str = Field(
        description="Where the relay's copy is served until `expires_at` (refreshed per delivery)."
    )
    size_bytes: int = Field(ge=0, description="Bytes stored.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the stored bytes (hex).")
    expires_at: AwareDatetime | None = Field(description="When `url` stops working (UTC, milliseconds).")


class OutputModel(BaseModel):
    """One result file: ``{"url", "mime_type", "width", "height", "expires_at"}`` (pixels; unknown
    values are ``null``), plus ``mirror`` / ``mirror_error`` when mirroring is on."""

    model_config = ConfigDict(extra="forbid", title="Output")
    url: str = Field(description="Where the vendor serves the file (until `expires_at`, if known).")
    mime_type: str | None = Field(description="e.g. `image/jpeg`; null when the vendor does not say.")
    width: int | None = Field(description="Pixels; null when the vendor does not say.")
    height: int | None = Field(description="Pixels; null when the vendor does not say.")
    expires_at: AwareDatetime | None = Field(
        description="When the vendor's URL stops working (UTC, milliseconds), if known."
    )
    mirror: MirrorModel | None = Field(
        default=None,
        description="The relay's copy (mirroring on); null when copying failed for good (see `mirror_error`).",
    )
    mirror_error: JobErrorModel | None = Field(
        default=None,
        description="Why no copy was made: `too_large`, `refused`, `expired` or `deadline_passed`.",
    )


class JobErrorModel(BaseModel):
    """Why a job failed: ``code`` keeps the vendor's own code where it has one (APIXO ``failCode``,
    Artnex ``error``), else a relay code (``vendor_failed``, ``vendor_timeout``, ``vendor_rejected``...)."""

    model_config = ConfigDict(extra="forbid", title="JobError")
    code: str
    message: str | None


class EventData(BaseModel):
    """The job as it was when the event was made."""

    model_config = ConfigDict(extra="forbid")
    job_id: str = Field(description="The relay's job id (`job_...`).")
    vendor: str = Field(description="The vendor adapter's name, e.g. `apixo`.")
    vendor_job_id: str | None = Field(description="The vendor's own job id; null until it is known.")
    status: JobState
    progress: int | None = Field(ge=0, le=100, description="0-100 when the vendor reports it, else null.")
    sequence: int = Field(ge=0, description="Grows by one per event of the job.")
    outputs: list[OutputModel]
    error: JobErrorModel | None = Field(description="Set when the job failed.")
    reference: str | None = Field(description="The caller's `reference` from `POST /v1/jobs`.")
    submitted_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    after_relay_timeout: bool = Field(
        default=False,
        description="Present (`true`) only on the `job.succeeded` of a job the relay had failed itself"
        " (`timeout`, `vendor_timeout`, `outcome_unknown`, `no_output`) before the vendor's success"
        " arrived: the one move out of a failed state. The relay stopped waiting, not the vendor, which"
        " bills for the result; so the late result is delivered, once. A vendor's own failure stays final.",
    )


class EventPayload(BaseModel):
    """The JSON body of every webhook the relay delivers (README, "The event contract"). Its ``id``
    is the ``webhook-id`` header and is derived from (job id, type, progress %), so a duplicate
    callback and a replay carry the same id."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^evt_[a-z2-7]{26}$", description="The event id (`evt_` + 26 base32 chars).")
    type: EventType
    timestamp: AwareDatetime = Field(description="When the event was made (UTC, milliseconds).")
    data: EventData


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a delivered event body, generated from :class:`EventPayload`,
    e.g. ``{"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Event", ...}``."""
    schema = EventPayload.model_json_schema(mode="serialization")
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": EVENT_SCHEMA_ID, **schema}


def event_schema_text() -> str:
    """:func:`event_json_schema` as the published file's text (sorted keys, two-space indent)."""
    return json.dumps(event_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m dispatch.event_schema [ROOT]``: write ``ROOT/schemas/event.schema.json`` (ROOT
    defaults to the current directory)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else ".") / EVENT_SCHEMA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(event_schema_text(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
