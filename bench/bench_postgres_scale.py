"""Horizontal scale on Postgres: callbacks/s into 1 and into 2 ``serve --no-worker`` web processes
sharing one Postgres database, measured in the same run.

Each round gets the same setup: a fresh database on ``--server`` (dropped afterwards), ``upscale-relay
migrate``, the web processes (``RELAY_DB_POOL_SIZE`` each, no worker: this measures the write path
only), one subscriber (so every event fans out to a delivery row) and one APIXO source. The load
generator (aiohttp, ``--concurrency`` requests in flight, spread over the web processes in turn) sends
``--warmup`` unmeasured and then ``--callbacks`` measured APIXO success callbacks to the source URL,
each with its own ``taskId``, so every callback creates a job and a ``job.succeeded`` event. After
each round every taskId that got a 200 is looked up: each must have left its job in the store.

    python bench/bench_postgres_scale.py --callbacks 3000 --concurrency 32

Needs a Postgres server (default ``postgresql://postgres@127.0.0.1:5432/postgres``: the URL of an
existing database to connect to for ``CREATE DATABASE``). Prints a table and the 2/1 ratio; nothing
is asserted except that no 200 was lost. The load generator shares the machine's cores with the
relay and Postgres, so on a small machine the ratio says more about CPU than about the design.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import psycopg
from _common import percentile, running_process

from receiver.fakes.serving import free_port

RELAY_BIN = Path(sys.executable).parent / "upscale-relay"
API_TOKEN = "bench-admin-token-0123456789"
SECRET_KEY = "fTmvyZxFqbkZs6nb7ckoSPJzE6kMz2rKgoq5iqt5H3g="  # a fixed Fernet key shared by the processes
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new Postgres database on ``server``; yields its URL, drops it afterwards."""
    name = f"relay_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _callback_body(task_id: str) -> bytes:
    result = json.dumps({"resultUrls": [f"https://cdn.apixo.ai/output/{task_id}/upscaled-4k.jpg"]})
    data = {
        "taskId": task_id,
        "state": "success",
        "resultJson": result,
        "costTime": 12500,
        "createTime": 1704067200000,
        "completeTime": 1704067212500,
    }
    return json.dumps({"code": 200, "message": "success", "data": data}).encode()


async def _load(
    urls: list[str], task_ids: list[str], concurrency: int
) -> tuple[float, list[float], Counter[int], list[str]]:
    """POST one callback per task id, round-robin over ``urls``, ``concurrency`` in flight; returns
    (seconds, latencies in s, status counts, the task ids answered 200)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    accepted: list[str] = []
    work = iter(enumerate(task_ids))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender() -> None:
            for n, task_id in work:
                body = _callback_body(task_id)
                started = time.perf_counter()
                async with session.post(
                    urls[n % len(urls)], data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    statuses[response.status] += 1
                    if response.status == 200:
                        accepted.append(task_id)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, statuses, accepted


def _jobs_for(url: str, task_ids: list[str]) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT vendor_job_id FROM jobs WHERE vendor_job_id = ANY(%s)", (task_ids,)
        ).fetchall()
    return {row[0] for row in rows}


def run_round(web: int, args: argparse.Namespace, tmp_path: Path) -> float:
    """One measured round with ``web`` web processes on a fresh database; prints its row, returns
    callbacks/s."""
    with fresh_database(args.server) as url, contextlib.ExitStack() as stack:
        ports = [free_port() for _ in range(web)]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_") and k != "PORT"}
        env.update(
            {
                "RELAY_DATABASE_URL": url,
                "RELAY_SECRET_KEY": SECRET_KEY,
                "RELAY_API_TOKEN": API_TOKEN,
                "RELAY_PUBLIC_URL": bases[0],
                "RELAY_ALLOW_PRIVATE_TARGETS": "true",
                "RELAY_APIXO_API_KEY": "bench-apixo-key",
                "RELAY_SOURCE_MAX_JOBS_PER_HOUR": str(10 * (args.callbacks + args.warmup)),
                "RELAY_DB_POOL_SIZE": str(args.pool_size),
            }
        )
        subprocess.run([str(RELAY_BIN), "migrate"], env=env, check=True, capture_output=True, timeout=60)
        for i, (port, base) in enumerate(zip(ports, bases, strict=True)):
            cmd = [str(RELAY_BIN), "serve", "--no-worker", "--port", str(port)]
            log = tmp_path / f"web{web}-{i}.log"
            stack.enter_context(running_process(cmd, log, f"{base}/readyz", env=env))
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        hook = {"url": "http://127.0.0.1:9/hooks/bench"}  # never called: no worker runs
        httpx.post(f"{bases[0]}/v1/subscribers", json=hook, headers=auth).raise_for_status()
        source = httpx.post(f"{bases[0]}/v1/sources", json={"vendor": "apixo"}, headers=auth)
        source.raise_for_status()
        path = str(source.json()["callback_url"]).removeprefix(bases[0])
        urls = [base + path for base in bases]

        warm = [f"task_warm_{web}_{n}" for n in range(args.warmup)]
        asyncio.run(_load(urls, warm, args.concurrency))
        task_ids = [f"task_bench_{web}_{n}" for n in range(args.callbacks)]
        elapsed, latencies, statuses, accepted = asyncio.run(_load(urls, task_ids, args.concurrency))
        stored = _jobs_for(url, accepted)
        lost = len(accepted) - len(stored)
        rate = float(args.callbacks) / elapsed
        print(
            f"{web:>3} web   {args.callbacks:>9} {elapsed:8.2f} s {rate:11.0f}"
            f"   p50 {percentile(latencies, 0.5) * 1000:6.1f} ms  p99 {percentile(latencies, 0.99) * 1000:6.1f} ms"
            f"   statuses {dict(statuses)}   200s with their job stored: {len(stored)}/{len(accepted)}"
            + ("" if lost == 0 else f"  LOST {lost}")
        )
        if lost:
            raise SystemExit(f"{lost} callbacks answered 200 left no job in the store")
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--callbacks", type=int, default=3000, help="measured callbacks per round")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured callbacks per round first")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=8, help="RELAY_DB_POOL_SIZE per web process")
    parser.add_argument("--server", default=os.environ.get("RELAY_TEST_PG_SERVER", DEFAULT_SERVER))
    args = parser.parse_args(argv)

    print(
        f"postgres scale: {args.callbacks} APIXO source callbacks (unique taskIds) per round at concurrency"
        f" {args.concurrency}, after {args.warmup} warm-up; {os.cpu_count()} cores"
    )
    print(f"{'web':>7} {'callbacks':>9} {'seconds':>10} {'callbacks/s':>11}   latency, statuses, store check")
    with tempfile.TemporaryDirectory(prefix="bench-pg-scale-") as tmp:
        rates = {web: run_round(web, args, Path(tmp)) for web in (1, 2)}
    print(f"ratio 2 web / 1 web: {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
