"""The ingestion rate limit, on a fake clock."""

from api.ratelimit import SpanRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_admitted_then_refused_with_the_wait():
    clock = Clock()
    limiter = SpanRateLimiter(100, clock)
    assert limiter.admit("k", 150) == 0
    assert limiter.admit("k", 50) == 0
    assert limiter.admit("k", 100) == 1.0  # 100 spans at 100/s
    clock.now = 1.0
    assert limiter.admit("k", 100) == 0


def test_keys_do_not_share_a_bucket():
    limiter = SpanRateLimiter(10, Clock())
    assert limiter.admit("a", 20) == 0
    assert limiter.admit("a", 1) > 0
    assert limiter.admit("b", 20) == 0


def test_a_request_larger_than_the_burst_waits_for_a_full_bucket():
    clock = Clock()
    limiter = SpanRateLimiter(10, clock)
    assert limiter.admit("k", 1000) == 0  # full bucket: admitted whole
    assert limiter.admit("k", 1000) == 2.0
    clock.now = 2.0
    assert limiter.admit("k", 1000) == 0


def test_zero_rate_means_no_limit():
    limiter = SpanRateLimiter(0, Clock())
    assert all(limiter.admit("k", 10**6) == 0 for _ in range(10))
