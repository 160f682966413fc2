"""When to try a failed delivery again: a policy object that returns decisions and never sleeps.

The delivery worker asks :meth:`RetryPolicy.next_attempt_at` after each failed attempt and stores the
answer (``deliveries.next_attempt_at``) or dead-letters the delivery when it is ``None``. The default
schedule is Standard Webhooks' (https://www.standardwebhooks.com/, "Retry schedule"): an immediate
first try, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h later, each jittered.

Example::

    policy = RetryPolicy()
    policy.next_attempt_at(1, now=1_790_000_000.0, rng=random.Random())   # ≈ 1_790_000_005.0 (± 20 %)
    policy.next_attempt_at(10, now=1_790_000_000.0, rng=random.Random())  # None: dead letter
"""

from __future__ import annotations

import email.utils
import math
import random
from dataclasses import dataclass
from datetime import UTC

from dispatch.errors import ValidationFailed

DEFAULT_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
"""Seconds to wait after attempt 1, 2, ... 9 (Standard Webhooks "Retry schedule")."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retry delays in seconds, with multiplicative jitter.

    ``schedule[n - 1]`` is the base delay after the n-th failed attempt; ``jitter`` (0 ≤ jitter ≤ 1)
    spreads each delay uniformly over ``[base * (1 - jitter), base * (1 + jitter)]`` so that deliveries
    failing together do not retry together. ``max_attempts`` is ``len(schedule) + 1`` (the first try
    is immediate). Raises :class:`ValidationFailed` for a negative delay or a jitter outside [0, 1].
    """

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.jitter <= 1:
            raise ValidationFailed(f"retry jitter must be between 0 and 1, got {self.jitter}")
        if any(not math.isfinite(d) or d < 0 for d in self.schedule):
            raise ValidationFailed(f"retry delays must be finite seconds ≥ 0, got {self.schedule}")

    @property
    def max_attempts(self) -> int:
        """Total attempts including the immediate first one: ``len(schedule) + 1`` (10 by default)."""
        return len(self.schedule) + 1

    def delay(self, attempts_made: int, rng: random.Random) -> float | None:
        """Seconds to wait after ``attempts_made`` failed attempts, or ``None`` when none are left.

        Formula: ``schedule[attempts_made - 1] * rng.uniform(1 - jitter, 1 + jitter)``. With the
        default policy ``delay(1, rng)`` is in [4, 6] and ``delay(10, rng)`` is ``None``.
        Raises ``ValueError`` if ``attempts_made < 1``.
        """
        if attempts_made < 1:
            raise ValueError(f"attempts_made must be ≥ 1, got {attempts_made}")
        if attempts_made > len(self.schedule):
            return None
        return self.schedule[attempts_made - 1] * rng.uniform(1 - self.jitter, 1 + self.jitter)

    def next_attempt_at(
        self, attempts_made: int, now: float, *, retry_after: float | None = None, rng: random.Random
    ) -> float | None:
        """Unix seconds of the next attempt after ``attempts_made`` failures, or ``None`` (dead letter).

        ``now`` is unix seconds. ``retry_after`` is the subscriber's ``Retry-After`` in seconds (see
        :func:`parse_retry_after`); it is honoured but clamped to ``[scheduled, 2 * scheduled]``, where
        ``scheduled`` is :meth:`delay`, so a subscriber can slow retries down at most twofold and
        never speed them up. Formula: ``now + min(max(retry_after, scheduled), 2 * scheduled)``.
        """
        scheduled = self.delay(attempts_made, rng)
        if scheduled is None:
            return None
        wait = scheduled if retry_after is None else min(max(retry_after, scheduled), 2 * scheduled)
        return now + wait


def parse_retry_after(value: str | None, now: float, *, cap: float | None = None) -> float | None:
    """A ``Retry-After`` header (RFC 9110 §10.2.3) as seconds from ``now`` (unix seconds), ≥ 0.

    The one parser of the header, for subscribers' answers (delivery retries) and vendors' answers
    (vendor calls, submit retries). Accepts delay-seconds (``"120"`` → ``120.0``) or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"`` → seconds between ``now`` and then, ``0.0`` if past); with
    ``cap`` (seconds) the result is at most ``cap`` (``parse_retry_after("3600", now, cap=30)`` → ``30.0``).
    Returns ``None`` for a missing, empty or malformed value (``"soon"``, ``"1.5"``, ``"-1"``); never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        try:
            seconds = float(int(text))
        except (OverflowError, ValueError):  # past float's range, or more digits than int() reads
            return None
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # "-0000" zone: RFC 5322 says UTC with unknown local zone
        seconds = max(0.0, when.timestamp() - now)
    return seconds if cap is None else min(seconds, cap)
