"""Apply Alembic migrations programmatically on an async engine."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("callhook.store") / "migrations"))
    return cfg


def _upgrade(connection: Connection, target: str = "head") -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, target)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine, target: str = "head") -> tuple[str | None, str]:
    """Bring the database to ``target`` (the newest schema); returns (revision before, after)."""
    async with engine.begin() as conn:
        before = await conn.run_sync(_current)
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, target)
    async with engine.connect() as conn:
        after = await conn.run_sync(_current)
    assert after is not None
    return before, after


async def pending(engine: AsyncEngine) -> bool:
    """True if the database is not at the newest revision."""
    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    return current != ScriptDirectory.from_config(alembic_config()).get_current_head()
