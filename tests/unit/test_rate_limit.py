from __future__ import annotations

from callhook.domain.rate_limit import RateLimiter, retry_after_seconds


def test_bursts_then_refills_at_the_rate() -> None:
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.check("app", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("app", 0.0)
    assert wait == 0.5
    assert retry_after_seconds(wait) == 1
    assert limiter.check("other", 0.0) == 0.0  # keys are independent
    assert limiter.check("app", 0.5) == 0.0
    assert limiter.check("app", 0.5) > 0


def test_zero_rate_disables() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    assert all(limiter.check("app", 0.0) == 0.0 for _ in range(1000))
