"""Isolation (issue 4): one subscriber hanging until the delivery timeout does not delay another."""

from __future__ import annotations

import statistics
from pathlib import Path

from dispatch.model import event_id, parse_iso
from fixtures.harness import wait_until
from receiver.fakes import SOURCE_IMAGE
from receiver.fakes.subscriber import Behaviour
from tests.relay_env import RelayEnv, relay_env

DELIVERY_TIMEOUT = 2.0
# seconds from the event's creation to its arrival at the healthy subscriber: a healthy delivery that
# waited behind the hanging subscriber would wait at least one full delivery timeout
HEALTHY_WITHIN = DELIVERY_TIMEOUT
PER_SUBSCRIBER = 8
# A global cap only two above the per-subscriber one: the hanging subscriber may hold 8 slots, so the
# healthy one relies on the per-subscriber cap to find a free slot at all.
CONCURRENCY = PER_SUBSCRIBER + 2


def _submit_artnex(env: RelayEnv, count: int, tag: str) -> list[str]:
    ids = []
    for n in range(count):
        job = env.submit("artnex", {"image": SOURCE_IMAGE}, reference=f"{tag}-{n}")
        assert job["status"] == "succeeded", job
        ids.append(event_id(job["id"], "job.succeeded"))
    return ids


def test_hanging_subscriber_does_not_delay_a_healthy_one(tmp_path: Path) -> None:
    """While one subscriber hangs past the 2 s delivery timeout (its slots full, its retries due), a
    healthy subscriber receives every event sooner than one delivery timeout after the job's completion
    (had it waited behind the hanging one, it would have waited at least that long)."""
    with relay_env(
        tmp_path,
        delivery_timeout=DELIVERY_TIMEOUT,
        delivery_per_subscriber=PER_SUBSCRIBER,
        delivery_concurrency=CONCURRENCY,
    ) as env:
        env.subscribe("slow")
        env.subscribe("healthy")
        env.sub_log.program(Behaviour.hang_for(DELIVERY_TIMEOUT + 1.0), name="slow")

        first = _submit_artnex(env, 10, "before-timeouts")
        # Wait until the slow subscriber's first attempts timed out and further ones started, so the
        # second batch meets full slots and a backlog of retries.
        wait_until(
            lambda: env.sub_log.count("slow") > PER_SUBSCRIBER + 2,
            timeout=3 * DELIVERY_TIMEOUT + 2,
            message="the slow subscriber never got past its first attempts",
        )
        second = _submit_artnex(env, 10, "during-retries")
        events = first + second
        wait_until(
            lambda: set(events) <= set(env.sub_log.by_event_id("healthy")),
            timeout=5,
            message="the healthy subscriber is missing events",
        )

        delays: dict[str, float] = {}
        received = env.sub_log.by_event_id("healthy")
        for eid in events:
            created = parse_iso(env.ok(env.client.get(f"/v1/events/{eid}"), 200)["created_at"])
            assert created is not None
            delivery = received[eid][0]
            assert delivery.verified is True, delivery.verify_error
            delays[eid] = delivery.received_at - created.timestamp()

        slow_rows = env.ok(
            env.client.get("/v1/deliveries", params={"subscriber_id": _sub_id(env, "slow"), "limit": 100}),
            200,
        )["data"]
        timed_out = [d for d in slow_rows if d["last_error"] and "timeout" in d["last_error"]]

    ordered = sorted(delays.values())
    summary = (
        f"events={len(events)} healthy p50={statistics.median(ordered) * 1000:.0f} ms"
        f" max={ordered[-1] * 1000:.0f} ms; slow subscriber requests={env.sub_log.count('slow')}"
        f" timed-out deliveries={len(timed_out)}"
    )
    print(f"\nisolation: {summary}")
    assert timed_out, f"the slow subscriber never timed out; {summary}"
    late = {eid: round(d, 3) for eid, d in delays.items() if d >= HEALTHY_WITHIN}
    assert not late, f"healthy deliveries later than {HEALTHY_WITHIN} s: {late}; {summary}"


def _sub_id(env: RelayEnv, name: str) -> str:
    subs = env.ok(env.client.get("/v1/subscribers"), 200)["data"]
    (sub,) = [s for s in subs if s["url"].endswith(f"/hooks/{name}")]
    return str(sub["id"])
