"""Fan-out on the real path: ``upscale-relay worker`` draining stored deliveries vs raw signed POSTs.

A fresh database (SQLite or Postgres) gets ``--events`` succeeded jobs fanned out to
``--subscribers`` subscribers on a local sink (``apps.py sink``, its own process): events x
subscribers pending deliveries (``bench_delivery.seed_deliveries``). First a raw aiohttp loop in this
process signs (Standard Webhooks headers, the relay's ``delivery_headers``) and POSTs every
delivery's own event body to the sink, ``--concurrency`` in flight (``bench_delivery.bare_posts``).
Then an ``upscale-relay worker`` process (``RELAY_DELIVERY_CONCURRENCY`` = ``--concurrency``,
``RELAY_DELIVERY_PER_SUBSCRIBER`` = ``--per-subscriber``) drains the same deliveries: claim with
leases, sign, send, record each attempt. Both rates come from the sink's first and last arrival (so the
worker's start-up is not counted; its wall time from launch is printed too).

    python bench/bench_fanout.py --database postgres --events 500 --subscribers 8
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import cpu_seconds, percentile, running_process
from _relay import (
    KINDS,
    RELAY_BIN,
    SECRET_KEY,
    Kind,
    app_process,
    database,
    migrate,
    relay_env,
    scalar,
    sink_stats,
)
from bench_delivery import bare_posts, seed_deliveries

from receiver.fakes.serving import free_port
from receiver.settings import load_settings


@dataclass(frozen=True)
class FanoutResult:
    kind: Kind
    deliveries: int
    body_bytes: int
    concurrency: int
    bare_rate: float
    bare_p50_ms: float
    bare_p99_ms: float
    bare_received: int
    worker_rate: float
    worker_received: int
    worker_wall_s: float
    succeeded: int
    bare_cpu_us: float = 0.0  # CPU time per delivery: the raw loop (this process), the worker process
    worker_cpu_us: float = 0.0

    @property
    def ratio(self) -> float:
        return self.worker_rate / self.bare_rate


def _rate(sink: str) -> tuple[float, int]:
    stats = sink_stats(sink)
    span = float(stats["last"]) - float(stats["first"])
    return (stats["received"] / span if span > 0 else float("nan")), int(stats["received"])


def run(
    kind: Kind, *, events: int = 500, subscribers: int = 8, concurrency: int = 64, per_subscriber: int = 8
) -> FanoutResult:
    with tempfile.TemporaryDirectory(prefix=f"bench-fanout-{kind}-") as tmp:
        tmp_path = Path(tmp)
        with database(kind, tmp_path) as url, app_process("sink", tmp_path) as sink:
            env = relay_env(
                url,
                "http://127.0.0.1:9",
                delivery_concurrency=str(concurrency),
                delivery_per_subscriber=str(per_subscriber),
            )
            migrate(env)
            settings = load_settings(database_url=url, secret_key=SECRET_KEY, allow_private_targets=True)
            work = seed_deliveries(settings, sink, events, subscribers)
            total = len(work)

            asyncio.run(bare_posts(work[: min(300, total)], concurrency))  # warm-up, not measured
            httpx.post(f"{sink}/_reset")
            cpu = time.process_time()
            _, latencies, _ = asyncio.run(bare_posts(work, concurrency))
            bare_cpu = time.process_time() - cpu
            bare_rate, bare_received = _rate(sink)

            httpx.post(f"{sink}/_reset")
            metrics_port = free_port()
            cmd = [str(RELAY_BIN), "worker", "--metrics-port", str(metrics_port)]
            started = time.perf_counter()
            with running_process(
                cmd, tmp_path / "worker.log", f"http://127.0.0.1:{metrics_port}/metrics", env=env
            ) as worker:
                deadline = started + 300
                while sink_stats(sink)["received"] < total and time.perf_counter() < deadline:
                    time.sleep(0.02)
                wall = time.perf_counter() - started
                worker_cpu = cpu_seconds(worker.pid)  # start-up included
            worker_rate, worker_received = _rate(sink)
            succeeded = scalar(url, "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'")
    return FanoutResult(
        kind=kind,
        deliveries=total,
        body_bytes=len(work[0][2]),
        concurrency=concurrency,
        bare_rate=bare_rate,
        bare_p50_ms=percentile(latencies, 0.5) * 1000,
        bare_p99_ms=percentile(latencies, 0.99) * 1000,
        bare_received=bare_received,
        worker_rate=worker_rate,
        worker_received=worker_received,
        worker_wall_s=wall,
        succeeded=succeeded,
        bare_cpu_us=bare_cpu * 1e6 / max(1, total),
        worker_cpu_us=worker_cpu * 1e6 / max(1, total),
    )


def report(r: FanoutResult) -> None:
    print(
        f"fan-out ({r.kind}): {r.deliveries} deliveries ({r.body_bytes}-byte bodies) to a local sink,"
        f" concurrency {r.concurrency}"
    )
    print(
        f"raw aiohttp  {r.bare_rate:7.0f} /s   p50 {r.bare_p50_ms:5.1f} ms  p99 {r.bare_p99_ms:5.1f} ms"
        f"   sink received {r.bare_received}"
    )
    print(
        f"worker       {r.worker_rate:7.0f} /s   {r.worker_wall_s:.2f} s from launch   sink received"
        f" {r.worker_received}, deliveries succeeded {r.succeeded}"
    )
    print(f"ratio worker/raw: {r.ratio:.2f}")
    print(
        f"CPU per delivery: raw {r.bare_cpu_us:.0f} us, worker {r.worker_cpu_us:.0f} us (start-up included;"
        f" raw/worker {r.bare_cpu_us / max(r.worker_cpu_us, 1e-9):.2f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=KINDS, default="sqlite")
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--subscribers", type=int, default=8, help="deliveries = events x subscribers")
    parser.add_argument("--concurrency", type=int, default=64, help="in flight, both clients")
    parser.add_argument("--per-subscriber", type=int, default=8, help="the worker's per-subscriber cap")
    args = parser.parse_args(argv)
    report(
        run(
            args.database,
            events=args.events,
            subscribers=args.subscribers,
            concurrency=args.concurrency,
            per_subscriber=args.per_subscriber,
        )
    )


if __name__ == "__main__":
    main()
