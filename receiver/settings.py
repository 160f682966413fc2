"""Relay configuration: environment variables with the ``RELAY_`` prefix, read once at start.

Every variable is listed in README.md ("Configuration"). Example::

    RELAY_DATABASE_URL=sqlite:///var/relay.db RELAY_PUBLIC_URL=https://relay.example.com upscale-relay serve
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatch.errors import ValidationFailed
from dispatch.retry import DEFAULT_SCHEDULE

MIN_API_TOKEN_LENGTH = 24
"""``RELAY_API_TOKEN`` shorter than this is refused: a short admin token can be guessed."""


class Settings(BaseSettings):
    """All relay settings. Durations are in seconds, sizes in bytes."""

    model_config = SettingsConfigDict(
        env_prefix="RELAY_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )
    _vendor_values: dict[str, str] = PrivateAttr(default_factory=dict)  # see model_post_init

    database_url: str = "sqlite:///relay.db"
    db_busy_timeout: float = Field(default=5.0, ge=0)  # a write waits this long for a lock, then 503
    db_pool_size: int = Field(default=8, ge=1, le=256)  # Postgres connections per process
    public_url: str = "http://127.0.0.1:8000"
    api_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    allow_private_targets: bool = False
    https_only_targets: bool = False

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    metrics_public: bool = False  # GET /metrics without the admin token
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)  # `worker` serves /metrics here
    retention_days: float = Field(default=30.0, gt=0)  # prune deletes older history (never undelivered work)
    # mirroring (receiver.mirroring): copy succeeded outputs to file:///PATH or s3://BUCKET/PREFIX (off
    # when unset); an S3-compatible endpoint; the per-file cap (bytes); mirror URL lifetime (seconds,
    # 7 days at most: S3's presign limit); the first retry delay (seconds, doubling, <= 600)
    mirror_url: str | None = None
    mirror_endpoint_url: str | None = None
    mirror_max_bytes: int = Field(default=100_000_000, ge=1)
    mirror_url_ttl: float = Field(default=604_800.0, gt=0, le=604_800)
    mirror_backoff: float = Field(default=5.0, gt=0)
    # issue 19: the whole copy of one output (connect to last byte stored) in seconds; output copies
    # at once per process (one slow host holds one slot, not the runner); outputs one job may have
    mirror_timeout: float = Field(default=120.0, gt=0)
    mirror_concurrency: int = Field(default=16, ge=1, le=1024)
    max_outputs_per_job: int = Field(default=16, ge=1, le=10_000)

    useapi_token: SecretStr | None = None
    useapi_base_url: str = "https://api.useapi.net"
    apiframe_api_key: SecretStr | None = None
    apiframe_base_url: str = "https://api.apiframe.ai"
    apixo_api_key: SecretStr | None = None
    apixo_base_url: str = "https://api.apixo.ai"
    artnex_api_key: SecretStr | None = None
    artnex_base_url: str = "https://api.artnex.ai"

    max_body_bytes: int = Field(default=1_048_576, ge=1024)  # vendor callbacks
    # admin API bodies: room for Artnex's 10 MB image as a base64 data URI (~13.4 MB)
    max_api_body_bytes: int = Field(default=16_777_216, ge=1024)
    max_headers: int = Field(default=100, ge=10)
    max_header_bytes: int = Field(default=32_768, ge=1024)
    vendor_timeout: float = Field(default=60.0, gt=0)
    # submits: how long POST /v1/jobs waits for the first attempt; how long 429s, 408s, unreachable
    # vendors (and 5xx for idempotent vendors, APIXO's 500/502/504) are retried; the first backoff
    # (doubling, jittered x1-1.5, <= 300 s; seed 003: "Retry with exponential backoff")
    submit_inline_wait: float = Field(default=10.0, ge=0)
    submit_retry_for: float = Field(default=3600.0, gt=0)
    submit_backoff: float = Field(default=10.0, gt=0)
    # new submits after a failure the vendor calls transient, and the wait before the first (doubling)
    resubmit_max: int = Field(default=2, ge=0)
    resubmit_backoff: float = Field(default=30.0, gt=0)
    max_inbound_per_job: int = Field(default=200, ge=1)  # stored vendor messages per job; beyond: 429
    source_max_jobs_per_hour: int = Field(
        default=1000, ge=1
    )  # jobs one source may create per hour; beyond: 429
    # the HTTP server (uvicorn): connections and tasks at once (beyond: 503), idle keep-alive seconds,
    # seconds a new connection gets to send its request headers before it is closed
    limit_concurrency: int = Field(default=4096, ge=16)
    keepalive_timeout: float = Field(default=5.0, gt=0)
    header_timeout: float = Field(default=10.0, gt=0)
    # issue 19: seconds from a request's start to its whole body (then 408); failed sign-ins and wrong
    # bearer tokens one client address may make in a window (seconds) before it gets 429
    body_timeout: float = Field(default=10.0, gt=0)
    auth_failure_limit: int = Field(default=10, ge=1)
    auth_failure_window: int = Field(default=60, ge=1, le=86_400)
    confirm_unsigned: bool = False
    poll_after: dict[str, float] = Field(default_factory=dict)
    poll_every: dict[str, float] = Field(default_factory=dict)
    job_timeout: float = Field(default=1800.0, gt=0)
    # after the relay failed a job at its deadline, its vendor is still asked for a late success: first
    # after late_poll_every seconds, slowing to hourly, until late_poll_for seconds after the deadline
    late_poll_for: float = Field(default=86_400.0, ge=0)
    late_poll_every: float = Field(default=300.0, gt=0)

    retry_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    delivery_connect_timeout: float = Field(default=5.0, gt=0)
    delivery_timeout: float = Field(default=15.0, gt=0)
    delivery_concurrency: int = Field(default=64, ge=1)
    delivery_per_subscriber: int = Field(default=8, ge=1)
    lease_seconds: float = Field(default=60.0, gt=0)
    shutdown_grace: float = Field(default=10.0, ge=0)  # in-flight attempts get this long after SIGTERM
    poll_interval: float = Field(default=0.2, gt=0)
    disable_after: float = Field(default=432_000.0, gt=0)  # 5 days failing without a success
    secret_overlap: float = Field(default=86_400.0, ge=0)  # old secret keeps signing this long after rotation

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")
        return value.replace("postgres://", "postgresql://", 1) if value.startswith("postgres://") else value

    @field_validator("api_token", mode="before")
    @classmethod
    def _api_token(cls, value: object) -> object:
        """An empty ``RELAY_API_TOKEN=`` is unset (``serve`` generates one and prints it); a set one
        must be at least :data:`MIN_API_TOKEN_LENGTH` characters (the token is never echoed)."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or text == "":
            return None
        if isinstance(text, str) and len(text) < MIN_API_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_API_TOKEN_LENGTH} characters, got {len(text)} (make one with:"
                " python -c 'import secrets; print(secrets.token_urlsafe(32))'), or unset it to have"
                " serve generate one"
            )
        return value

    @field_validator("mirror_url")
    @classmethod
    def _mirror_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if value.startswith("file:///") and len(value) > len("file:///"):
            return value.rstrip("/")
        if value.startswith("s3://") and value.removeprefix("s3://").split("/", 1)[0]:
            return value.rstrip("/")
        raise ValueError(
            "must be file:///ABSOLUTE/PATH or s3://BUCKET[/PREFIX] (for example s3://relay/mirrors)"
        )

    @field_validator("mirror_endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (an S3-compatible endpoint)")
        return value.rstrip("/") if value else None

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) > 50 or any(not 0 <= v <= 7 * 86400 for v in value):
            raise ValueError(f"must be at most 50 delays, each from 0 to 604800 seconds; {SCHEDULE_EXAMPLE}")
        return value

    @field_validator("poll_after", "poll_every")
    @classmethod
    def _per_vendor(cls, value: dict[str, float]) -> dict[str, float]:
        from receiver.vendors import polled_vendors  # the adapters say which vendors are polled

        known = polled_vendors()
        for vendor, seconds in value.items():
            if vendor not in known:
                raise ValueError(f"unknown vendor {vendor!r}; polled vendors: {', '.join(known)}")
            if not 0 < seconds <= 86400:
                raise ValueError(f"{vendor}: must be more than 0 and at most 86400 seconds")
        return value

    @property
    def is_postgres(self) -> bool:
        """True when ``database_url`` names a Postgres database."""
        return self.database_url.startswith("postgresql://")

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file named by ``database_url`` (``sqlite:///relay.db`` → ``relay.db``)."""
        return Path(self.database_url.removeprefix("sqlite:///"))

    def model_post_init(self, context: object, /) -> None:
        """Read the settings a vendor adapter names that are not fields here (a vendor added as one
        module, README "Adding a vendor"): ``RELAY_<SETTING>`` from the environment, else ``.env``."""
        del context
        from receiver.vendors import ADAPTERS  # the adapters import settings' neighbours, not settings

        declared = adapter_settings(ADAPTERS.values()) - set(type(self).model_fields)
        if not declared:
            return
        dotenv = {k.upper(): v for k, v in dotenv_values(".env").items() if v is not None}
        for setting in declared:
            name = f"RELAY_{setting.upper()}"
            value = os.environ.get(name, dotenv.get(name))
            if value is not None:
                self._vendor_values[setting] = value

    def vendor_base_url(self, setting: str) -> str:
        """The base URL setting named ``setting`` (``"apixo_base_url"``), without a trailing slash.

        A setting that is not a field here comes from ``RELAY_<SETTING>``, else the adapter's
        ``default_base_url``. Raises :class:`ValidationFailed` when neither is set."""
        if setting in type(self).model_fields:
            return str(getattr(self, setting)).rstrip("/")
        value = self._vendor_values.get(setting) or _default_base_url(setting)
        if not value:
            raise ValidationFailed(
                f"RELAY_{setting.upper()} is not set and the vendor has no default base URL"
            )
        return value.rstrip("/")

    def vendor_credential(self, setting: str) -> str | None:
        """The plain value of a vendor credential setting (``"apixo_api_key"``), or ``None``; a
        setting that is not a field here comes from ``RELAY_<SETTING>``."""
        if setting not in type(self).model_fields:
            return self._vendor_values.get(setting)
        value = getattr(self, setting)
        return value.get_secret_value() if value is not None else None


def adapter_settings(adapters: Iterable[object]) -> set[str]:
    """The settings vendor adapters name (``{"apixo_api_key", "apixo_base_url", ...}``)."""
    names: set[object] = set()
    for adapter in adapters:
        names.update(
            (getattr(adapter, "credential_setting", None), getattr(adapter, "base_url_setting", None))
        )
    names.discard(None)
    return {str(name) for name in names}


def _default_base_url(setting: str) -> str | None:
    from receiver.vendors import ADAPTERS

    for adapter in ADAPTERS.values():
        if adapter.base_url_setting == setting:
            default: str | None = adapter.default_base_url
            return default
    return None


SCHEDULE_EXAMPLE = "for example RELAY_RETRY_SCHEDULE=[5, 300, 1800] (seconds after each failed attempt)"
JSON_EXAMPLES = {
    "retry_schedule": SCHEDULE_EXAMPLE,
    "poll_after": 'for example RELAY_POLL_AFTER={"apixo": 90}',
    "poll_every": 'for example RELAY_POLL_EVERY={"apixo": 10}',
}
TEST_PREFIX = "RELAY_TEST_"  # the test suite's own switches (RELAY_TEST_DATABASE), not relay settings


def known_variables() -> frozenset[str]:
    """Every ``RELAY_*`` variable the relay reads, e.g. ``RELAY_DATABASE_URL``, including those the
    vendor adapters name (``RELAY_<VENDOR>_API_KEY`` of a vendor added as one module)."""
    from receiver.vendors import ADAPTERS

    names = set(Settings.model_fields) | adapter_settings(ADAPTERS.values())
    return frozenset(f"RELAY_{name.upper()}" for name in names)


def unknown_variables(names: Iterable[str]) -> list[str]:
    """One message per ``RELAY_*`` name the relay does not read, with the closest known name, e.g.
    ``"RELAY_APIXO_APIKEY is not a setting (did you mean RELAY_APIXO_API_KEY?)"``."""
    known = known_variables()
    problems = []
    for name in sorted(set(names)):
        upper = name.upper()
        if not upper.startswith("RELAY_") or upper in known or upper.startswith(TEST_PREFIX):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else " (see README.md, Configuration)"
        problems.append(f"{name} is not a setting{hint}")
    return problems


def load_settings(*, flags: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from the environment and a ``.env`` file in the working directory, with keyword
    overrides (CLI flags, tests); ``flags`` names the CLI flag each override came from
    (``{"database_url": "--database"}``), so an error names what the user typed.

    Raises :class:`ValidationFailed` naming each bad variable (or flag), e.g.
    ``RELAY_PUBLIC_URL: must start with http:// or https://``, and for a ``RELAY_*`` variable the
    relay does not know (a typo would otherwise be silently ignored):
    ``RELAY_APIXO_APIKEY is not a setting (did you mean RELAY_APIXO_API_KEY?)``.
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    names = list(os.environ)
    if Path(".env").is_file():
        names += [k for k in dotenv_values(".env") if k]
    unknown = unknown_variables(names)
    if unknown:
        raise ValidationFailed("invalid configuration: " + "; ".join(unknown), details=unknown)
    flags = flags or {}

    def source(field: str) -> str:
        return flags[field] if field in flags and field in overrides else f"RELAY_{field.upper()}"

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:  # a list or object variable that is not JSON
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        example = JSON_EXAMPLES.get(field, "")
        hint = f" ({example})" if example else ""
        raise ValidationFailed(f"invalid configuration: {source(field)}: must be JSON{hint}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = "_".join(str(p) for p in err["loc"][:1])
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{source(field)}: {message}")
        raise ValidationFailed("invalid configuration: " + "; ".join(problems), details=problems) from None
