"""Per-host circuit breaker: a dead receiver is left alone for a while, then probed.

Closed: everything goes. After ``threshold`` consecutive failures it opens for ``cooldown``
seconds (5 s, doubling on each re-open up to 60 s). Then it is half-open: one probe goes; success
closes it, failure re-opens it. The clock (monotonic seconds) is passed in. A caller that is
refused delays the delivery until ``reopens_at``; it never drops it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: error classes that say nothing about the receiver's health
NOT_HOST_FAILURES = frozenset({"refused_destination", "invalid_url"})


def counts_as_failure(status: int | None, error_class: str | None) -> bool:
    """Whether an attempt's result counts against its host: no answer, 5xx or 429."""
    if error_class is not None:
        return error_class not in NOT_HOST_FAILURES
    return status is None or status >= 500 or status == 429


@dataclass(slots=True)
class _HostState:
    failures: int = 0
    #: seconds the last opening lasts; 0 while the breaker has never opened
    cooldown: float = 0.0
    #: when the open breaker turns half-open; None while closed
    reopens_at: float | None = None
    #: when the half-open probe was let through; None when no probe is out
    probe_since: float | None = None


class CircuitBreaker:
    """Breakers for many hosts, keyed by whatever host string the caller uses."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 5.0,
        max_cooldown: float = 60.0,
        probe_timeout: float = 60.0,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self.first_cooldown = cooldown
        self.max_cooldown = max_cooldown
        #: a probe that reported nothing for this long is presumed lost; another may go
        self.probe_timeout = probe_timeout
        self._hosts: dict[str, _HostState] = {}

    def allows(self, host: str, now: float) -> bool:
        """Whether a request to ``host`` may go now; in half-open state this claims the probe."""
        state = self._hosts.get(host)
        if state is None or state.reopens_at is None:
            return True
        if not self._may_probe(state, state.reopens_at, now):
            return False
        state.probe_since = now
        return True

    def reopens_at(self, host: str) -> float | None:
        """When ``host`` may next be tried, or None while its breaker is closed."""
        state = self._hosts.get(host)
        if state is None or state.reopens_at is None:
            return None
        if state.probe_since is not None:
            return max(state.reopens_at, state.probe_since + self.probe_timeout)
        return state.reopens_at

    def record(self, host: str, ok: bool, now: float) -> None:
        """Report how an attempt to ``host`` went (see ``counts_as_failure``)."""
        if ok:
            self._hosts.pop(host, None)
            return
        state = self._hosts.setdefault(host, _HostState())
        if state.reopens_at is None:
            state.failures += 1
            if state.failures >= self.threshold:
                self._open(state, now, self.first_cooldown)
        elif now >= state.reopens_at:
            # the half-open probe (or a late straggler after the cooldown) failed
            self._open(state, now, min(state.cooldown * 2, self.max_cooldown))
        # a failure while open came from a request sent before it opened: nothing new

    def _open(self, state: _HostState, now: float, cooldown: float) -> None:
        state.cooldown = cooldown
        state.reopens_at = now + cooldown
        state.probe_since = None

    def open_hosts(self, now: float) -> list[str]:
        """Hosts a request may not go to at ``now``, sorted."""
        return sorted(
            host
            for host, state in self._hosts.items()
            if state.reopens_at is not None and not self._may_probe(state, state.reopens_at, now)
        )

    def _may_probe(self, state: _HostState, reopens_at: float, now: float) -> bool:
        if now < reopens_at:
            return False
        return state.probe_since is None or now >= state.probe_since + self.probe_timeout
