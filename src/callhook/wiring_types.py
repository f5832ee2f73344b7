"""What the composition root hands to the routes through ``app.state.callhook``."""

from __future__ import annotations

from dataclasses import dataclass, field

from callhook.delivery.metrics import Metrics
from callhook.delivery_log import DeliveryLog
from callhook.domain.rate_limit import RateLimiter
from callhook.ingest import Ingest
from callhook.oauth import OAuth
from callhook.service import Service
from callhook.signing_keys import SigningKeys
from callhook.sources.registry import SourceRegistry


@dataclass(frozen=True, slots=True)
class AppState:
    service: Service
    oauth: OAuth
    ingest: Ingest
    deliveries: DeliveryLog
    signing: SigningKeys
    sources: SourceRegistry
    metrics: Metrics = field(default_factory=Metrics)
    public_url: str = ""
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0, 1))
