"""Callback ingest: callbacks/s into the relay vs a bare Starlette endpoint, measured in the same run.

Both servers run as their own processes on loopback, under the same uvicorn settings as
``upscale-relay serve`` (``log_level="info"``, access log on); this script is only the load
generator (aiohttp, ``--concurrency`` requests in flight). The relay gets APIXO success callbacks
(about 400 bytes of JSON) on the callback URLs of ``--jobs`` real jobs, so after each job's first callback
the rest are duplicates, each still stored as an inbound record in its own group-committed
transaction. Prints requests/s, latency percentiles, the relay/bare ratio and the stored verdicts.

    python bench/bench_ingest.py --requests 5000 --concurrency 64

Nothing is asserted; the numbers are for reading (DESIGN.md, "Performance stance").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from _common import percentile, running_process

from receiver.database import open_store
from receiver.fakes.serving import free_port
from receiver.settings import load_settings
from receiver.tokens import new_token

RELAY_BIN = Path(sys.executable).parent / "upscale-relay"
API_TOKEN = "bench-admin-token-0123456789"


# servers ----------------------------------------------------------------------------------------
def _bare_server(port: int) -> None:
    """A bare Starlette endpoint: read the body, parse it, answer a small JSON 200."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def callback(request: Request) -> JSONResponse:
        body = await request.body()
        json.loads(body)
        return JSONResponse({"ok": True, "verdict": "bare"})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/callbacks/{vendor}/{token}", callback, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", h11_max_incomplete_event_size=65536)


# load -------------------------------------------------------------------------------------------
async def _load(
    targets: list[tuple[str, bytes]], requests: int, concurrency: int
) -> tuple[float, list[float], Counter[int]]:
    """POST ``requests`` bodies round-robin over ``targets`` with ``concurrency`` in flight; returns
    (seconds, latencies in s, status counts)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for n in counter:
                url, body = targets[n % len(targets)]
                started = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    statuses[r.status] += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, statuses


def _report(
    label: str, requests: int, elapsed: float, latencies: list[float], statuses: Counter[int]
) -> float:
    rate = requests / elapsed
    print(
        f"{label:<16} {requests} req in {elapsed:6.2f} s = {rate:8.0f} req/s"
        f"   p50 {percentile(latencies, 0.5) * 1000:6.1f} ms  p99 {percentile(latencies, 0.99) * 1000:6.1f} ms"
        f"   statuses {dict(statuses)}"
    )
    return rate


def _callback_body(task_id: str) -> bytes:
    result = json.dumps({"resultUrls": [f"https://cdn.apixo.ai/output/{task_id}/upscaled-4k.jpg"]})
    return json.dumps(
        {
            "code": 200,
            "message": "success",
            "data": {
                "taskId": task_id,
                "state": "success",
                "resultJson": result,
                "costTime": 12500,
                "createTime": 1704067200000,
                "completeTime": 1704067212500,
                "model": "image-upscaler",
                "param": {"image_urls": ["https://images.example.com/source.jpg"], "resolution": "4k"},
            },
        }
    ).encode()


def _seed_jobs(db: Path, jobs: int) -> list[tuple[str, bytes]]:
    """``jobs`` submitted APIXO jobs with callback tokens; returns (callback path, body) per job."""
    store = open_store(load_settings(database_url=f"sqlite:///{db}"))
    targets = []
    try:
        for n in range(jobs):
            token, token_hash = new_token()
            job = store.create_job(
                "apixo", {"input": {"image_urls": []}}, reference=f"bench-{n}", token_hash=token_hash
            )
            task_id = f"task_bench{n:05d}"
            store.mark_submitted(job.id, task_id)
            targets.append((f"/v1/callbacks/apixo/{token}", _callback_body(task_id)))
    finally:
        store.close()
    return targets


def _verdicts(db: Path, limit: int) -> Counter[str]:
    store = open_store(load_settings(database_url=f"sqlite:///{db}"))
    try:
        return Counter(i.verdict for i in store.list_inbound(limit=limit))
    finally:
        store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per server")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured requests per server first")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=16, help="distinct jobs whose callback URLs are hit")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server:
        _bare_server(args.bare_server)
        return

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        db = tmp_path / "relay.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        env.update({"RELAY_DATABASE_URL": f"sqlite:///{db}", "RELAY_API_TOKEN": API_TOKEN})
        targets = _seed_jobs(db, args.jobs)
        bare_port, relay_port = free_port(), free_port()
        bare = f"http://127.0.0.1:{bare_port}"
        relay = f"http://127.0.0.1:{relay_port}"

        print(
            f"ingest: {args.requests} POSTs per server ({len(targets[0][1])}-byte JSON) at concurrency"
            f" {args.concurrency}, after {args.warmup} warm-up; {args.jobs} relay jobs"
        )
        bare_cmd = [sys.executable, __file__, "--bare-server", str(bare_port)]
        with running_process(bare_cmd, tmp_path / "bare.log", f"{bare}/healthz", env=env):
            bare_targets = [(bare + path, body) for path, body in targets]
            asyncio.run(_load(bare_targets, args.warmup, args.concurrency))
            bare_rate = _report(
                "bare starlette",
                args.requests,
                *asyncio.run(_load(bare_targets, args.requests, args.concurrency)),
            )
        relay_cmd = [str(RELAY_BIN), "serve", "--port", str(relay_port)]
        with running_process(relay_cmd, tmp_path / "relay.log", f"{relay}/readyz", env=env):
            relay_targets = [(relay + path, body) for path, body in targets]
            asyncio.run(_load(relay_targets, args.warmup, args.concurrency))
            relay_rate = _report(
                "relay callbacks",
                args.requests,
                *asyncio.run(_load(relay_targets, args.requests, args.concurrency)),
            )
        verdicts = _verdicts(db, args.requests + args.warmup + 10)
        print(f"relay stored {sum(verdicts.values())} inbound records: {dict(verdicts)}")
        print(f"ratio relay/bare: {relay_rate / bare_rate:.2f}")


if __name__ == "__main__":
    main()
