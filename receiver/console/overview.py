"""The overview's figures: per vendor, jobs of the last hour and day by state, success rate, p95 time
to result, callbacks lost (outcomes found by polling), and the relay-wide delivery backlog; plus a
24-hour chart per vendor rendered as SVG on the server.

The per-vendor figures come from the analytics verb (``vendor_stats``, the same numbers as ``GET
/v1/stats``) through :func:`vendor_report`, the one place that knows where it lives; the backlog from
``operations_snapshot`` (the numbers ``GET /metrics`` shows).

Example::

    view = await read_overview(store, now=now_ms())
    view.vendors[0].day["jobs"]["failed"]     # 1
    view.snapshot["dead_letters"]             # 0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dispatch.model import JobState
from dispatch.store.face import Store
from receiver import operations
from receiver.vendors import ADAPTERS

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STATES = tuple(s.value for s in JobState)


async def vendor_report(store: Store, *, since: int | None, until: int | None) -> dict[str, Any]:
    """The analytics report (:func:`receiver.operations.vendor_stats`, what ``GET /v1/stats`` answers)
    for jobs created in [since, until) (unix ms) as JSON: ``{"since", "until", "vendors": [{"vendor",
    "jobs": {"queued", "running", "succeeded", "failed", "total"}, "success_rate",
    "time_to_terminal_seconds": {"p50", "p95", "p99"}, "outcome_via": {"callback", "poll", ...},
    "lost_callback_share", ...}]}``. The one place the overview reads vendor figures from."""
    report = await operations.vendor_stats(store, since=since, until=until)
    return report.to_json()


def _blank(vendor: str) -> dict[str, Any]:
    return {
        "vendor": vendor,
        "jobs": {**dict.fromkeys(STATES, 0), "total": 0},
        "success_rate": None,
        "time_to_terminal_seconds": {"p50": None, "p95": None, "p99": None},
        "outcome_via": {},
        "lost_callback_share": None,
    }


@dataclass(frozen=True)
class VendorView:
    """One vendor's row: its report entries for the last hour and day, and its 24-hour chart."""

    vendor: str
    hour: dict[str, Any]
    day: dict[str, Any]
    chart: Chart


@dataclass(frozen=True)
class Overview:
    """Everything the overview page shows, read at ``now`` (unix ms)."""

    now: int
    vendors: tuple[VendorView, ...]
    snapshot: dict[str, float]


async def read_overview(store: Store, *, now: int) -> Overview:
    """Read the overview's figures at ``now`` (unix ms): two reports, 24 hourly counts, one
    snapshot. Raises :class:`StoreUnavailable`."""
    hour = {v["vendor"]: v for v in (await vendor_report(store, since=now - HOUR_MS, until=None))["vendors"]}
    day = {v["vendor"]: v for v in (await vendor_report(store, since=now - DAY_MS, until=None))["vendors"]}
    start = now - DAY_MS
    buckets: list[dict[tuple[str, str], int]] = []
    for n in range(24):
        since = start + n * HOUR_MS
        buckets.append(await store.job_counts(since=since, until=since + HOUR_MS))
    views = []
    for name in sorted(set(ADAPTERS) | set(day) | set(hour)):
        bars = tuple(
            Bar(
                start + n * HOUR_MS,
                counts.get((name, "succeeded"), 0),
                counts.get((name, "failed"), 0),
                counts.get((name, "queued"), 0) + counts.get((name, "running"), 0),
            )
            for n, counts in enumerate(buckets)
        )
        views.append(VendorView(name, hour.get(name, _blank(name)), day.get(name, _blank(name)), Chart(bars)))
    snapshot = await store.operations_snapshot(now)
    return Overview(now, tuple(views), snapshot)


@dataclass(frozen=True)
class Bar:
    """One hour of a vendor's jobs: the hour's start (unix ms) and its jobs by outcome."""

    at: int
    succeeded: int
    failed: int
    open: int

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.open


@dataclass(frozen=True)
class Rect:
    """One SVG rectangle of a chart (``cls``: ``ok``, ``bad`` or ``open``, coloured by the CSS)."""

    x: float
    y: float
    width: float
    height: float
    cls: str


@dataclass(frozen=True)
class Chart:
    """24 stacked hourly bars (succeeded, failed, still open) drawn in a 240 by 40 viewBox."""

    bars: tuple[Bar, ...]
    width: int = 240
    height: int = 40

    @property
    def peak(self) -> int:
        return max((b.total for b in self.bars), default=0)

    @property
    def rects(self) -> tuple[Rect, ...]:
        """The rectangles to draw, bottom up per bar: succeeded, failed, open."""
        peak = self.peak or 1
        step = self.width / max(len(self.bars), 1)
        out: list[Rect] = []
        for n, bar in enumerate(self.bars):
            y = float(self.height)
            for count, cls in ((bar.succeeded, "ok"), (bar.failed, "bad"), (bar.open, "open")):
                if count:
                    h = max(count / peak * (self.height - 2), 1.0)
                    y -= h
                    out.append(
                        Rect(round(n * step + 1, 2), round(y, 2), round(step - 2, 2), round(h, 2), cls)
                    )
        return tuple(out)

    @property
    def summary(self) -> str:
        """A text equivalent for screen readers, e.g. ``"last 24 h: 5 succeeded, 1 failed, 0 open"``."""
        ok = sum(b.succeeded for b in self.bars)
        bad = sum(b.failed for b in self.bars)
        still = sum(b.open for b in self.bars)
        return f"jobs per hour, last 24 h: {ok} succeeded, {bad} failed, {still} still open"
