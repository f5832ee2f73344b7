from __future__ import annotations

import pytest

from callhook.delivery.breaker import CircuitBreaker, counts_as_failure

HOST = "hooks.example.com"


def _trip(breaker: CircuitBreaker, now: float, host: str = HOST) -> None:
    for _ in range(breaker.threshold):
        breaker.record(host, ok=False, now=now)


def test_closed_until_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker()
    for _ in range(4):
        breaker.record(HOST, ok=False, now=0.0)
    assert breaker.allows(HOST, 0.0)
    assert breaker.reopens_at(HOST) is None
    breaker.record(HOST, ok=False, now=1.0)
    assert not breaker.allows(HOST, 1.0)
    assert breaker.reopens_at(HOST) == 6.0
    assert breaker.open_hosts(1.0) == [HOST]


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=3)
    for ok in (False, False, True, False, False):
        breaker.record(HOST, ok=ok, now=0.0)
    assert breaker.allows(HOST, 0.0)


def test_half_open_lets_one_probe_through() -> None:
    breaker = CircuitBreaker()
    _trip(breaker, 0.0)
    assert not breaker.allows(HOST, 4.9)
    assert breaker.open_hosts(5.0) == []
    assert breaker.allows(HOST, 5.0)  # the probe
    assert not breaker.allows(HOST, 5.1)
    assert breaker.open_hosts(5.1) == [HOST]
    breaker.record(HOST, ok=True, now=5.5)
    assert breaker.allows(HOST, 5.6)
    assert breaker.allows(HOST, 5.6)
    assert breaker.reopens_at(HOST) is None
    assert breaker.open_hosts(5.6) == []


def test_failed_probes_double_the_cooldown_up_to_the_cap() -> None:
    breaker = CircuitBreaker()
    _trip(breaker, 0.0)
    now, cooldowns = 0.0, []
    for _ in range(6):
        reopens = breaker.reopens_at(HOST)
        assert reopens is not None
        cooldowns.append(reopens - now)
        now = reopens
        assert breaker.allows(HOST, now)
        breaker.record(HOST, ok=False, now=now)
    assert cooldowns == [5, 10, 20, 40, 60, 60]


def test_success_after_reopening_starts_over_at_the_first_cooldown() -> None:
    breaker = CircuitBreaker()
    _trip(breaker, 0.0)
    assert breaker.allows(HOST, 5.0)
    breaker.record(HOST, ok=False, now=5.0)  # reopens for 10 s
    assert breaker.allows(HOST, 15.0)
    breaker.record(HOST, ok=True, now=15.0)
    _trip(breaker, 20.0)
    assert breaker.reopens_at(HOST) == 25.0


def test_failures_of_requests_sent_before_opening_change_nothing() -> None:
    breaker = CircuitBreaker()
    _trip(breaker, 0.0)
    breaker.record(HOST, ok=False, now=2.0)
    assert breaker.reopens_at(HOST) == 5.0


def test_a_lost_probe_is_replaced_after_the_probe_timeout() -> None:
    breaker = CircuitBreaker(probe_timeout=30.0)
    _trip(breaker, 0.0)
    assert breaker.allows(HOST, 5.0)
    assert breaker.reopens_at(HOST) == 35.0
    assert not breaker.allows(HOST, 34.0)
    assert breaker.allows(HOST, 35.0)


def test_hosts_are_independent() -> None:
    breaker = CircuitBreaker(threshold=2)
    _trip(breaker, 0.0, "b.example")
    _trip(breaker, 0.0, "a.example")
    assert breaker.allows("c.example", 0.0)
    assert breaker.open_hosts(1.0) == ["a.example", "b.example"]
    breaker.record("a.example", ok=True, now=1.0)
    assert breaker.open_hosts(1.0) == ["b.example"]


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(threshold=0)


@pytest.mark.parametrize(
    ("status", "error_class", "failure"),
    [
        (200, None, False),
        (404, None, False),
        (408, None, False),
        (429, None, True),
        (500, None, True),
        (503, None, True),
        (None, "timeout", True),
        (None, "connect_error", True),
        (None, "tls_error", True),
        (None, "protocol_error", True),
        (None, "refused_destination", False),
        (None, "invalid_url", False),
    ],
)
def test_what_counts_against_a_host(
    status: int | None, error_class: str | None, failure: bool
) -> None:
    assert counts_as_failure(status, error_class) is failure
