from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callhook.domain.retry import (
    Decision,
    Outcome,
    RetryPolicy,
    backoff,
    decide,
    lifetime,
    parse_retry_after,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy()
LATER = NOW + timedelta(days=1)


def _decide(
    *,
    attempts: int = 1,
    status: int | None = None,
    error_class: str | None = None,
    retry_after: float | None = None,
    expires_at: datetime = LATER,
    max_attempts: int | None = None,
    jitter: float = 1.0,
    policy: RetryPolicy = POLICY,
) -> Decision:
    return decide(
        policy,
        attempts=attempts,
        status=status,
        error_class=error_class,
        retry_after=retry_after,
        now=NOW,
        expires_at=expires_at,
        max_attempts=max_attempts,
        jitter=jitter,
    )


def test_outcome_values_are_the_stored_states() -> None:
    assert [o.value for o in Outcome] == ["delivered", "pending", "failed", "expired"]


@pytest.mark.parametrize(("event_type", "seconds"), [(0, 60), (1, 60), (2, 86400), (3, 86400)])
def test_ring_events_live_briefly_answer_and_hangup_long(event_type: int, seconds: float) -> None:
    assert lifetime(POLICY, event_type) == seconds
    assert lifetime(RetryPolicy(ring_expiry=5, retry_for=10), 4) == 10


def test_unknown_event_type() -> None:
    with pytest.raises(ValueError, match="0, 1, 2, 3 or 4"):
        lifetime(POLICY, 5)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    decision = _decide(status=status)
    assert decision == Decision(Outcome.DELIVERED, None, f"receiver answered {status}")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_4xx_other_than_408_and_429_is_final(status: int) -> None:
    decision = _decide(status=status)
    assert decision.outcome is Outcome.FAILED
    assert decision.next_at is None
    assert decision.reason == f"receiver answered {status}; 4xx other than 408/429 is final"


@pytest.mark.parametrize("status", [100, 199, 301, 302, 304, 307])
def test_1xx_and_3xx_are_final(status: int) -> None:
    decision = _decide(status=status)
    assert decision.outcome is Outcome.FAILED
    assert f"receiver answered {status}" in decision.reason


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retried_statuses(status: int) -> None:
    decision = _decide(status=status)
    assert decision.outcome is Outcome.RETRY
    assert decision.next_at == NOW + timedelta(seconds=1)
    assert decision.reason == f"receiver answered {status}; retry in 1.0 s"


@pytest.mark.parametrize("error_class", ["connect_error", "timeout", "tls_error", "protocol_error"])
def test_network_errors_are_retried(error_class: str) -> None:
    assert _decide(error_class=error_class).outcome is Outcome.RETRY


@pytest.mark.parametrize("error_class", ["refused_destination", "invalid_url"])
def test_refused_destination_and_invalid_url_are_final(error_class: str) -> None:
    decision = _decide(error_class=error_class, attempts=1)
    assert decision.outcome is Outcome.FAILED
    assert "not retried" in decision.reason


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [backoff(POLICY, attempts, 1.0) for attempts in range(1, 13)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]
    assert backoff(POLICY, 10_000, 1.0) == 600


def test_jitter_spreads_the_delay_between_half_and_all_of_it() -> None:
    assert backoff(POLICY, 4, 0.0) == 4
    assert backoff(POLICY, 4, 0.5) == 6
    assert backoff(POLICY, 4, 1.0) == 8
    decision = _decide(status=503, attempts=4, jitter=0.0)
    assert decision.next_at == NOW + timedelta(seconds=4)


def test_retry_after_is_never_undercut_but_capped() -> None:
    assert _decide(status=429, retry_after=30).next_at == NOW + timedelta(seconds=30)
    assert _decide(status=429, retry_after=0.1, attempts=3).next_at == NOW + timedelta(seconds=4)
    assert _decide(status=503, retry_after=10**9).next_at == NOW + timedelta(seconds=600)
    assert _decide(status=503, retry_after=-5).next_at == NOW + timedelta(seconds=1)


def test_max_attempts_from_the_url_gives_up() -> None:
    assert _decide(status=500, attempts=3, max_attempts=4).outcome is Outcome.RETRY
    decision = _decide(status=500, attempts=4, max_attempts=4)
    assert decision == Decision(
        Outcome.FAILED, None, "receiver answered 500; gave up after 4 attempts"
    )
    assert (
        _decide(error_class="timeout", max_attempts=1).reason == "timeout; gave up after 1 attempt"
    )


def test_expires_when_the_next_attempt_would_be_too_late() -> None:
    expires_at = NOW + timedelta(seconds=3)
    assert _decide(status=503, attempts=2, expires_at=expires_at).outcome is Outcome.RETRY
    decision = _decide(status=503, attempts=3, expires_at=expires_at)
    assert decision.outcome is Outcome.EXPIRED
    assert decision.next_at is None
    assert decision.reason == (
        "receiver answered 503; gave up: next attempt would be after the delivery's lifetime"
    )
    retry_after = _decide(status=429, retry_after=60, expires_at=NOW + timedelta(seconds=59))
    assert retry_after.outcome is Outcome.EXPIRED


def test_an_attempt_has_a_status_or_an_error() -> None:
    with pytest.raises(ValueError, match="status or an error"):
        _decide()
    with pytest.raises(ValueError, match="at least 1"):
        _decide(status=500, attempts=0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Sat, 01 Mar 2025 12:01:30 GMT", 90.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),
        ("soon", None),
        ("-1", None),
        ("1.5", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds
