"""Issue 12's benchmarks, all of them, on SQLite and on Postgres, with one table at the end.

For each database: ``bench_ingest_wrk`` (wrk into ``serve --no-worker`` vs a bare endpoint, the
store check, the open loop at half the bare rate), ``bench_fanout`` (``upscale-relay worker`` vs raw
signed aiohttp POSTs) and ``bench_latency`` (callback → subscriber at light load). Each prints its
own lines as it finishes; the table collects the figures. Then ``bench_budget`` (SQLite) takes one
callback's CPU apart and says what the 0.5x ingest target leaves for it. Postgres is a fresh database on
``$RELAY_TEST_PG_SERVER`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``), skipped with a
note when no server answers. Needs wrk (``apt-get install -y wrk``); ``--profile`` needs py-spy.

    python bench/run_all.py [--databases sqlite,postgres] [--profile] [--seconds 10]

Nothing is asserted except that no 2xx callback was lost (exit status 1 if one was).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil

import bench_budget
import bench_fanout
import bench_ingest_wrk
import bench_latency
from _relay import KINDS, Kind, postgres_available


def _ms(value: float) -> str:
    return "timeout" if math.isinf(value) else f"{value:.1f}"


def _rows(
    ingest: bench_ingest_wrk.IngestResult, fan: bench_fanout.FanoutResult, lat: bench_latency.LatencyResult
) -> list[tuple[str, str]]:
    fr, fb, fh = ingest.fixed_relay, ingest.fixed_bare, ingest.fixed_relay_half
    return [
        ("ingest relay req/s (wrk)", f"{ingest.relay.rate:.0f}"),
        ("ingest bare req/s (wrk)", f"{ingest.bare.rate:.0f}"),
        ("ingest ratio relay/bare", f"{ingest.relay.rate / ingest.bare.rate:.2f}"),
        ("ingest CPU us/req relay / bare", f"{ingest.relay_cpu_us:.0f} / {ingest.bare_cpu_us:.0f}"),
        ("wrk's own CPU us/req (bare run)", f"{ingest.bare.cpu_us:.0f}"),
        ("ingest relay p50 / p99 ms", f"{ingest.relay.p50_ms:.1f} / {ingest.relay.p99_ms:.1f}"),
        ("ingest bare p50 / p99 ms", f"{ingest.bare.p50_ms:.1f} / {ingest.bare.p99_ms:.1f}"),
        ("2xx / jobs stored / lost", f"{ingest.accepted} / {ingest.stored[0]} / {ingest.lost}"),
        ("open loop rate (bare/2) req/s", f"{ingest.fixed_rate:.0f}"),
        ("  relay p50 / p99 ms", f"{_ms(fr['p50_ms'])} / {_ms(fr['p99_ms'])}"),
        ("  relay answered / unfinished", f"{fr['answered']} / {fr['unfinished']}"),
        ("  bare p50 / p99 ms", f"{_ms(fb['p50_ms'])} / {_ms(fb['p99_ms'])}"),
        ("  client send lag p99 ms", f"{_ms(fr['send_lag_p99_ms'])}"),
        ("open loop rate (relay/2) req/s", f"{ingest.relay.rate / 2:.0f}"),
        ("  relay p50 / p99 ms", f"{_ms(fh['p50_ms'])} / {_ms(fh['p99_ms'])}"),
        ("fan-out worker /s", f"{fan.worker_rate:.0f}"),
        ("fan-out raw aiohttp /s", f"{fan.bare_rate:.0f}"),
        ("fan-out ratio worker/raw", f"{fan.ratio:.2f}"),
        ("fan-out CPU us/delivery worker / raw", f"{fan.worker_cpu_us:.0f} / {fan.bare_cpu_us:.0f}"),
        ("fan-out delivered / expected", f"{fan.worker_received} / {fan.deliveries}"),
        (f"callback→subscriber p50 / p99 ms @{lat.rate:.0f}/s", f"{lat.p50_ms:.1f} / {lat.p99_ms:.1f}"),
        ("callback answered p50 / p99 ms", f"{lat.answer_p50_ms:.1f} / {lat.answer_p99_ms:.1f}"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--databases", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument("--seconds", type=int, default=10, help="measured wrk seconds per server")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--events", type=int, default=500, help="fan-out: events (x 8 subscribers)")
    parser.add_argument("--profile", action="store_true", help="py-spy the relay during each ingest run")
    parser.add_argument(
        "--budget-callbacks", type=int, default=10000, help="bench_budget: callbacks per part"
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    kinds: list[Kind] = [k for k in KINDS if k in args.databases.split(",")]
    notes: list[str] = []
    if "postgres" in kinds and not postgres_available():
        kinds.remove("postgres")
        notes.append("postgres skipped: no server answered at $RELAY_TEST_PG_SERVER / 127.0.0.1:5432")
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores; load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")

    columns: dict[str, list[tuple[str, str]]] = {}
    ingests: dict[str, bench_ingest_wrk.IngestResult] = {}
    fanouts: dict[str, bench_fanout.FanoutResult] = {}
    lost = 0
    for kind in kinds:
        ingest = bench_ingest_wrk.run(
            kind, seconds=args.seconds, connections=args.connections, profile=args.profile
        )
        bench_ingest_wrk.report(ingest)
        fan = bench_fanout.run(kind, events=args.events)
        bench_fanout.report(fan)
        lat = bench_latency.run(kind)
        bench_latency.report(lat)
        print()
        columns[kind] = _rows(ingest, fan, lat)
        ingests[kind] = ingest
        fanouts[kind] = fan
        lost += ingest.lost

    labels = [label for label, _ in next(iter(columns.values()))] if columns else []
    width = max((len(label) for label in labels), default=10) + 2
    print(f"{'':<{width}}" + "".join(f"{kind:>18}" for kind in columns))
    for n, label in enumerate(labels):
        print(f"{label:<{width}}" + "".join(f"{rows[n][1]:>18}" for rows in columns.values()))
    if "sqlite" in ingests:
        print()
        budget = bench_budget.quiet_run(args.budget_callbacks)
        bench_budget.report(budget, args.budget_callbacks)
        ingest = ingests["sqlite"]
        for line in bench_budget.half_rate(budget, ingest.bare.rate, ingest.bare_cpu_us):
            print(line)
        for line in bench_budget.fanout_target(budget, fanouts["sqlite"].bare_cpu_us):
            print(line)
    load = os.getloadavg()
    print(f"load average after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for note in notes:
        print(note)
    if lost:
        raise SystemExit(f"{lost} callbacks answered 2xx left nothing in the store")


if __name__ == "__main__":
    main()
