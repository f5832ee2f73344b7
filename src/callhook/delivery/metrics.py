"""Prometheus metrics of one process, in their own registry (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "callhook_deliveries",
            "Deliveries finished by this process, by outcome (delivered, failed, expired).",
            ["outcome"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "callhook_delivery_attempts",
            "Attempts made by this process, by result (2xx, 4xx, 5xx, error class).",
            ["result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "callhook_attempt_latency_seconds",
            "Time from sending a request to its answer (or failure).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "callhook_queue_depth",
            "Deliveries waiting to be sent or retried (all processes; read at scrape time).",
            registry=self.registry,
        )
        self.open_breakers = Gauge(
            "callhook_open_breakers",
            "Receiving hosts whose circuit breaker is open in this process.",
            registry=self.registry,
        )
        self.accepted = Counter(
            "callhook_call_events",
            "Call events accepted by the ingest API of this process.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def result_label(status: int | None, error_class: str | None) -> str:
    if status is not None:
        return f"{status // 100}xx"
    return error_class or "error"
