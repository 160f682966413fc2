"""Operations (issue 11): ``GET /metrics`` in the Prometheus text format, and the log lines an operator
reads (one per delivery attempt, dead letters, auto-disabled subscribers, job state changes), in text
and in JSON. The web app serves its own metrics; ``upscale-relay worker`` serves its own on
``--metrics-port``."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from dispatch.model import event_id
from fixtures.harness import free_port, serve_in_thread, wait_until
from receiver.app import create_app
from receiver.fakes import SOURCE_IMAGE
from receiver.fakes.subscriber import Behaviour, create_subscriber
from receiver.logs import JSON_FIELDS, RedactingJsonFormatter, uvicorn_log_config
from receiver.metrics import RelayMetrics
from receiver.settings import Settings
from tests.procs import RelayProcess, open_test_store, relay_environ, seed_succeeded_jobs, wait_while_alive
from tests.relay_env import API_TOKEN, RelayEnv, relay_env

APIXO_JOB = {"input": {"image_urls": [SOURCE_IMAGE]}}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def scrape(env: RelayEnv) -> str:
    answer = env.client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return answer.text


@pytest.fixture
def env(tmp_path: Path) -> Iterator[RelayEnv]:
    with relay_env(tmp_path) as running:
        yield running


def test_scrape_after_a_callback_and_a_delivery(env: RelayEnv) -> None:
    """A job submitted, called back and delivered moves the counters by exactly what happened; the
    gauges read from the database are present; without the token the answer is 401."""
    env.subscribe()
    job = env.submit("apixo", APIXO_JOB)
    env.wait_status(job["id"], "succeeded")
    wait_until(
        lambda: (
            (value(scrape(env), "relay_delivery_attempts_total", outcome="succeeded") or 0) >= 1
            and value(scrape(env), "relay_deliveries_due") == 0
        ),  # the attempt's outcome is committed
        message="the delivery attempt was never counted (or its delivery stayed due)",
    )
    text = scrape(env)
    assert value(text, "relay_callbacks_total", vendor="apixo", verdict="applied") == 1
    assert value(text, "relay_vendor_submits_total", vendor="apixo", outcome="accepted") == 1
    assert value(text, "relay_vendor_submit_duration_seconds_count", vendor="apixo") == 1
    assert value(text, "relay_events_total", type="job.queued") == 1
    assert value(text, "relay_events_total", type="job.succeeded") == 1
    assert value(text, "relay_delivery_attempts_total", outcome="succeeded") == 1
    assert value(text, "relay_delivery_attempt_duration_seconds_count", outcome="succeeded") == 1
    assert value(text, "relay_delivery_attempt_duration_seconds_bucket", outcome="succeeded", le="+Inf") == 1
    for gauge in ("relay_deliveries_due", "relay_dead_letters", "relay_disabled_subscribers"):
        assert value(text, gauge) == 0, gauge
    assert value(text, "relay_oldest_due_delivery_age_seconds") == 0
    assert "# TYPE relay_status_polls_total counter" in text
    assert "# TYPE relay_status_poll_duration_seconds histogram" in text

    refused = httpx.get(f"{env.relay.url}/metrics")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"]["code"] == "unauthorized"
    assert httpx.get(f"{env.relay.url}/metrics", headers={"Authorization": "Bearer no"}).status_code == 401


def test_metrics_public_needs_no_token(tmp_path: Path) -> None:
    """RELAY_METRICS_PUBLIC=true opens /metrics (only it: /v1 still needs the token)."""
    with relay_env(tmp_path, metrics_public=True, run_worker=False) as env:
        open_scrape = httpx.get(f"{env.relay.url}/metrics")
        assert open_scrape.status_code == 200
        assert value(open_scrape.text, "relay_deliveries_due") == 0
        assert httpx.get(f"{env.relay.url}/v1/jobs").status_code == 401


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    """Two apps in one process do not share (or collide on) metric objects."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", api_token=SecretStr(API_TOKEN))
    first, second = create_app(settings), create_app(settings)
    assert first.state.metrics.registry is not second.state.metrics.registry
    first.state.metrics.callback("apixo", "applied")
    assert (
        value(
            second.state.metrics.exposition().decode(),
            "relay_callbacks_total",
            vendor="apixo",
            verdict="applied",
        )
        is None
    )


def test_events_are_counted_by_type() -> None:
    metrics = RelayMetrics()
    metrics.emitted(["job.queued", "job.running", "job.progress", "job.progress", "job.succeeded"])
    text = metrics.exposition().decode()
    assert value(text, "relay_events_total", type="job.progress") == 2
    assert value(text, "relay_events_total", type="job.succeeded") == 1


