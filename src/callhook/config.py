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
            extra={k: env[k] for k in unknown},
        )


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
