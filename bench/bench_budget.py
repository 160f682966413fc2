"""Where one callback's CPU goes: the relay's ingest path taken apart, in one process, no network.

Issue 12 asks the relay to take unique callbacks at half the bare endpoint's rate. This script says
what that leaves for each part of the relay's work, measured on this machine in one run:

* ``bare app``: the bare endpoint (``apps.py bare``: read, parse JSON, answer) called as an ASGI app
  directly, N times, 32 at a time: its CPU per request without uvicorn, HTTP or sockets.
* ``relay app``: the relay (``create_app``, a fresh SQLite file, one APIXO source, one subscriber,
  the real group-commit writer thread) called the same way with N unique APIXO success callbacks:
  each one authenticated, parsed, logged, counted and committed (inbound record, job, event,
  delivery) before its 200.
* ``store verb``: the transaction alone, ``SQLiteStore.record_source_message`` for N unique parsed
  callbacks, 32 per transaction (the writer's batches under ``wrk -c32``), on this thread; and,
  inside it, the time SQLite itself spent in its statements (``execute`` calls timed one by one:
  C code that runs without the GIL).

Per callback it prints each part's CPU (user + system, microseconds) and the relay's request side
(relay app minus store verb: routing, token lookup, vendor parsing, redaction, logging, metrics,
the hand-off to the writer thread). The HTTP server's own share is what ``bench_ingest_wrk.py``
prints as the bare endpoint's CPU per request, minus the bare app here.

    python bench/bench_budget.py --callbacks 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps import bare_app
from cryptography.fernet import Fernet

from dispatch.secretbox import SecretBox
from dispatch.store.records import Attempt, RawMessage
from dispatch.store.schema import migrate
from dispatch.store.sqlite import SQLiteStore
from receiver.vendors import ADAPTERS

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "receiver/fakes/payloads/apixo/callback_success.json"
CONCURRENCY = 32
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def bodies(n: int, prefix: str) -> list[bytes]:
    """``n`` APIXO success callbacks, each with its own ``taskId`` (``task_<prefix>n<i>``)."""
    body = json.loads(PAYLOAD.read_text())
    out = []
    for i in range(n):
        body["data"]["taskId"] = f"task_{prefix}n{i}"
        out.append(json.dumps(body).encode())
    return out


def cpu() -> float:
    """This process's CPU time so far (user + system, seconds), all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def post_all(app: App, path: str, payloads: list[bytes], state: dict[str, Any]) -> float:
    """POST every payload to ``app`` at ``path`` as ASGI calls, :data:`CONCURRENCY` at a time;
    returns the CPU seconds it took. Raises ``RuntimeError`` on a non-200 answer."""

    async def one(body: bytes) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "state": dict(state),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"{path} answered {sent[0]['status']}: {sent[1:]}")

    async def lane(start: int) -> None:
        for i in range(start, len(payloads), CONCURRENCY):
            await one(payloads[i])

    before = cpu()
    await asyncio.gather(*(lane(k) for k in range(CONCURRENCY)))
    return cpu() - before


async def bare_cpu(n: int) -> float:
    """CPU seconds per request of the bare app."""
    app = bare_app()
    await post_all(app, "/warm", bodies(min(n, 1000), "warm"), {})
    return await post_all(app, "/bench", bodies(n, "bare"), {}) / n


async def relay_cpu(n: int, tmp: Path) -> float:
    """CPU seconds per callback of the relay app on a fresh SQLite file in ``tmp``."""
    os.environ.update(
        {
            "RELAY_DATABASE_URL": f"sqlite:///{tmp / 'relay.db'}",
            "RELAY_SECRET_KEY": Fernet.generate_key().decode(),
            "RELAY_API_TOKEN": "bench-token-0123456789abcdefg",
            "RELAY_PUBLIC_URL": "http://127.0.0.1:8000",
            "RELAY_ALLOW_PRIVATE_TARGETS": "true",
            "RELAY_APIXO_API_KEY": "bench-apixo-key",
            "RELAY_SOURCE_MAX_JOBS_PER_HOUR": "100000000",
        }
    )
    from receiver.app import create_app
    from receiver.logs import configure_logging
    from receiver.settings import load_settings
    from receiver.tokens import hash_token

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)  # the log lines serve writes, to stderr
    app = create_app(settings, run_worker=False)
    state: dict[str, Any] = {}
    started = asyncio.Event()
    stopping = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not started.is_set():
            return {"type": "lifespan.startup"}
        await stopping.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"].endswith(".failed"):
            raise RuntimeError(message.get("message"))

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}, receive, send)
    )
    await asyncio.wait_for(started.wait(), 30)
    store = state["resources"].store
    await store.create_subscriber("http://127.0.0.1:9/hooks/bench")
    token = "bench-source-token-0123456789"
    await store.create_source("apixo", token_hash=hash_token(token), description="bench")
    path = f"/v1/callbacks/apixo/{token}"
    await post_all(app, path, bodies(min(n, 1000), "warm"), state)
    seconds = await post_all(app, path, bodies(n, "relay"), state)
    stopping.set()
    await lifespan
    return seconds / n


