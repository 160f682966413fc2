"""Ingest on the real path: wrk against ``upscale-relay serve`` vs a bare Starlette endpoint, same run.

wrk (a compiled load generator in its own process: ``apt-get install -y wrk``) runs
``apixo_callbacks.lua``: every request is a new APIXO success callback with a ``taskId`` of its own,
POSTed to one APIXO source URL, so each one creates a job, its ``job.succeeded`` event and a delivery
row for the one subscriber (on a local sink). The relay runs as ``serve --no-worker``: the measured
path is the callback's write transaction (inbound record, job, event, delivery: the transactional
outbox); nothing is delivered meanwhile, so no fan-out competes for the cores. The same bodies go to
the bare endpoint (``apps.py bare``: read, parse JSON, answer 200; uvicorn, same settings). Each
server gets ``--warmup`` s unmeasured, then ``--seconds`` measured at ``--connections``.

Afterwards the store is checked: the jobs, events and deliveries of the measured run must be at
least wrk's 2xx count (requests minus non-2xx); a few more are requests the relay answered after wrk
stopped reading. Then open-loop runs (``fixed_rate.py``, its own process; wrk cannot hold a rate)
of ``--fixed-seconds`` each print p50/p99 from each request's due time: the relay and the bare
endpoint at half the bare rate, and the relay at half its own wrk rate (a load it can sustain).

``--profile`` samples the relay with py-spy (``pip install py-spy``) during the measured wrk run and
writes ``relay.folded`` (collapsed stacks: the input of a flamegraph) and ``top.txt`` to a kept
temporary directory, and prints the top 5 functions by own samples.

    python bench/bench_ingest_wrk.py --database sqlite --seconds 10 --connections 32 [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import cpu_seconds
from _relay import (
    APP_PIDS,
    BENCH,
    KINDS,
    Kind,
    add_subscriber_and_source,
    app_process,
    database,
    relay_env,
    relay_process,
    stored_for_prefix,
)

from receiver.fakes.serving import free_port

LUA = BENCH / "apixo_callbacks.lua"


@dataclass(frozen=True)
class Wrk:
    """One wrk run: completed responses, non-2xx among them, socket errors, latency (ms)."""

    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_seconds: float = 0.0  # wrk's own CPU time (user + system) for the run

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        """wrk's CPU per completed request (microseconds): what the load generator takes of the cores."""
        return self.cpu_seconds * 1e6 / max(1, self.requests)

    def line(self, label: str) -> str:
        return (
            f"{label:<22} {self.requests:>7} req in {self.seconds:5.1f} s = {self.rate:7.0f} req/s"
            f"   p50 {self.p50_ms:7.1f} ms  p99 {self.p99_ms:7.1f} ms"
            f"   non-2xx {self.non2xx}, socket errors {self.socket_errors}"
        )


@dataclass
class IngestResult:
    kind: Kind
    connections: int
    bare: Wrk
    relay: Wrk
    stored: tuple[int, int, int]  # jobs, events, deliveries of the measured relay run
    fixed_rate: float  # half the bare rate
    fixed_relay: dict[str, Any]
    fixed_bare: dict[str, Any]
    fixed_relay_half: dict[str, Any]  # the relay at half its own (closed-loop) rate
    profile: list[str] = field(default_factory=list)
    bare_cpu_us: float = 0.0  # CPU time (user + system) of the server process per completed request
    relay_cpu_us: float = 0.0

    @property
    def accepted(self) -> int:
        return self.relay.requests - self.relay.non2xx

    @property
    def lost(self) -> int:
        return max(0, self.accepted - min(self.stored))


def wrk(url: str, prefix: str, seconds: int, connections: int, threads: int, log: Path) -> Wrk:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    cmd += ["-s", str(LUA), url, "--", prefix]
    before = _children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60)
    spent = _children_cpu() - before  # wrk is the only child reaped meanwhile
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}\n")
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    return Wrk(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        non2xx=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        cpu_seconds=spent,
    )


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fixed(url: str, rate: float, seconds: float, prefix: str) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH / "fixed_rate.py"), "--url", url, "--rate", f"{rate:.1f}"]
    cmd += ["--seconds", str(seconds), "--prefix", prefix]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 120)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return found


