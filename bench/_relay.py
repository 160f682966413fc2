"""What the issue-12 benchmarks share: a fresh database of either kind, the relay's environment, the
bench apps (``apps.py``) as processes, admin calls, and counting rows in the store afterwards."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx
import psycopg
from _common import running_process
from bench_postgres_scale import DEFAULT_SERVER, SECRET_KEY as SECRET_KEY, fresh_database

from receiver.fakes.serving import free_port

Kind = Literal["sqlite", "postgres"]
KINDS: tuple[Kind, ...] = ("sqlite", "postgres")
BENCH = Path(__file__).resolve().parent
RELAY_BIN = Path(sys.executable).parent / "upscale-relay"
API_TOKEN = "bench-admin-token-0123456789"
PG_SERVER = os.environ.get("RELAY_TEST_PG_SERVER", DEFAULT_SERVER)


@contextlib.contextmanager
def database(kind: Kind, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a new SQLite file in ``tmp_path``, or a new Postgres database on
    ``$RELAY_TEST_PG_SERVER`` (default 127.0.0.1:5432, user postgres), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'relay.db'}"
        return
    with fresh_database(PG_SERVER) as url:
        yield url


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_SERVER, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def relay_env(url: str, public_url: str, **extra: str) -> dict[str, str]:
    """The environment of a relay process on ``url``: no inherited ``RELAY_*``, an admin token, a fixed
    secret key (required on Postgres, shared by every process), loopback targets allowed, APIXO
    configured, no per-source job cap in reach; ``extra`` adds ``RELAY_<NAME>`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_") and k != "PORT"}
    env.update(
        {
            "RELAY_DATABASE_URL": url,
            "RELAY_SECRET_KEY": SECRET_KEY,
            "RELAY_API_TOKEN": API_TOKEN,
            "RELAY_PUBLIC_URL": public_url,
            "RELAY_ALLOW_PRIVATE_TARGETS": "true",
            "RELAY_APIXO_API_KEY": "bench-apixo-key",
            "RELAY_SOURCE_MAX_JOBS_PER_HOUR": "100000000",
        }
    )
    env.update({f"RELAY_{name.upper()}": value for name, value in extra.items()})
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run([str(RELAY_BIN), "migrate"], env=env, check=True, capture_output=True, timeout=120)


APP_PIDS: dict[str, int] = {}  # base URL of each running app_process -> its pid


@contextlib.contextmanager
def app_process(app: Literal["bare", "sink"], tmp_path: Path) -> Iterator[str]:
    """``python bench/apps.py APP`` on a free port; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    health = f"{base}/healthz" if app == "bare" else f"{base}/_stats"
    cmd = [sys.executable, str(BENCH / "apps.py"), app, "--port", str(port)]
    with running_process(cmd, tmp_path / f"{app}.log", health) as proc:
        APP_PIDS[base] = proc.pid
        yield base


@contextlib.contextmanager
def relay_process(
    env: dict[str, str], port: int, log: Path, *, worker: bool
) -> Iterator[subprocess.Popen[bytes]]:
    """``upscale-relay serve`` (``--no-worker`` unless ``worker``) on ``port``; yields the process."""
    cmd = [str(RELAY_BIN), "serve", "--port", str(port), *([] if worker else ["--no-worker"])]
    with running_process(cmd, log, f"http://127.0.0.1:{port}/readyz", env=env) as proc:
        yield proc


def add_subscriber_and_source(base: str, hook_url: str) -> str:
    """One subscriber at ``hook_url`` and one APIXO source; returns the source's callback URL."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as client:
        client.post("/v1/subscribers", json={"url": hook_url}).raise_for_status()
        source = client.post("/v1/sources", json={"vendor": "apixo"})
        source.raise_for_status()
        return str(source.json()["callback_url"])


def sink_stats(sink: str) -> dict[str, Any]:
    return dict(httpx.get(f"{sink}/_stats", timeout=30).json())


def scalar(url: str, sql: str, parameters: Sequence[Any] = ()) -> int:
    """The single integer one ``?``-parameterised query answers, on SQLite or Postgres."""
    if url.startswith("postgresql://"):
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(sql.replace("?", "%s"), tuple(parameters)).fetchone()
    else:
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as lite:
            row = lite.execute(sql, tuple(parameters)).fetchone()
    assert row is not None
    return int(row[0])


def stored_for_prefix(url: str, prefix: str) -> tuple[int, int, int]:
    """(jobs, events, deliveries) whose job's vendor id starts with ``prefix`` (letters only)."""
    like = (prefix + "%",)
    jobs = scalar(url, "SELECT COUNT(*) FROM jobs WHERE vendor_job_id LIKE ?", like)
    events = scalar(
        url, "SELECT COUNT(*) FROM events e JOIN jobs j ON e.job_id = j.id WHERE j.vendor_job_id LIKE ?", like
    )
    deliveries = scalar(
        url,
        "SELECT COUNT(*) FROM deliveries d JOIN events e ON d.event_id = e.id"
        " JOIN jobs j ON e.job_id = j.id WHERE j.vendor_job_id LIKE ?",
        like,
    )
    return jobs, events, deliveries
