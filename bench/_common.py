"""What the bench scripts share: running a server process until it is healthy, percentiles."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx


@contextlib.contextmanager
def running_process(
    args: Sequence[str], log: Path, health_url: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` (output to ``log``) until the block ends; yields the process once ``health_url``
    answers below 500 (within 30 s). Stops it with SIGTERM, then SIGKILL after 15 s."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"{args[0]} exited early:\n{log.read_text(errors='replace')[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(health_url, timeout=1).status_code < 500:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{health_url} did not come up within 30 s")
                time.sleep(0.05)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values`` by nearest rank; ``values`` must not be empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, seconds) ``pid`` has used so far, from ``/proc/<pid>/stat`` (Linux).

    Per-request CPU is the figure that stays meaningful on a machine other work is loading: the
    req/s of two servers measured minutes apart shift with the load, their CPU per request much less.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