class TimedConnection(sqlite3.Connection):
    """A connection that adds up the wall time of its ``execute`` calls (SQLite's own work: the
    sqlite3 module releases the GIL around it)."""

    spent = 0.0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        start = time.perf_counter()
        try:
            return super().execute(sql, parameters)
        finally:
            TimedConnection.spent += time.perf_counter() - start


def timed_store(path: Path) -> SQLiteStore:
    """A store on ``path`` whose connection is a :class:`TimedConnection` (the pragmas of
    ``SQLiteStore.open``)."""
    conn = sqlite3.connect(path, isolation_level=None, factory=TimedConnection)
    conn.row_factory = sqlite3.Row
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
        conn.execute(f"PRAGMA {pragma}")
    migrate(conn)
    return SQLiteStore(conn, SecretBox(Fernet.generate_key().decode()))


def record_all(store: SQLiteStore, payloads: list[bytes]) -> None:
    """Record ``payloads`` (APIXO callbacks) as one source's callbacks, 32 per transaction."""
    source = store.create_source("apixo", token_hash=os.urandom(32).hex(), description="bench")
    adapter = ADAPTERS["apixo"]
    work = []
    for body in payloads:
        update = adapter.parse_callback(body, {})
        assert update.vendor_job_id is not None
        raw = RawMessage({"content-type": "application/json"}, body, "127.0.0.1:1")
        work.append((update.vendor_job_id, raw, update))
    for k in range(0, len(work), CONCURRENCY):
        with store.transaction():
            for vendor_job_id, raw, update in work[k : k + CONCURRENCY]:
                store.record_source_message(
                    source, vendor_job_id, raw, update, poll_at=None, deadline_at=None, max_callbacks=100
                )


def measured(action: Callable[[], None]) -> tuple[float, float]:
    """``(CPU seconds, SQLite seconds)`` that ``action()`` took."""
    TimedConnection.spent = 0.0
    before = cpu()
    action()
    return cpu() - before, TimedConnection.spent


def store_cpu(n: int, tmp: Path) -> tuple[float, float]:
    """``(CPU seconds, SQLite seconds)`` per callback of the store verb alone, batches of 32."""
    store = timed_store(tmp / "store.db")
    store.create_subscriber("http://127.0.0.1:9/hooks/bench")
    record_all(store, bodies(1000, "warm"))
    payloads = bodies(n, "store")
    spent, sqlite_seconds = measured(lambda: record_all(store, payloads))
    store.close()
    return spent / n, sqlite_seconds / n