@contextlib.contextmanager
def profiling(pid: int, seconds: int, out_dir: Path, into: list[str]) -> Iterator[None]:
    """Sample ``pid`` with py-spy for ``seconds`` while the block runs; then write ``top.txt`` beside
    ``relay.folded`` in ``out_dir`` and put the top 5 lines by own samples into ``into``."""
    folded = out_dir / "relay.folded"
    cmd = [_py_spy(), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100"]
    cmd += ["--nonblocking", "--nolineno", "--format", "raw", "--output", str(folded)]
    with (out_dir / "py-spy.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            proc.wait(timeout=seconds + 60)
    if not folded.exists():
        into.append(f"py-spy wrote nothing: see {out_dir / 'py-spy.log'}")
        return
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for row in folded.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    lines = [f"{n / samples:6.1%} own {total[f] / samples:6.1%} total  {f}" for f, n in own.most_common(30)]
    (out_dir / "top.txt").write_text(
        f"py-spy, {samples} samples of the relay during the wrk run\n" + "\n".join(lines) + "\n"
    )
    into.extend(lines[:5])
    into.append(f"(profile: {out_dir}/relay.folded, {out_dir}/top.txt; {samples} samples)")


def run(
    kind: Kind,
    *,
    seconds: int = 10,
    warmup: int = 2,
    connections: int = 32,
    threads: int = 2,
    fixed_seconds: float = 10.0,
    profile: bool = False,
) -> IngestResult:
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{kind}-") as tmp:
        tmp_path = Path(tmp)
        log = tmp_path / "wrk.log"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (
            database(kind, tmp_path) as url,
            app_process("sink", tmp_path) as sink,
            app_process("bare", tmp_path) as bare,
            relay_process(relay_env(url, base), port, tmp_path / "relay.log", worker=False) as relay,
        ):
            source_url = add_subscriber_and_source(base, f"{sink}/hooks/bench")
            bare_url = bare + urlsplit(source_url).path
            wrk(bare_url, "barewarm", warmup, connections, threads, log)
            cpu = cpu_seconds(APP_PIDS[bare])
            bare_run = wrk(bare_url, "bare", seconds, connections, threads, log)
            bare_cpu = cpu_seconds(APP_PIDS[bare]) - cpu
            wrk(source_url, "warm", warmup, connections, threads, log)
            top: list[str] = []
            hook: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if profile:
                hook = profiling(relay.pid, seconds, Path(tempfile.mkdtemp(prefix="relay-profile-")), top)
            cpu = cpu_seconds(relay.pid)
            with hook:
                relay_run = wrk(source_url, "meas", seconds, connections, threads, log)
            relay_cpu = cpu_seconds(relay.pid) - cpu
            time.sleep(1.0)  # requests wrk stopped waiting for may still commit
            stored = stored_for_prefix(url, "task_meas")
            rate = bare_run.rate / 2
            fixed_relay = fixed(source_url, rate, fixed_seconds, "fixed")
            fixed_bare = fixed(bare_url, rate, fixed_seconds, "fixedbare")
            fixed_half = fixed(source_url, relay_run.rate / 2, fixed_seconds, "half")
    return IngestResult(
        kind,
        connections,
        bare_run,
        relay_run,
        stored,
        rate,
        fixed_relay,
        fixed_bare,
        fixed_half,
        top,
        bare_cpu_us=bare_cpu * 1e6 / max(1, bare_run.requests),
        relay_cpu_us=relay_cpu * 1e6 / max(1, relay_run.requests),
    )


def _ms(value: float) -> str:
    return "timeout" if math.isinf(value) else f"{value:.1f} ms"


def report(r: IngestResult) -> None:
    print(f"ingest ({r.kind}): wrk, {r.connections} connections, every request a new APIXO success callback")
    print(r.bare.line("bare starlette"))
    print(r.relay.line("relay serve --no-worker"))
    print(f"ratio relay/bare: {r.relay.rate / r.bare.rate:.2f}")
    print(
        f"CPU per request: bare {r.bare_cpu_us:.0f} us, relay {r.relay_cpu_us:.0f} us"
        f" (bare/relay {r.bare_cpu_us / max(r.relay_cpu_us, 1e-9):.2f}: the ratio an idle machine would show);"
        f" wrk itself {r.bare.cpu_us:.0f} us (bare run), {r.relay.cpu_us:.0f} us (relay run)"
    )
    jobs, events, deliveries = r.stored
    verdict = "ok" if r.lost == 0 else f"LOST {r.lost}"
    if r.relay.non2xx or r.relay.socket_errors:
        verdict += f"; WARNING: {r.relay.non2xx} non-2xx, {r.relay.socket_errors} socket errors"
    print(
        f"store: {r.accepted} 2xx answers; stored jobs {jobs}, events {events}, deliveries {deliveries}"
        f" ({verdict}; {jobs - r.accepted} more were answered after wrk stopped reading)"
    )
    half = r.relay.rate / 2
    for rate, label, f in (
        (r.fixed_rate, "relay", r.fixed_relay),
        (r.fixed_rate, "bare", r.fixed_bare),
        (half, "relay", r.fixed_relay_half),
    ):
        print(
            f"open loop {rate:5.0f} req/s, {label:<5}: p50 {_ms(f['p50_ms'])}, p99 {_ms(f['p99_ms'])};"
            f" answered {f['answered']}/{f['scheduled']}, unfinished {f['unfinished']},"
            f" statuses {f['statuses']}; client send lag p99 {_ms(f['send_lag_p99_ms'])}"
        )
    for line in r.profile:
        print(f"  {line}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=KINDS, default="sqlite")
    parser.add_argument("--seconds", type=int, default=10, help="measured wrk seconds per server")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured wrk seconds per server first")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--fixed-seconds", type=float, default=10.0, help="open-loop seconds per server")
    parser.add_argument("--profile", action="store_true", help="py-spy the relay during its wrk run")
    args = parser.parse_args(argv)
    result = run(
        args.database,
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        fixed_seconds=args.fixed_seconds,
        profile=args.profile,
    )
    report(result)
    if result.lost:
        raise SystemExit(f"{result.lost} callbacks answered 2xx left nothing in the store")


if __name__ == "__main__":
    main()
