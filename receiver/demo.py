"""``upscale-relay demo``: the whole relay on loopback, against fake vendors and a real subscriber.

Starts the fake vendor server, a subscriber that verifies every delivery's Standard Webhooks
signature with the ``standardwebhooks`` library (not the relay's own signing code), and the relay
on a fresh SQLite file, mirroring every result into a temporary folder (``RELAY_MIRROR_URL``; the
fake vendors serve real images); submits one upscale job to each of the five vendors plus one that
fails; shows live progress; prints a table per job. Succeeds only if every job reached its
expected terminal state, every succeeded job's output was mirrored, and every event was delivered
and verified.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table
from standardwebhooks.webhooks import Webhook

from receiver.app import create_app
from receiver.fakes import FakeConfig, create_fake_vendors
from receiver.fakes.config import DREAMINA_SOURCE_JOB, LTX_SOURCE_JOB, SOURCE_IMAGE, SOURCE_IMAGE_FAIL
from receiver.fakes.serving import serve_factory, serve_in_thread
from receiver.fakes.subscriber import create_subscriber
from receiver.settings import Settings


@dataclass(frozen=True)
class DemoJob:
    """One job the demo submits and the terminal state it expects."""

    label: str
    vendor: str
    params: dict[str, Any]
    expect: str


DEMO_JOBS = (
    DemoJob("LTX Studio", "ltxstudio", {"jobId": LTX_SOURCE_JOB}, "succeeded"),
    DemoJob("Dreamina", "dreamina", {"jobid": DREAMINA_SOURCE_JOB, "upscaleResolution": "4k"}, "succeeded"),
    DemoJob(
        "Apiframe",
        "apiframe",
        {"model": "topaz-image-upscale", "topazUpscaleParams": {"image": SOURCE_IMAGE, "upscale_factor": 2}},
        "succeeded",
    ),
    DemoJob("APIXO", "apixo", {"input": {"image_urls": [SOURCE_IMAGE], "resolution": "4k"}}, "succeeded"),
    DemoJob("Artnex", "artnex", {"image": SOURCE_IMAGE, "scale": 2}, "succeeded"),
    DemoJob("APIXO (failing)", "apixo", {"input": {"image_urls": [SOURCE_IMAGE_FAIL]}}, "failed"),
)


def demo_settings(db: Path, public_url: str, vendors_url: str, fake: FakeConfig, api_token: str) -> Settings:
    """Relay settings for the demo: loopback subscribers allowed, fast retries, fake vendor URLs,
    outputs mirrored to ``mirror/`` beside the database."""
    return Settings(
        database_url=f"sqlite:///{db}",
        mirror_url=f"file://{db.parent / 'mirror'}",
        mirror_backoff=0.2,
        public_url=public_url,
        api_token=api_token,  # type: ignore[arg-type]
        allow_private_targets=True,
        useapi_token=fake.useapi_token,  # type: ignore[arg-type]
        useapi_base_url=vendors_url,
        apiframe_api_key=fake.apiframe_api_key,  # type: ignore[arg-type]
        apiframe_base_url=vendors_url,
        apixo_api_key=fake.apixo_api_key,  # type: ignore[arg-type]
        apixo_base_url=vendors_url,
        artnex_api_key=fake.artnex_api_key,  # type: ignore[arg-type]
        artnex_base_url=vendors_url,
        retry_schedule=(0.2, 0.5, 1.0),
        poll_interval=0.05,
    )


def run_demo(*, timeout: float = 30.0, keep: bool = False, console: Console | None = None) -> bool:
    """Run the demo; returns True when every job and every delivery came out as expected.

    ``timeout`` is in seconds. With ``keep`` the SQLite file is kept and its path printed.
    """
    console = console or Console()
    if not console.is_terminal and console.width < 220:
        console = Console(width=220)  # piped output: keep URLs on one line
    workdir = Path(tempfile.mkdtemp(prefix="upscale-relay-demo-"))
    secret_box: list[str] = []

    def check_signature(body: bytes, headers: Mapping[str, str]) -> None:
        Webhook(secret_box[0]).verify(body, dict(headers))

    fake = FakeConfig(  # http loopback; results are real images the relay can mirror
        callback_delay=0.05, apixo_retry_scale=0.01, apixo_allow_http=True, serve_assets=True
    )
    api_token = secrets.token_urlsafe(24)
    sub_app, sub_log = create_subscriber(check_signature)
    started = time.monotonic()
    try:
        with serve_in_thread(create_fake_vendors(fake)) as vendors, serve_in_thread(sub_app) as subscriber:
            factory = lambda url: create_app(  # noqa: E731
                demo_settings(workdir / "relay.db", url, vendors.url, fake, api_token)
            )
            with (
                serve_factory(factory) as relay,
                httpx.Client(
                    base_url=relay.url, headers={"Authorization": f"Bearer {api_token}"}, timeout=30
                ) as client,
            ):
                console.print(f"relay {relay.url} · fake vendors {vendors.url} · subscriber {subscriber.url}")
                created = _ok(
                    client.post(
                        "/v1/subscribers",
                        json={
                            "url": f"{subscriber.url}/hooks/demo",
                            "event_types": [
                                "job.queued",
                                "job.running",
                                "job.progress",
                                "job.succeeded",
                                "job.failed",
                            ],
                            "description": "demo subscriber (verifies signatures)",
                        },
                    )
                )
                secret_box.append(created["secret"])
                ids = [
                    _ok(
                        client.post(
                            "/v1/jobs",
                            json={"vendor": j.vendor, "params": j.params, "reference": f"demo-{n}"},
                        )
                    )["id"]
                    for n, j in enumerate(DEMO_JOBS, 1)
                ]
                rows = _watch(client, ids, sub_log, console, deadline=started + timeout)
        ok = all(r["ok"] for r in rows)
        console.print(_table(rows, final=True))
        elapsed = time.monotonic() - started
        verdict = "[green]all jobs reached their expected state; every event delivered and verified"
        console.print((verdict if ok else "[red]demo FAILED: see the table above") + f" ({elapsed:.1f} s)")
        if keep:
            console.print(f"database kept at {workdir / 'relay.db'}")
        return ok
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} → {response.status_code}: {response.text}"
        )
    data: dict[str, Any] = response.json()
    return data


def _watch(
    client: httpx.Client, ids: list[str], sub_log: Any, console: Console, *, deadline: float
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with Live(console=console, refresh_per_second=10, transient=True) as live:
        while True:
            rows = [
                _row(spec, _ok(client.get(f"/v1/jobs/{jid}")), sub_log)
                for spec, jid in zip(DEMO_JOBS, ids, strict=True)
            ]
            live.update(_table(rows, final=False))
            if all(r["ok"] for r in rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


def _row(spec: DemoJob, job: dict[str, Any], sub_log: Any) -> dict[str, Any]:
    received = sub_log.by_event_id()
    event_ids = [e["id"] for e in job["events"]]
    delivered = bool(event_ids) and all(eid in received for eid in event_ids)
    verified = delivered and all(all(d.verified for d in received[eid]) for eid in event_ids)
    outputs = job["outputs"]
    result = (
        outputs[0]["url"]
        if outputs
        else (f"{job['error']['code']}: {job['error']['message']}" if job["error"] else "-")
    )
    callbacks = sum(1 for i in job["inbound"] if i["kind"] == "callback")
    mirrored = spec.expect != "succeeded" or (bool(outputs) and all(o.get("mirror") for o in outputs))
    return {
        "label": spec.label,
        "vendor_job_id": job["vendor_job_id"] or "-",
        "status": job["status"],
        "expect": spec.expect,
        "progress": job["progress"],
        "result": result,
        "callbacks": callbacks,
        "events": len(event_ids),
        "delivered": delivered,
        "verified": verified,
        "mirror": _mirror_cell(outputs),
        "ok": job["status"] == spec.expect and delivered and verified and mirrored,
    }


def _mirror_cell(outputs: list[dict[str, Any]]) -> str:
    """The first output's mirror: ``"64x48 · 1,234 B · sha256 9f2c1a…"``, its ``mirror_error`` code,
    or ``-``."""
    if not outputs:
        return "-"
    first = outputs[0]
    if first.get("mirror"):
        mirror = first["mirror"]
        size = f"{first['width']}x{first['height']} · " if first.get("width") else ""
        return f"{size}{mirror['size_bytes']:,} B · sha256 {mirror['sha256'][:8]}…"
    if first.get("mirror_error"):
        return f"[red]{first['mirror_error']['code']}[/]"
    return "copying…"


def _table(rows: list[dict[str, Any]], *, final: bool) -> Table:
    table = Table(title="upscale-relay demo" + ("" if final else " (running…)"))
    table.add_column("vendor", no_wrap=True)
    table.add_column("vendor job id", overflow="ellipsis", max_width=36, no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("output URL or error", overflow="fold", min_width=40)
    table.add_column("mirror", no_wrap=True)
    for column in ("callbacks", "events", "delivered", "verified"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in rows:
        colour = "green" if r["ok"] else ("yellow" if not final else "red")
        table.add_row(
            r["label"],
            r["vendor_job_id"],
            f"[{colour}]{r['status']}[/]",
            r["result"],
            r["mirror"],
            str(r["callbacks"]),
            str(r["events"]),
            "yes" if r["delivered"] else "no",
            "yes" if r["verified"] else "no",
        )
    return table
