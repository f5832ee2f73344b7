"""Composition root: builds the store, services and the ASGI app from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp

from callhook.api.app import create_app
from callhook.config import Settings
from callhook.domain.rate_limit import RateLimiter
from callhook.oauth import OAuth
from callhook.provisioning import Provisioning
from callhook.service import Service
from callhook.store import migrate
from callhook.store.database import create_engine, describe
from callhook.wiring_types import AppState

log = logging.getLogger(__name__)


@dataclass
class Components:
    settings: Settings
    engine: AsyncEngine
    service: Service
    provisioning: Provisioning
    app: ASGIApp
    oauth: OAuth


def build(settings: Settings) -> Components:
    engine = create_engine(settings.effective_database_url)
    service = Service(engine)
    oauth = OAuth(engine, token_ttl=settings.token_ttl)
    limiter = RateLimiter(settings.rate_limit, burst=settings.rate_limit * 10)
    state = AppState(service=service, oauth=oauth, public_url=settings.public_url, limiter=limiter)
    return Components(
        settings=settings,
        engine=engine,
        service=service,
        provisioning=Provisioning(engine),
        app=create_app(state),
        oauth=oauth,
    )


async def prepare_database(components: Components) -> tuple[str | None, str]:
    """Apply pending migrations; returns (revision before, revision after)."""
    before, after = await migrate.upgrade(components.engine)
    if before != after:
        log.info(
            "database migrated url=%s from=%s to=%s",
            describe(components.settings.effective_database_url),
            before,
            after,
        )
    return before, after
