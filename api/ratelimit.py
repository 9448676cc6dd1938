"""Per-key token buckets for ingestion, counted in spans, local to one API process."""

from __future__ import annotations

import time
from collections.abc import Callable


class SpanRateLimiter:
    """Allows `rate` spans a second per key with a burst of two seconds' worth.

    `admit` takes the whole request or none of it, so a request is never half accepted for
    rate reasons; when refused it says how long to wait, for the Retry-After header."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = 2 * rate
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)

    def admit(self, key: str, spans: int) -> float:
        """0 if admitted, else the seconds after which this many spans would be."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        tokens, updated = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - updated) * self._rate)
        # A request larger than the burst is admitted once the bucket is full, never starved.
        cost = min(spans, self._burst)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (cost - tokens) / self._rate
