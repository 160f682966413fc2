"""Failed admin-token attempts per client address: console sign-ins and wrong bearer tokens share one
budget, and an address past it gets 429 with ``Retry-After`` until its window ends.

Counting is the ``limits`` library's fixed window in process memory (its entries expire with their
window, so memory stays bounded by the addresses seen in one window). Each process counts its own
attempts: with N web processes an address gets at most N times the budget, still far too few for
guessing a token of 24 or more characters.

Example::

    throttle = AuthThrottle(limit=10, window=60)
    throttle.retry_after("203.0.113.7")   # None: may try
    throttle.failed("203.0.113.7")        # a wrong token; after 10 of them in 60 s:
    throttle.retry_after("203.0.113.7")   # 42: seconds until it may try again (429, Retry-After: 42)
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from starlette.types import Scope

from dispatch.errors import TooManyRequests


class AuthThrottle:
    """At most ``limit`` failed attempts per client address in a window of ``window`` seconds."""

    def __init__(self, limit: int = 10, window: int = 60) -> None:
        self.limit = limit
        self.window = window
        self._item = RateLimitItemPerSecond(limit, window)
        self._limiter = FixedWindowRateLimiter(MemoryStorage())
        self._last_failure = -math.inf  # time.monotonic() of the latest failure, anywhere

    def retry_after(self, address: str) -> int | None:
        """Seconds (at least 1) until ``address`` may try the token again, or ``None`` when it may
        now. Costs nothing while no attempt failed in the last window (the common case)."""
        if time.monotonic() - self._last_failure > self.window:
            return None
        if self._limiter.test(self._item, address):
            return None
        reset = self._limiter.get_window_stats(self._item, address).reset_time
        return max(1, math.ceil(reset - time.time()))

    def failed(self, address: str) -> None:
        """Count one failed attempt (a wrong token) from ``address``."""
        self._last_failure = time.monotonic()
        self._limiter.hit(self._item, address)

    def refusal(self, wait: int) -> TooManyRequests:
        """The error a throttled attempt gets: ``429`` naming the budget; send ``Retry-After: wait``."""
        return TooManyRequests(
            f"too many failed attempts with the admin token from this address ({self.limit} in"
            f" {self.window} s, RELAY_AUTH_FAILURE_LIMIT and RELAY_AUTH_FAILURE_WINDOW); try again in"
            f" {wait} s"
        )


def client_address(scope: Scope) -> str:
    """The client's address in an ASGI ``scope`` (``"203.0.113.7"``; uvicorn puts a trusted proxy's
    ``X-Forwarded-For`` there), or ``"unknown"``."""
    client = scope.get("client")
    if isinstance(client, (tuple, list)) and client:
        return str(client[0])
    return "unknown"