def delivery_cpu(n: int, tmp: Path, subscribers: int = 8) -> tuple[float, float]:
    """``(CPU seconds, SQLite seconds)`` per delivery of the worker's store work alone: claims of 64
    (``per_subscriber`` 8) and each claim's 64 attempts finished in one ``finish_attempts``, as the
    fan-out bench's worker does, over ``n`` seeded deliveries to ``subscribers`` subscribers."""
    store = timed_store(tmp / "deliveries.db")
    for k in range(subscribers):
        store.create_subscriber(f"http://127.0.0.1:9/hooks/{k}")
    record_all(store, bodies(max(1, n // subscribers), "fanout"))

    def drain() -> None:
        while True:
            now = int(time.time() * 1000)
            work = store.claim_due_deliveries("bench", now=now, limit=64, lease_ms=30_000, per_subscriber=8)
            if not work:
                return
            headers = {"content-type": "application/json"}
            done = [
                (w.delivery_id, Attempt(w.attempts + 1, now, 2, 200, headers, "", None), None) for w in work
            ]
            store.finish_attempts("bench", done)

    spent, sqlite_seconds = measured(drain)
    store.close()
    total = max(1, n // subscribers) * subscribers
    return spent / total, sqlite_seconds / total


@dataclass
class Budget:
    """One run's figures, microseconds of CPU (user + system) per callback or per delivery."""

    bare_us: float
    relay_us: float
    store_us: float
    sqlite_us: float
    delivery_us: float = 0.0  # the worker's store work per delivery (claim + finish)
    delivery_sqlite_us: float = 0.0

    @property
    def request_side_us(self) -> float:
        return self.relay_us - self.store_us


def run(n: int) -> Budget:
    """Measure every part with ``n`` callbacks (or deliveries) each, in a temporary directory that
    is removed afterwards; e.g. ``run(10000).relay_us`` is about 320 on the 2-core dev machine."""
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        tmp_path = Path(tmp)
        bare = asyncio.run(bare_cpu(n))
        relay = asyncio.run(relay_cpu(n, tmp_path))
        store, sqlite_part = store_cpu(n, tmp_path)
        delivery, delivery_sqlite = delivery_cpu(n, tmp_path)
    return Budget(
        bare * 1e6, relay * 1e6, store * 1e6, sqlite_part * 1e6, delivery * 1e6, delivery_sqlite * 1e6
    )


def quiet_run(n: int) -> Budget:
    """:func:`run`, the relay's log lines (one INFO per callback) going to a temporary file, as a
    server's would, not to this terminal."""
    with tempfile.TemporaryFile("w") as sink:
        stderr, sys.stderr = sys.stderr, sink
        try:
            return run(n)
        finally:
            sys.stderr = stderr


def report(b: Budget, n: int) -> None:
    """Print ``b`` as the lines bench/README.md shows (``n``: callbacks per part)."""
    print(f"budget: CPU per callback, in-process ASGI calls ({n} unique APIXO callbacks, 32 at a time)")
    print(f"bare app (no HTTP server)        {b.bare_us:6.0f} us")
    print(f"relay app (no HTTP server)       {b.relay_us:6.0f} us")
    print(
        f"  store verb, batches of 32      {b.store_us:6.0f} us   of which SQLite statements {b.sqlite_us:.0f} us"
    )
    print(
        f"  request side (app - verb)      {b.request_side_us:6.0f} us"
        "   routing, auth, parsing, logs, metrics, hand-off"
    )
    print(
        f"worker store work per delivery   {b.delivery_us:6.0f} us   claim + finish, of which SQLite statements"
        f" {b.delivery_sqlite_us:.0f} us"
    )


def half_rate(b: Budget, bare_rate: float, bare_server_us: float) -> list[str]:
    """What issue 12's 0.5x target asks of one relay process, from this budget and the bare server's
    wrk run (``bare_rate`` req/s at ``bare_server_us`` CPU per request). Everything but SQLite's own
    statements holds the GIL, so it must fit one core: at 0.5x, ``2e6 / bare_rate`` us per callback."""
    target = bare_rate / 2
    allowed = 1e6 / target
    http = max(0.0, bare_server_us - b.bare_us)  # uvicorn, httptools and the sockets, as bare pays them
    python = http + b.relay_us - b.sqlite_us
    return [
        f"0.5x bare = {target:.0f} callbacks/s: each may hold the relay's one Python thread {allowed:.0f} us;",
        f"  it holds it {python:.0f} us: HTTP server {http:.0f} + relay app {b.relay_us:.0f}"
        f" - SQLite statements {b.sqlite_us:.0f} (those run beside it, on the other core, at best)",
    ]


def fanout_target(b: Budget, raw_cpu_us: float) -> list[str]:
    """What the 0.7x fan-out target asks of one worker process, given the raw aiohttp loop's CPU per
    delivery (``bench_fanout``): the same sends, signed the same way, plus the store work."""
    allowed = raw_cpu_us / 0.7
    return [
        f"0.7x the raw loop: each delivery may take {allowed:.0f} us of the worker's CPU; the raw loop's"
        f" send takes {raw_cpu_us:.0f} and the store work {b.delivery_us:.0f} (SQLite {b.delivery_sqlite_us:.0f}),"
        f" {raw_cpu_us + b.delivery_us:.0f} before any bookkeeping",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--callbacks", type=int, default=10000, help="measured callbacks per part")
    args = parser.parse_args(argv)
    report(quiet_run(args.callbacks), args.callbacks)


if __name__ == "__main__":
    main()
