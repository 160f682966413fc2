"""Latency callback → subscriber at light load, on the real path.

``upscale-relay serve`` (with its in-process dispatcher: the single-process deployment) on a fresh
database, one subscriber on a local sink (``apps.py sink``, its own process) and one APIXO source.
``--callbacks`` APIXO success callbacks, each with its own ``taskId``, are sent open loop at
``--rate`` per second (after 20 unmeasured ones). A callback's latency is the sink's arrival time of
its ``job.succeeded`` delivery minus the moment this script started sending the callback (both
``time.time()`` on this machine). Also prints the callback's own answer time (the 200 comes after
the commit).

    python bench/bench_latency.py --database sqlite --callbacks 200 --rate 20
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
from _common import percentile
from _relay import KINDS, Kind, add_subscriber_and_source, app_process, database, relay_env, relay_process
from fixed_rate import callback_body

from receiver.fakes.serving import free_port


@dataclass(frozen=True)
class LatencyResult:
    kind: Kind
    callbacks: int
    rate: float
    delivered: int
    p50_ms: float
    p99_ms: float
    answer_p50_ms: float
    answer_p99_ms: float


async def _send(url: str, prefix: str, count: int, rate: float) -> tuple[dict[str, float], list[float]]:
    """POST ``count`` callbacks open loop at ``rate``/s; returns (taskId → send time of each one
    answered 200, answer times in s)."""
    sent: dict[str, float] = {}
    answers: list[float] = []
    async with aiohttp.ClientSession() as session:

        async def one(task_id: str) -> None:
            at, started = time.time(), time.perf_counter()
            body = callback_body(task_id)
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                if r.status == 200:
                    sent[task_id] = at
            answers.append(time.perf_counter() - started)

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(f"task_{prefix}n{n}")))
        await asyncio.gather(*tasks)
    return sent, answers


def run(kind: Kind, *, callbacks: int = 200, rate: float = 20.0) -> LatencyResult:
    with tempfile.TemporaryDirectory(prefix=f"bench-latency-{kind}-") as tmp:
        tmp_path = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (
            database(kind, tmp_path) as url,
            app_process("sink", tmp_path) as sink,
            relay_process(relay_env(url, base), port, tmp_path / "relay.log", worker=True),
        ):
            source_url = add_subscriber_and_source(base, f"{sink}/hooks/latency")
            asyncio.run(_send(source_url, "warm", 20, rate))
            sent, answers = asyncio.run(_send(source_url, "lat", callbacks, rate))
            deadline = time.monotonic() + 30
            arrivals: dict[str, float] = {}
            while time.monotonic() < deadline:
                arrivals = httpx.get(f"{sink}/_arrivals", timeout=30).json()
                if all(task_id in arrivals for task_id in sent):
                    break
                time.sleep(0.1)
    delays = [arrivals[t] - at for t, at in sent.items() if t in arrivals]
    return LatencyResult(
        kind=kind,
        callbacks=callbacks,
        rate=rate,
        delivered=len(delays),
        p50_ms=percentile(delays, 0.5) * 1000 if delays else float("nan"),
        p99_ms=percentile(delays, 0.99) * 1000 if delays else float("nan"),
        answer_p50_ms=percentile(answers, 0.5) * 1000,
        answer_p99_ms=percentile(answers, 0.99) * 1000,
    )


def report(r: LatencyResult) -> None:
    print(
        f"latency ({r.kind}): {r.callbacks} APIXO callbacks at {r.rate:.0f}/s into serve (in-process worker)"
    )
    print(
        f"callback → subscriber   p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms   delivered {r.delivered}"
        f"/{r.callbacks};  callback answered p50 {r.answer_p50_ms:5.1f} ms  p99 {r.answer_p99_ms:5.1f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=KINDS, default="sqlite")
    parser.add_argument("--callbacks", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="callbacks per second")
    args = parser.parse_args(argv)
    report(run(args.database, callbacks=args.callbacks, rate=args.rate))


if __name__ == "__main__":
    main()
