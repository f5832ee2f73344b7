"""Composition root: builds the store, services, workers and the ASGI app from Settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp

from callhook import __version__
from callhook.api.app import create_app
from callhook.config import Settings
from callhook.delivery.breaker import CircuitBreaker
from callhook.delivery.guard import parse_networks
from callhook.delivery.metrics import Metrics
from callhook.delivery.sender import Sender
from callhook.delivery.worker import Worker, WorkerOptions
from callhook.delivery_log import DeliveryLog
from callhook.domain.payloads import Timeouts
from callhook.domain.rate_limit import RateLimiter
from callhook.domain.retry import RetryPolicy
from callhook.ingest import Ingest
from callhook.oauth import OAuth
from callhook.provisioning import Provisioning
from callhook.service import Service, utcnow
from callhook.signing_keys import SigningKeys
from callhook.sources.link import Link, Mapper
from callhook.sources.registry import SourceRegistry
from callhook.sources.runner import IngestSink, LinkRunner
from callhook.sources.spec import SourceSpec
from callhook.sources.status import LinkStatus
from callhook.sources.tracking import CallTracker
from callhook.store import migrate
from callhook.store.database import create_engine, describe
from callhook.store.sources import Source
from callhook.wiring_types import AppState

log = logging.getLogger(__name__)

USER_AGENT = f"callhook/{__version__}"


@dataclass
class Components:
    settings: Settings
    engine: AsyncEngine
    service: Service
    provisioning: Provisioning
    app: ASGIApp
    oauth: OAuth
    ingest: Ingest
    metrics: Metrics
    policy: RetryPolicy

    async def close(self) -> None:
        """The connections of ingest and of the service (the UnifiedAPI's store), then the
        engine's pool."""
        await self.ingest.close()
        await self.service.close()
        await self.engine.dispose()


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        first_delay=settings.retry_first_delay_ms / 1000,
        max_delay=float(settings.retry_max_delay),
        ring_expiry=float(settings.ring_expiry),
        retry_for=float(settings.retry_for),
    )


def build(settings: Settings) -> Components:
    engine = create_engine(settings.effective_database_url)
    allow = parse_networks(settings.allow_networks)
    service = Service(engine, allow=allow)
    oauth = OAuth(engine, token_ttl=settings.token_ttl)
    limiter = RateLimiter(settings.rate_limit, burst=settings.rate_limit * 10)
    policy = retry_policy(settings)
    metrics = Metrics()
    ingest = Ingest(engine, policy=policy, clock=utcnow)
    state = AppState(
        service=service,
        oauth=oauth,
        ingest=ingest,
        deliveries=DeliveryLog(engine, policy=policy, clock=utcnow),
        signing=SigningKeys(engine, clock=utcnow),
        sources=SourceRegistry(engine, clock=utcnow),
        metrics=metrics,
        public_url=settings.public_url,
        limiter=limiter,
    )
    return Components(
        settings=settings,
        engine=engine,
        service=service,
        provisioning=Provisioning(engine),
        app=create_app(state),
        oauth=oauth,
        ingest=ingest,
        metrics=metrics,
        policy=policy,
    )


def build_worker(components: Components, *, name: str | None = None) -> tuple[Worker, Sender]:
    """A worker on the components' database; the sender must be started before it runs."""
    settings = components.settings
    sender = Sender(
        parse_networks(settings.allow_networks),
        USER_AGENT,
        limit=max(settings.worker_concurrency, 10),
    )
    engine = components.engine
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        # the worker's commits (claims, attempt records) need not wait for the disk: one
        # lost to a power cut means a delivery is sent again (at least once); what ingest
        # accepted is committed FULL by its own engine
        engine = create_engine(settings.effective_database_url, durable=False)
    worker = Worker(
        engine,
        sender,
        policy=components.policy,
        timeouts=Timeouts(
            connect=settings.connect_timeout_ms / 1000, total=settings.timeout_ms / 1000
        ),
        clock=utcnow,
        metrics=components.metrics,
        user_agent=USER_AGENT,
        options=WorkerOptions(
            concurrency=settings.worker_concurrency,
            per_host=settings.host_concurrency,
            lease=timedelta(seconds=max(90, 3 * settings.timeout_ms // 1000)),
        ),
        breaker=CircuitBreaker(
            threshold=settings.breaker_failures,
            cooldown=settings.breaker_cooldown_ms / 1000,
            max_cooldown=max(60.0, settings.breaker_cooldown_ms / 1000),
        ),
        name=name,
        owns_engine=engine is not components.engine,
    )
    return worker, sender


def build_link_runner(
    components: Components,
    spec: SourceSpec,
    source: Source,
    *,
    on_change: Callable[[LinkStatus], None] = lambda _s: None,
) -> LinkRunner:
    """The runner of one PBX link (AMI or ESL) feeding this process's ingest."""
    # each protocol is loaded only when a link of its kind runs
    tracker = CallTracker(max_age=spec.max_call_age)
    link: Link
    mapper: Mapper
    if spec.kind == "ami":
        from callhook.sources.ami.calls import AmiCalls
        from callhook.sources.ami.client import AmiLink

        link = AmiLink(spec.host, spec.port, spec.username, spec.secret)
        mapper = AmiCalls(spec.numbering, tracker)
    else:
        from callhook.sources.esl.calls import EslCalls
        from callhook.sources.esl.client import EslLink

        link = EslLink(spec.host, spec.port, spec.secret, event_format=spec.event_format)
        mapper = EslCalls(spec.numbering, tracker)
    return LinkRunner(
        spec,
        link,
        mapper,
        IngestSink(components.ingest, source),
        components.engine,
        clock=utcnow,
        on_change=on_change,
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
