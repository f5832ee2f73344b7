"""Settings: one frozen object built from CALLHOOK_* environment variables.

This module is the only reader of ``os.environ`` in callhook. Every setting is documented in
docs/reference/settings.md (a test checks that the two agree).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from callhook.errors import ConfigError

#: name -> one-line description; docs/reference/settings.md documents each of these.
SETTINGS_DOC: dict[str, str] = {
    "CALLHOOK_DATA_DIR": (
        "directory for the SQLite database, TLS certificates and bootstrap credentials"
    ),
    "CALLHOOK_DATABASE_URL": "SQLAlchemy URL of the database; unset means SQLite in the data dir",
    "CALLHOOK_HOST": "address `callhook serve` listens on",
    "CALLHOOK_PORT": "port `callhook serve` listens on",
    "CALLHOOK_PUBLIC_URL": "base URL used in links.self/next/prev instead of the request's host",
    "CALLHOOK_TOKEN_TTL": "lifetime of OAuth access tokens in seconds",
    "CALLHOOK_LOG_LEVEL": "logging level: DEBUG, INFO, WARNING or ERROR",
    "CALLHOOK_RATE_LIMIT": "UAPI requests per second allowed per app (bursts of 10x); 0 disables",
    "CALLHOOK_ALLOW_NETWORKS": (
        "networks webhooks may be sent to although they are loopback, private or link-local "
        "(comma-separated CIDRs, e.g. 127.0.0.1/32,10.0.0.0/8); empty refuses them all"
    ),
    "CALLHOOK_RING_EXPIRY": "seconds Dial-In and Dial-Out deliveries keep being retried",
    "CALLHOOK_RETRY_FOR": "seconds Answer and Hangup deliveries keep being retried",
    "CALLHOOK_RETRY_FIRST_DELAY_MS": "delay before the first retry, in ms (doubles each time)",
    "CALLHOOK_RETRY_MAX_DELAY": "longest delay between two attempts, in seconds",
    "CALLHOOK_CONNECT_TIMEOUT_MS": "default connect timeout of a webhook request, in ms",
    "CALLHOOK_TIMEOUT_MS": "default total timeout of a webhook request, in ms",
    "CALLHOOK_WORKER_CONCURRENCY": "webhook requests one worker process keeps in flight",
    "CALLHOOK_HOST_CONCURRENCY": "webhook requests one worker keeps in flight to one host",
    "CALLHOOK_BREAKER_FAILURES": "consecutive failures to one host that open its circuit breaker",
    "CALLHOOK_BREAKER_COOLDOWN_MS": "how long an open breaker first waits before a probe, in ms",
    "CALLHOOK_SOURCES": (
        "PBX links `callhook serve` runs, as source URLs separated by spaces "
        "(ami://USER:SECRET@HOST:5038?org=3, esl://:PASSWORD@HOST:8021?org=3)"
    ),
    "CALLHOOK_AMI_SECRET": "the AMI secret for `callhook source ami` (instead of --secret)",
    "CALLHOOK_ESL_PASSWORD": "the ESL password for `callhook source esl` (instead of --password)",
}


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number; set it to e.g. {default}"
        ) from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range; use a value from {low} to {high}")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("callhook-data")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    token_ttl: int = 3600
    log_level: str = "INFO"
    rate_limit: int = 50
    allow_networks: str = ""
    ring_expiry: int = 60
    retry_for: int = 86400
    retry_first_delay_ms: int = 1000
    retry_max_delay: int = 600
    connect_timeout_ms: int = 3000
    timeout_ms: int = 10000
    worker_concurrency: int = 64
    host_concurrency: int = 8
    breaker_failures: int = 5
    breaker_cooldown_ms: int = 5000
    #: CALLHOOK_SOURCES as given (checked by from_env; parsed by sources.spec)
    sources: str = field(default="", repr=False)
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'callhook.db').resolve()}"

    @property
    def uses_default_sqlite(self) -> bool:
        return not self.database_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        unknown = sorted(
            k
            for k in env
            if k.startswith("CALLHOOK_")
            and k not in SETTINGS_DOC
            and not k.startswith("CALLHOOK_TEST")
            and k != "CALLHOOK_REQUIRE_POSTGRES"
        )
        level = env.get("CALLHOOK_LOG_LEVEL", "INFO").upper() or "INFO"
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(
                f"CALLHOOK_LOG_LEVEL={level!r} is not one of DEBUG, INFO, WARNING, ERROR"
            )
        public_url = env.get("CALLHOOK_PUBLIC_URL", "").rstrip("/")
        if public_url and not public_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"CALLHOOK_PUBLIC_URL={public_url!r} must start with https:// (or http://)"
            )
        return cls(
            data_dir=Path(env.get("CALLHOOK_DATA_DIR") or "callhook-data"),
            database_url=_normalise_db_url(env.get("CALLHOOK_DATABASE_URL", "")),
            host=env.get("CALLHOOK_HOST") or "127.0.0.1",
            port=_int(env, "CALLHOOK_PORT", 8080, 0, 65535),
            public_url=public_url,
            token_ttl=_int(env, "CALLHOOK_TOKEN_TTL", 3600, 60, 86400 * 30),
            log_level=level,
            rate_limit=_int(env, "CALLHOOK_RATE_LIMIT", 50, 0, 1_000_000),
            allow_networks=_networks(env.get("CALLHOOK_ALLOW_NETWORKS", "")),
            ring_expiry=_int(env, "CALLHOOK_RING_EXPIRY", 60, 1, 86400 * 7),
            retry_for=_int(env, "CALLHOOK_RETRY_FOR", 86400, 1, 86400 * 30),
            retry_first_delay_ms=_int(env, "CALLHOOK_RETRY_FIRST_DELAY_MS", 1000, 10, 3_600_000),
            retry_max_delay=_int(env, "CALLHOOK_RETRY_MAX_DELAY", 600, 1, 86400),
            connect_timeout_ms=_int(env, "CALLHOOK_CONNECT_TIMEOUT_MS", 3000, 100, 60_000),
            timeout_ms=_int(env, "CALLHOOK_TIMEOUT_MS", 10000, 100, 60_000),
            worker_concurrency=_int(env, "CALLHOOK_WORKER_CONCURRENCY", 64, 1, 10_000),
            host_concurrency=_int(env, "CALLHOOK_HOST_CONCURRENCY", 8, 1, 10_000),
            breaker_failures=_int(env, "CALLHOOK_BREAKER_FAILURES", 5, 1, 1_000_000),
            breaker_cooldown_ms=_int(env, "CALLHOOK_BREAKER_COOLDOWN_MS", 5000, 10, 600_000),
            sources=_sources(env.get("CALLHOOK_SOURCES", "")),
            extra={k: env[k] for k in unknown},
        )


def _sources(text: str) -> str:
    """Validate now: a malformed source URL must stop the start."""
    from callhook.sources.spec import parse_source_urls

    parse_source_urls(text)
    return text.strip()


def _networks(text: str) -> str:
    """Validate now (a typo must stop the start, not surface at the first webhook)."""
    from callhook.delivery.guard import parse_networks

    parse_networks(text)
    return text.strip()


def _normalise_db_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, sqlite:///...) and pick the async drivers."""
    url = url.strip()
    if not url:
        return ""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ConfigError(
        f"CALLHOOK_DATABASE_URL uses an unsupported scheme ({url.split(':', 1)[0]}); "
        "use postgresql://user@host/db or sqlite:///path/to/file.db"
    )
