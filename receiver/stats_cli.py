"""``upscale-relay stats``: vendors compared by numbers, a thin face over
:func:`receiver.operations.vendor_stats` (the same report as ``GET /v1/stats``). Registered on the
``upscale-relay`` group by :mod:`receiver.cli`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from dispatch.store.stats import StatsReport
from receiver import operations
from receiver.cli import _cell, _with_store, cli, console, relay_errors
from receiver.commands import _millis
from receiver.vendors import ADAPTERS


@cli.command()
@click.option("--since", help="ISO-8601 start: jobs created at or after, e.g. 2026-11-01T00:00:00Z.")
@click.option("--until", help="ISO-8601 end: jobs created before (default: no end).")
@click.option("--vendor", type=click.Choice(list(ADAPTERS)), help="Only this vendor.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.pass_context
@relay_errors
def stats(
    ctx: click.Context, since: str | None, until: str | None, vendor: str | None, as_json: bool
) -> None:
    """Vendors compared by numbers: jobs by state, success rate, seconds to a result, lost callbacks,
    failures, submit errors, submits, and spend (on resubmits, on results not received) and estimates.

    Example: upscale-relay stats --since 2026-11-01T00:00:00Z --vendor apixo
    """
    start, end = _millis(since, "--since"), _millis(until, "--until")
    report = _with_store(
        ctx,
        lambda _, store: operations.vendor_stats(store, since=start, until=end, vendor=vendor),
        read_only=True,
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    render(report)


def render(report: StatsReport) -> None:
    """Two tables: the figures, a column per vendor and a row per figure (five vendors fit 80
    columns); then each vendor's failure codes, submit errors, spend and estimates, a row each."""
    data = report.to_json()
    vendors = data["vendors"]
    table = Table(
        title=f"vendors, jobs created from {data['since'] or 'the start'} to {data['until'] or 'now'}"
    )
    table.add_column("", no_wrap=True)
    for v in vendors:
        table.add_column(v["vendor"], justify="right")
    for label, path, shown in FIGURES:
        table.add_row(label, *(_cell(shown(_dig(v, path))) for v in vendors))
    console.print(table)
    details = Table(title="failure codes (top 10), submit errors, spend and estimates")
    for column in ("vendor", "what", "code or unit"):
        details.add_column(column)
    details.add_column("count or total", justify="right")
    for v in vendors:
        for code in v["failure_codes"]:
            details.add_row(v["vendor"], "failed", code["code"], str(code["count"]))
        for code in v["submit_errors"]:
            details.add_row(v["vendor"], "submit error", code["code"], str(code["count"]))
        for cost in v["cost"]:
            details.add_row(v["vendor"], f"spent on {cost['jobs']} jobs", cost["unit"], f"{cost['total']:g}")
            details.add_row(v["vendor"], "  of it on resubmits", cost["unit"], f"{cost['resubmits']:g}")
            details.add_row(
                v["vendor"], "  of it on results not received", cost["unit"], f"{cost['unreceived']:g}"
            )
        for guess in v["cost_estimate"]:
            details.add_row(
                v["vendor"], f"estimated for {guess['jobs']} jobs", guess["unit"], f"{guess['total']:g}"
            )
        for anomaly in v["payload_anomalies"]:
            details.add_row(v["vendor"], "payload anomaly (jobs)", anomaly["field"], str(anomaly["count"]))
    if details.rows:
        console.print(details)


def _percent(share: float | None) -> str | None:
    return None if share is None else f"{share * 100:.1f}%"


def _same(value: Any) -> Any:
    return value


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


FIGURES: list[tuple[str, tuple[str, ...], Callable[[Any], Any]]] = [
    ("jobs", ("jobs", "total"), _same),
    *((f"  {state}", ("jobs", state), _same) for state in ("queued", "running", "succeeded", "failed")),
    ("success rate", ("success_rate",), _percent),
    *((f"{p} seconds", ("time_to_terminal_seconds", p), _same) for p in ("p50", "p95", "p99")),
    ("by callback", ("outcome_via", "callback"), _same),
    ("by poll", ("outcome_via", "poll"), _same),
    ("by submit response", ("outcome_via", "response"), _same),
    ("submit failed", ("outcome_via", "submit"), _same),
    ("timed out", ("outcome_via", "timeout"), _same),
    ("lost callbacks", ("lost_callback_share",), _percent),
    ("duplicate callbacks", ("duplicate_callbacks",), _same),
    ("stale callbacks", ("stale_callbacks",), _same),
    ("signature rejections", ("signature_rejections",), _same),
    ("submit attempts", ("submits", "attempts"), _same),
    ("resubmits", ("submits", "resubmits"), _same),
]
"""The first table's rows: label, where the value is in a vendor's JSON, and how it is shown."""
