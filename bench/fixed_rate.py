"""An open-loop, fixed-rate load generator (wrk cannot hold a rate, and Debian has no wrk2).

Request ``i`` is due at ``start + i / rate`` and is sent then whether or not earlier ones have been
answered; its latency runs from that due time, not from when it was actually sent, so a client (or
server) that falls behind shows up in the percentiles instead of being hidden (no coordinated
omission). Every body is a new APIXO success callback (taskId ``task_<prefix>n<i>``), POSTed to
``--url`` over at most ``--connections`` connections (requests beyond that wait for one, on the clock).
After ``--seconds`` of sending, answers get ``--drain`` more seconds; requests still unanswered then
are cancelled and counted as ``unfinished`` (their latency counts as infinite in the percentiles).

Limitation: this is Python (aiohttp on one event loop) sharing the machine with the servers; it
reports how late it started requests (``send_lag_p99_ms``). If that lag is large, the client, not the
server, set the latency: compare with the same rate against the bare endpoint.

    python bench/fixed_rate.py --url http://127.0.0.1:8000/v1/callbacks/... --rate 500 --seconds 10

Prints one JSON line with the counts and latencies (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter

import aiohttp


def callback_body(task_id: str) -> bytes:
    """An APIXO success callback shaped like ``receiver/fakes/payloads/apixo/callback_success.json``."""
    result = json.dumps({"resultUrls": [f"https://cdn.apixo.ai/output/{task_id}.jpg"]}, separators=(",", ":"))
    data = {
        "taskId": task_id,
        "state": "success",
        "resultJson": result,
        "costTime": 12500,
        "createTime": 1704067200000,
        "completeTime": 1704067212500,
    }
    return json.dumps({"code": 200, "message": "success", "data": data}, separators=(",", ":")).encode()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


async def run(
    url: str, rate: float, seconds: float, prefix: str, connections: int, drain: float
) -> dict[str, object]:
    total = max(1, int(rate * seconds))
    latencies: list[float] = []
    lags: list[float] = []
    statuses: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(n: int, due: float) -> None:
            lags.append(time.perf_counter() - due)
            body = callback_body(f"task_{prefix}n{n}")
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    statuses[str(r.status)] += 1
            except aiohttp.ClientError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - due)

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.05
        for n in range(total):
            due = start + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))  # yields even when behind
            tasks.append(asyncio.create_task(send(n, due)))
        sent_in = time.perf_counter() - start
        _, pending = await asyncio.wait(tasks, timeout=drain)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    everything = latencies + [math.inf] * len(pending)
    return {
        "target_rate": rate,
        "scheduled": total,
        "schedule_seconds": sent_in,
        "answered": len(latencies),
        "unfinished": len(pending),
        "statuses": dict(statuses),
        "p50_ms": _quantile(everything, 0.5) * 1000,
        "p99_ms": _quantile(everything, 0.99) * 1000,
        "max_answered_ms": max(latencies, default=math.nan) * 1000,
        "send_lag_p99_ms": _quantile(lags, 0.99) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--prefix", default="fixed", help="taskId prefix (letters only)")
    parser.add_argument("--connections", type=int, default=512)
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait for answers at the end")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.url, args.rate, args.seconds, args.prefix, args.connections, args.drain))
    print(json.dumps(result))  # inf/nan become Infinity/NaN, which json.loads reads back


if __name__ == "__main__":
    main()
