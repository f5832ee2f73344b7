"""After an attempt: delivered, retry when, or give up, and why (design section 4).

Retried: connection errors, timeouts, 5xx, 429 and 408, with capped exponential backoff and
jitter (passed in) that never undercuts the receiver's Retry-After. Final: any other answer,
a refused destination, an invalid URL. Ring events (Dial-In, Dial-Out) live briefly; Answer and
Hangup keep retrying for long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

#: error classes that no retry can fix
FINAL_ERRORS = frozenset({"refused_destination", "invalid_url"})
#: statuses below 500 that are still worth retrying
RETRIED_STATUSES = frozenset({408, 429})
RING_TYPES = frozenset({0, 1})
LONG_LIVED_TYPES = frozenset({2, 3, 4})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Seconds: the first retry delay, the largest one, and how long deliveries live."""

    first_delay: float = 1.0
    max_delay: float = 600.0
    ring_expiry: float = 60.0
    retry_for: float = 86400.0


def lifetime(policy: RetryPolicy, event_type: int) -> float:
    """Seconds a delivery of ``event_type`` may keep being attempted after it was created."""
    if event_type in RING_TYPES:
        return policy.ring_expiry
    if event_type in LONG_LIVED_TYPES:
        return policy.retry_for
    raise ValueError(f"event type must be 0, 1, 2, 3 or 4, not {event_type!r}")


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "pending"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    #: when to attempt again (RETRY only)
    next_at: datetime | None
    #: one line for people: what happened and what follows
    reason: str


def backoff(policy: RetryPolicy, attempts: int, jitter: float) -> float:
    """Seconds before the next attempt after ``attempts`` attempts (jitter in 0..1)."""
    exponent = min(attempts - 1, 64)  # 2**64 seconds is far past any max_delay
    capped = min(policy.first_delay * 2.0**exponent, policy.max_delay)
    return capped * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))


def _what_happened(status: int | None, error_class: str | None) -> tuple[str, bool]:
    """A description of the attempt and whether a retry could help."""
    if error_class is not None:
        what = error_class.replace("_", " ")
        if error_class in FINAL_ERRORS:
            return f"{what}; not retried", False
        return what, True
    if status is None:
        raise ValueError("an attempt has either a status or an error class")
    answered = f"receiver answered {status}"
    if status >= 500 or status in RETRIED_STATUSES:
        return answered, True
    if 400 <= status < 500:
        return f"{answered}; 4xx other than 408/429 is final", False
    if 300 <= status < 400:
        return f"{answered}; redirects are not followed, 3xx is final", False
    return f"{answered}; only 2xx is success", False


def decide(
    policy: RetryPolicy,
    *,
    attempts: int,
    status: int | None,
    error_class: str | None,
    retry_after: float | None,
    now: datetime,
    expires_at: datetime,
    max_attempts: int | None,
    jitter: float,
) -> Decision:
    """What follows an attempt; ``attempts`` counts the attempts made, this one included."""
    if attempts < 1:
        raise ValueError("attempts counts the attempt just made, so it is at least 1")
    if error_class is None and status is not None and 200 <= status < 300:
        return Decision(Outcome.DELIVERED, None, f"receiver answered {status}")
    what, retryable = _what_happened(status, error_class)
    if not retryable:
        return Decision(Outcome.FAILED, None, what)
    if max_attempts is not None and attempts >= max_attempts:
        plural = "attempt" if attempts == 1 else "attempts"
        return Decision(Outcome.FAILED, None, f"{what}; gave up after {attempts} {plural}")
    delay = backoff(policy, attempts, jitter)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), policy.max_delay))
    next_at = now + timedelta(seconds=delay)
    if next_at > expires_at:
        return Decision(
            Outcome.EXPIRED,
            None,
            f"{what}; gave up: next attempt would be after the delivery's lifetime",
        )
    return Decision(Outcome.RETRY, next_at, f"{what}; retry in {delay:.1f} s")


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from ``now`` named by a Retry-After header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
