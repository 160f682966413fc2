"""Delivery: deliveries/s from the Dispatcher to a local sink vs bare signed aiohttp POSTs, same run.

The sink is a Starlette app in its own process (access log off) answering 200 to
``POST /hooks/{name}``. First a bare aiohttp client signs (Standard Webhooks, as the relay does) and
POSTs the same event bodies at ``--concurrency`` in flight: the ceiling of the HTTP client. Then the
relay's own Dispatcher (store runner, claims with leases, signing, sending, one attempt record per
delivery) drains ``--events`` x ``--subscribers`` pending deliveries from a fresh SQLite file. Prints
both rates, latency percentiles of the bare client and the dispatcher/bare ratio.

    python bench/bench_delivery.py --events 1000 --subscribers 8

Nothing is asserted; the numbers are for reading (DESIGN.md, "Performance stance").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from _common import percentile, running_process

from dispatch.model import JobState, JobUpdate, Output
from dispatch.signing import delivery_headers
from dispatch.store.face import RunnerStore
from dispatch.store.records import RawMessage
from receiver.app import make_dispatcher, make_sender
from receiver.database import open_runner, open_store
from receiver.fakes.serving import free_port
from receiver.settings import Settings, load_settings


# sink -------------------------------------------------------------------------------------------
def _sink_server(port: int) -> None:
    """``POST /hooks/{name}`` → 200 ``{"ok":true}``; ``GET /_count`` → how many POSTs arrived."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    received = [0]

    async def hook(request: Request) -> Response:
        await request.body()
        received[0] += 1
        return Response(b'{"ok":true}', 200, media_type="application/json")

    async def count(request: Request) -> JSONResponse:
        return JSONResponse({"received": received[0]})

    app = Starlette(
        routes=[Route("/hooks/{name}", hook, methods=["POST"]), Route("/_count", count, methods=["GET"])]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _sink_count(sink: str) -> int:
    return int(httpx.get(f"{sink}/_count").json()["received"])


# work -------------------------------------------------------------------------------------------
def seed_deliveries(
    settings: Settings, sink: str, events: int, subscribers: int
) -> list[tuple[str, str, bytes, str]]:
    """Subscribers on the sink and ``events`` succeeded jobs, fanned out to every subscriber; returns
    (url, event id, body, secret) per delivery for the bare client."""
    store = open_store(settings)
    try:
        subs = [store.create_subscriber(f"{sink}/hooks/s{n}") for n in range(subscribers)]
        event_ids: list[str] = []
        with store.transaction():
            for n in range(events):
                job = store.create_job("apixo", {"input": {}}, reference=f"bench-{n}", token_hash=None)
                store.mark_submitted(job.id, f"task_bench{n:06d}")
                update = JobUpdate(
                    JobState.SUCCEEDED, "success", outputs=(Output("https://cdn.example.com/a.png"),)
                )
                event_ids.extend(
                    store.record_message(job.id, "callback", RawMessage({}, b"{}"), update).event_ids
                )
        bodies = {eid: store.get_event(eid).body.encode() for eid in event_ids}
    finally:
        store.close()
    return [(sub.url, eid, bodies[eid], secret) for eid in event_ids for sub, secret in subs]


async def bare_posts(
    work: list[tuple[str, str, bytes, str]], concurrency: int
) -> tuple[float, list[float], int]:
    """Sign and POST every item with ``concurrency`` in flight; returns (seconds, latencies, 2xx count)."""
    latencies: list[float] = []
    ok = 0
    items = iter(work)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal ok
            for url, eid, body, secret in items:
                started = time.perf_counter()
                headers = delivery_headers(
                    eid, body, (secret,), timestamp=int(time.time()), user_agent="bench/bare"
                )
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                    await resp.read()
                    ok += 200 <= resp.status < 300
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, ok


async def _dispatch(settings: Settings, expected: int) -> tuple[float, int]:
    """Run the relay's Dispatcher until nothing is due; returns (seconds, succeeded deliveries)."""
    runner = open_runner(settings)
    runner.start()
    store = RunnerStore(runner)
    try:
        async with make_sender(settings) as sender:
            dispatcher = make_dispatcher(settings, store, sender)
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(dispatcher.run(stop, grace=5))
            deadline = started + 300
            while time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
                if await store.next_due_at() is None:
                    break
            elapsed = time.perf_counter() - started
            stop.set()
            await task
        succeeded = len(await store.list_deliveries(status="succeeded", limit=expected + 1))
    finally:
        runner.stop()
    return elapsed, succeeded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=8, help="deliveries = events x subscribers")
    parser.add_argument("--concurrency", type=int, default=64, help="attempts in flight (both clients)")
    parser.add_argument("--per-subscriber", type=int, default=8, help="the dispatcher's per-subscriber cap")
    parser.add_argument("--sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        _sink_server(args.sink)
        return

    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        tmp_path = Path(tmp)
        port = free_port()
        sink = f"http://127.0.0.1:{port}"
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path / 'relay.db'}",
            allow_private_targets=True,
            delivery_concurrency=args.concurrency,
            delivery_per_subscriber=args.per_subscriber,
            poll_interval=0.05,
        )
        with running_process(
            [sys.executable, __file__, "--sink", str(port)], tmp_path / "sink.log", f"{sink}/_count"
        ):
            work = seed_deliveries(settings, sink, args.events, args.subscribers)
            total = len(work)
            print(
                f"delivery: {total} deliveries ({args.events} events x {args.subscribers} subscribers,"
                f" {len(work[0][2])}-byte bodies) to a local sink, concurrency {args.concurrency},"
                f" per subscriber {args.per_subscriber}"
            )
            asyncio.run(bare_posts(work[: min(300, total)], args.concurrency))  # warm-up, not measured
            bare_s, latencies, bare_ok = asyncio.run(bare_posts(work, args.concurrency))
            bare_rate = total / bare_s
            print(
                f"bare aiohttp     {total} signed POSTs in {bare_s:6.2f} s = {bare_rate:7.0f} /s"
                f"   p50 {percentile(latencies, 0.5) * 1000:5.1f} ms  p99 {percentile(latencies, 0.99) * 1000:5.1f} ms"
                f"   2xx {bare_ok}"
            )
            before = _sink_count(sink)
            disp_s, succeeded = asyncio.run(_dispatch(settings, total))
            disp_rate = succeeded / disp_s
            print(
                f"dispatcher       {succeeded} deliveries  in {disp_s:6.2f} s = {disp_rate:7.0f} /s"
                f"   sink received {_sink_count(sink) - before}"
            )
            print(f"ratio dispatcher/bare: {disp_rate / bare_rate:.2f}")


if __name__ == "__main__":
    main()
