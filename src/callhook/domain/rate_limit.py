"""Token buckets: how many requests an app may make, decided from counts and a clock."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``rate`` requests per second per key, with bursts of up to ``burst``; rate 0 disables."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._buckets: dict[object, Bucket] = {}

    def check(self, key: object, now: float) -> float:
        """Take one request for ``key``; 0 if allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()
            bucket = self._buckets[key] = Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
