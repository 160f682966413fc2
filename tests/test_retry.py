"""The retry policy: jittered Standard Webhooks schedule, exhaustion, Retry-After clamping and parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from dispatch.errors import ValidationFailed
from dispatch.retry import DEFAULT_SCHEDULE, RetryPolicy, parse_retry_after

NOW = 1_790_000_000.0


def test_default_schedule_is_standard_webhooks() -> None:
    """The default waits are 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h: ten attempts in all."""
    minutes, hours = 60, 3600
    expected = (5, 5 * minutes, 30 * minutes, 2 * hours, 5 * hours, 10 * hours, 14 * hours, 20 * hours)
    assert (*expected, 24 * hours) == DEFAULT_SCHEDULE
    assert RetryPolicy().max_attempts == 10


def test_delays_with_seeded_rng_stay_in_jitter_bounds() -> None:
    """With a seeded rng, attempts 1..9 get their scheduled delay ±20 % and attempt 10 gets None."""
    policy = RetryPolicy()
    rng = random.Random(1234)
    for attempts_made in range(1, 10):
        base = DEFAULT_SCHEDULE[attempts_made - 1]
        delay = policy.delay(attempts_made, rng)
        assert delay is not None
        assert base * 0.8 <= delay <= base * 1.2
    assert policy.delay(10, rng) is None
    assert policy.delay(11, rng) is None


def test_seeded_rng_is_reproducible() -> None:
    """The same seed gives the same delays, so decisions can be replayed in tests."""
    policy = RetryPolicy()
    first = [policy.delay(n, random.Random(7)) for n in range(1, 11)]
    assert first == [policy.delay(n, random.Random(7)) for n in range(1, 11)]


def test_jitter_bounds_over_many_rngs() -> None:
    """Across many seeds every delay stays within the bounds, and the jitter really spreads them."""
    policy = RetryPolicy()
    for attempts_made, base in enumerate(DEFAULT_SCHEDULE, start=1):
        delays = []
        for seed in range(500):
            delay = policy.delay(attempts_made, random.Random(seed))
            assert delay is not None
            delays.append(delay)
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert min(delays) < base * 0.9 and max(delays) > base * 1.1


def test_zero_jitter_and_custom_schedule() -> None:
    """With jitter 0 the delay is exactly the schedule, and max_attempts follows a custom schedule."""
    policy = RetryPolicy(schedule=(1, 2), jitter=0)
    rng = random.Random(0)
    assert policy.max_attempts == 3
    assert [policy.delay(n, rng) for n in (1, 2, 3)] == [1, 2, None]
    assert RetryPolicy(schedule=()).delay(1, rng) is None


def test_invalid_policy_and_attempts_refused() -> None:
    """A jitter outside [0, 1], a negative delay or attempts_made < 1 are refused."""
    with pytest.raises(ValidationFailed):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ValidationFailed):
        RetryPolicy(schedule=(5, -1))
    with pytest.raises(ValueError):
        RetryPolicy().delay(0, random.Random(0))


def test_next_attempt_at_adds_delay_to_now() -> None:
    """next_attempt_at is now plus the same jittered delay, and None once attempts are exhausted."""
    policy = RetryPolicy()
    at = policy.next_attempt_at(2, NOW, rng=random.Random(3))
    assert at == NOW + policy.delay(2, random.Random(3))  # type: ignore[operator]
    assert policy.next_attempt_at(10, NOW, rng=random.Random(3)) is None
    assert policy.next_attempt_at(10, NOW, retry_after=5, rng=random.Random(3)) is None


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (None, 300.0),  # nothing asked: the schedule
        (0.0, 300.0),  # cannot speed retries up
        (120.0, 300.0),
        (450.0, 450.0),  # honoured inside the window
        (600.0, 600.0),
        (86400.0, 600.0),  # at most twice the scheduled delay
    ],
)
def test_retry_after_is_clamped(retry_after: float | None, expected: float) -> None:
    """Retry-After is clamped to [scheduled, 2 x scheduled] around the jittered delay."""
    policy = RetryPolicy(jitter=0)
    at = policy.next_attempt_at(2, NOW, retry_after=retry_after, rng=random.Random(0))
    assert at == NOW + expected


def test_retry_after_clamp_uses_jittered_delay() -> None:
    """The clamp window is built on the jittered delay, not the bare schedule value."""
    policy = RetryPolicy()
    scheduled = policy.delay(1, random.Random(42))
    assert scheduled is not None
    assert policy.next_attempt_at(1, NOW, retry_after=1000, rng=random.Random(42)) == NOW + 2 * scheduled
    assert policy.next_attempt_at(1, NOW, retry_after=0, rng=random.Random(42)) == NOW + scheduled


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 0 ", 0.0), ("3600", 3600.0)],
)
def test_parse_retry_after_seconds(value: str, expected: float) -> None:
    """Delay-seconds (RFC 9110 §10.2.3) come back as float seconds."""
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP-date becomes the seconds between the injected now and that date."""
    when = datetime.fromtimestamp(NOW + 90, UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == pytest.approx(90.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 30) == pytest.approx(30.0)


def test_parse_retry_after_past_date_is_zero() -> None:
    """A date in the past means retry now: 0 seconds, never negative."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0.0


@pytest.mark.parametrize(
    "value", [None, "", "   ", "soon", "-5", "1.5", "12abc", "٣", "Wed, 32 Oct 2015 07:28:00 GMT", "9" * 400]
)
def test_parse_retry_after_garbage_is_none(value: str | None) -> None:
    """Missing, negative, fractional, non-ASCII or malformed values give None instead of raising."""
    assert parse_retry_after(value, NOW) is None
