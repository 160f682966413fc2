"""Isolation: the extra delay a healthy subscriber sees while another subscriber hangs.

Two runs on loopback, each with a fresh relay (``upscale-relay serve`` process), the fake vendors
(``python -m receiver.fakes`` process) and one subscriber server (in this process) hosting two
subscribers, ``healthy`` and ``other``:

1. baseline: both subscribers answer at once;
2. hanging: ``other`` hangs past the delivery timeout on every request (its retries pile up).

In each run ``--events`` Artnex jobs (synchronous: the job completes inside ``POST /v1/jobs``) are
submitted at ``--rate`` per second. The delay of an event is the healthy subscriber's arrival time
minus the event's ``created_at``. Prints p50/p90/p99/max per run and the extra p50/p99 of the hanging
run over the baseline.

    python bench/bench_isolation.py --events 200 --rate 40

Nothing is asserted; the numbers are for reading (issue 4: "the p99 extra delay of the healthy
subscriber while one hangs").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import percentile, running_process

from dispatch.model import event_id, parse_iso
from receiver.fakes import SOURCE_IMAGE, FakeConfig
from receiver.fakes.serving import free_port, serve_in_thread
from receiver.fakes.subscriber import Behaviour, SubscriberLog, create_subscriber

RELAY_BIN = Path(sys.executable).parent / "upscale-relay"
API_TOKEN = "bench-admin-token-0123456789"


def _run(
    label: str,
    *,
    hang: bool,
    args: argparse.Namespace,
    vendors: str,
    sub_url: str,
    sub_log: SubscriberLog,
    tmp_path: Path,
) -> dict[float, float]:
    """One relay run; returns the healthy subscriber's delay percentiles in milliseconds."""
    sub_log.clear()
    if hang:
        sub_log.program(Behaviour.hang_for(args.delivery_timeout + 1.0), name="other")
    db = tmp_path / f"{label}.db"
    port = free_port()
    relay = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        {
            "RELAY_DATABASE_URL": f"sqlite:///{db}",
            "RELAY_PUBLIC_URL": relay,
            "RELAY_API_TOKEN": API_TOKEN,
            "RELAY_ALLOW_PRIVATE_TARGETS": "true",
            "RELAY_ARTNEX_BASE_URL": vendors,
            "RELAY_ARTNEX_API_KEY": FakeConfig.artnex_api_key,
            "RELAY_DELIVERY_TIMEOUT": str(args.delivery_timeout),
            "RELAY_RETRY_SCHEDULE": "[0.2, 0.5, 1, 2, 4]",
        }
    )
    cmd = [str(RELAY_BIN), "serve", "--port", str(port)]
    with (
        running_process(cmd, tmp_path / f"{label}.log", f"{relay}/readyz", env=env),
        httpx.Client(base_url=relay, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as client,
    ):
        for name in ("healthy", "other"):
            created = client.post("/v1/subscribers", json={"url": f"{sub_url}/hooks/{name}"})
            created.raise_for_status()
        event_ids: list[str] = []
        started = time.monotonic()
        for n in range(args.events):
            due = started + n / args.rate
            time.sleep(max(0.0, due - time.monotonic()))
            job = client.post("/v1/jobs", json={"vendor": "artnex", "params": {"image": SOURCE_IMAGE}})
            job.raise_for_status()
            event_ids.append(event_id(job.json()["id"], "job.succeeded"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not set(event_ids) <= set(sub_log.by_event_id("healthy")):
            time.sleep(0.05)
        received = sub_log.by_event_id("healthy")
        delays: list[float] = []
        for eid in event_ids:
            if eid not in received:
                continue
            created_at = parse_iso(client.get(f"/v1/events/{eid}").json()["created_at"])
            assert created_at is not None
            delays.append(received[eid][0].received_at - created_at.timestamp())
        other = sub_log.count("other")
    missing = len(event_ids) - len(delays)
    stats = {q: percentile(delays, q) * 1000 for q in (0.5, 0.9, 0.99)} if delays else {}
    stats[1.0] = max(delays) * 1000 if delays else float("nan")
    print(
        f"{label:<9} healthy delay p50 {stats.get(0.5, float('nan')):6.1f} ms  p90 {stats.get(0.9, float('nan')):6.1f}"
        f" ms  p99 {stats.get(0.99, float('nan')):6.1f} ms  max {stats[1.0]:6.1f} ms"
        f"   events {len(event_ids)}, missing {missing}; requests to 'other': {other}"
    )
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200, help="events per run")
    parser.add_argument("--rate", type=float, default=40.0, help="jobs submitted per second")
    parser.add_argument("--delivery-timeout", type=float, default=2.0, help="RELAY_DELIVERY_TIMEOUT, seconds")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        tmp_path = Path(tmp)
        vport = free_port()
        vendors = f"http://127.0.0.1:{vport}"
        vendor_cmd = [sys.executable, "-m", "receiver.fakes", "--port", str(vport)]
        sub_app, sub_log = create_subscriber()
        print(
            f"isolation: {args.events} Artnex events per run at {args.rate:g}/s; 'other' hangs"
            f" {args.delivery_timeout + 1:g} s against a {args.delivery_timeout:g} s delivery timeout"
        )
        with (
            running_process(
                vendor_cmd, tmp_path / "vendors.log", f"{vendors}/_fake/jobs", env=dict(os.environ)
            ),
            serve_in_thread(sub_app) as subscriber,
        ):
            runs: dict[str, dict[float, float]] = {}
            for label, hang in (("baseline", False), ("hanging", True)):
                runs[label] = _run(
                    label,
                    hang=hang,
                    args=args,
                    vendors=vendors,
                    sub_url=subscriber.url,
                    sub_log=sub_log,
                    tmp_path=tmp_path,
                )
            sub_log.clear()
        base, hung = runs["baseline"], runs["hanging"]
        if 0.99 in base and 0.99 in hung:
            print(
                f"extra delay while 'other' hangs: p50 {hung[0.5] - base[0.5]:+.1f} ms,"
                f" p99 {hung[0.99] - base[0.99]:+.1f} ms (hanging p99 {hung[0.99]:.1f} ms)"
            )


if __name__ == "__main__":
    main()
