"""What the composition root hands to the routes through ``app.state.callhook``."""

from __future__ import annotations

from dataclasses import dataclass, field

from callhook.domain.rate_limit import RateLimiter
from callhook.oauth import OAuth
from callhook.service import Service


@dataclass(frozen=True, slots=True)
class AppState:
    service: Service
    oauth: OAuth
    public_url: str = ""
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0, 1))