def _json_lines(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    """The records as the JSON format prints them, each line parsed back."""
    formatter = RedactingJsonFormatter(timestamp=True, **JSON_FIELDS)
    return [json.loads(formatter.format(r)) for r in records]


def test_attempt_dead_letter_disabled_and_state_change_lines(
    env: RelayEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscriber answering 410: one INFO line for the attempt, a WARNING for the dead letter and one
    for the disabled subscriber; the job's changes of state are INFO lines. In JSON each carries its
    fields as keys."""
    caplog.set_level(logging.INFO, logger="upscale_relay")
    sub = env.subscribe()
    env.sub_log.program(Behaviour.gone(), name="main")
    job = env.submit("apixo", APIXO_JOB)
    eid = event_id(job["id"], "job.succeeded")

    def lines() -> list[dict[str, Any]]:
        return _json_lines([r for r in caplog.records if r.name.startswith("upscale_relay")])

    wait_until(
        lambda: any(line["message"].startswith(f"subscriber {sub['id']} disabled") for line in lines()),
        message="no disabled line",
    )
    got = lines()
    (attempt,) = [g for g in got if g["message"].startswith("delivery attempt")]
    assert attempt["level"] == "INFO" and attempt["logger"] == "upscale_relay.worker"
    assert attempt["event_id"] == eid and attempt["subscriber_id"] == sub["id"]
    assert (attempt["attempt"], attempt["status_code"], attempt["outcome"]) == (1, 410, "failed")
    assert attempt["delivery_status"] == "dead" and attempt["next_attempt_at"] is None
    assert isinstance(attempt["duration_ms"], int) and attempt["timestamp"]
    (dead,) = [g for g in got if g["message"].startswith("dead letter")]
    assert dead["level"] == "WARNING" and dead["event_id"] == eid and dead["dead_letter"] is True
    (disabled,) = [g for g in got if g["message"].startswith("subscriber")]
    assert disabled["level"] == "WARNING" and "410" in disabled["disabled_reason"]
    changes = [g for g in got if g.get("job_id") == job["id"] and "previous_status" in g]
    assert changes and changes[-1]["status"] == "succeeded" and changes[-1]["via"] == "callback"
    assert all(c["level"] == "INFO" and c["vendor"] == "apixo" for c in changes)
    text = scrape(env)
    assert value(text, "relay_dead_letters") == 1 and value(text, "relay_disabled_subscribers") == 1
    assert value(text, "relay_delivery_attempts_total", outcome="failed") == 1


def test_retrying_attempt_names_its_next_attempt_time(
    env: RelayEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed attempt with retries left logs when the next one is due; the retry succeeds."""
    caplog.set_level(logging.INFO, logger="upscale_relay.worker")
    env.subscribe()
    env.sub_log.program(Behaviour.fail(500, times=1), name="main")
    job = env.submit("artnex", {"image": SOURCE_IMAGE})
    eid = event_id(job["id"], "job.succeeded")
    wait_until(lambda: len(env.sub_log.by_event_id("main").get(eid, [])) == 2, message="no retry")
    wait_until(
        lambda: len([r for r in caplog.records if r.getMessage().startswith("delivery attempt")]) == 2,
        message="attempts not logged",
    )
    first, second = _json_lines([r for r in caplog.records if r.getMessage().startswith("delivery attempt")])
    assert (first["attempt"], first["status_code"], first["delivery_status"]) == (1, 500, "retrying")
    assert first["next_attempt_at"].endswith("Z") and "next attempt at" in first["message"]
    assert (second["attempt"], second["status_code"], second["delivery_status"]) == (2, 200, "succeeded")


def test_json_log_config_prints_parseable_redacted_lines() -> None:
    """RELAY_LOG_FORMAT=json: every handler's formatter is the JSON one, and the configured level
    applies to the relay's loggers."""
    config = uvicorn_log_config("WARNING", "json")
    assert config["formatters"]["default"]["()"] == "receiver.logs.RedactingJsonFormatter"
    assert config["formatters"]["access"]["()"] == "receiver.logs.RedactingJsonAccessFormatter"
    assert config["loggers"]["upscale_relay"]["level"] == "WARNING"
    assert all("redact_secrets" in h["filters"] for h in config["handlers"].values())
    with pytest.raises(ValueError):
        uvicorn_log_config("INFO", "xml")


def test_worker_serves_its_own_metrics_and_logs_json(tmp_path: Path, relay_database: str) -> None:
    """``upscale-relay worker --metrics-port`` serves the worker's counters (the delivery it made),
    behind the admin token; with RELAY_LOG_FORMAT=json its attempt line is a JSON object with the
    fields."""
    sub_app, sub_log = create_subscriber()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    auth = {"Authorization": "Bearer worker-token-0123456789abcdef"}
    with serve_in_thread(sub_app) as subscriber:
        env = relay_environ(
            relay_database,
            api_token="worker-token-0123456789abcdef",
            allow_private_targets=True,
            poll_interval=0.05,
            log_format="json",
        )
        store = open_test_store(relay_database)
        try:
            sub, _secret = store.create_subscriber(f"{subscriber.url}/hooks/w")
            (eid,) = seed_succeeded_jobs(store, 1)
        finally:
            store.close()
        with RelayProcess.start("worker", ["worker", "--metrics-port", str(port)], env, tmp_path) as worker:
            wait_while_alive(worker, lambda: sub_log.count() >= 1, timeout=15, message="never delivered")

            def counted() -> bool:
                try:
                    answer = httpx.get(url, headers=auth, timeout=2)
                except httpx.TransportError:
                    return False
                return value(answer.text, "relay_delivery_attempts_total", outcome="succeeded") == 1

            wait_while_alive(worker, counted, timeout=15, message="the worker's /metrics never counted it")
            assert httpx.get(url).status_code == 401
            text = httpx.get(url, headers=auth).text
            assert value(text, "relay_deliveries_due") == 0 and value(text, "relay_dead_letters") == 0
            wait_while_alive(worker, lambda: eid in worker.stderr(), message="no attempt line")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait_exit(15) == 0, worker.stderr()[-2000:]
            printed = worker.stderr()
    lines = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    (attempt,) = [line for line in lines if line.get("event_id") == eid and "attempt" in line]
    assert attempt["subscriber_id"] == sub.id and attempt["status_code"] == 200 and attempt["level"] == "INFO"
    assert "worker-token-0123456789abcdef" not in printed
