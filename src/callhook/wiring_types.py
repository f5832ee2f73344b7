"""What the composition root hands to the routes through ``app.state.callhook``."""

from __future__ import annotations

from dataclasses import dataclass

from callhook.service import Service


@dataclass(frozen=True, slots=True)
class AppState:
    service: Service
    public_url: str = ""
