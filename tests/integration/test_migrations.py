"""The migrations produce exactly the schema the code declares, on both engines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.store import migrate
from callhook.store.database import create_engine
from callhook.store.tables import metadata
from tests.databases import PostgresTemplates


@pytest.fixture
def empty_url(
    engine_name: str, tmp_path: Path, postgres_templates: PostgresTemplates | None
) -> Iterator[str]:
    if engine_name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    if postgres_templates is None:
        pytest.skip("PostgreSQL tests need CALLHOOK_TEST_POSTGRES_URL")
    url = postgres_templates.empty()
    yield url
    postgres_templates.drop(url)


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_match_the_declared_schema(empty_url: str) -> None:
    engine = create_engine(empty_url)
    try:
        assert await migrate.pending(engine)
        before, after = await migrate.upgrade(engine)
        assert before is None
        assert not await migrate.pending(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        # applying again is a no-op
        assert await migrate.upgrade(engine) == (after, after)
    finally:
        await engine.dispose()


async def test_upgrading_keeps_existing_rows(empty_url: str) -> None:
    """Each migration is applied to a database holding data from the one before."""
    engine = create_engine(empty_url)
    try:
        await migrate.upgrade(engine, "0001")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, kind, name, path, created) "
                    "VALUES (1, 'admin', 'A', '1', CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO apps (client_id, secret_hash, account_id, name, created) "
                    "VALUES ('ch_keep_me_1', 'h', 1, 'app', CURRENT_TIMESTAMP)"
                )
            )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM apps"))).scalar_one() == 1
            assert (await conn.execute(text("SELECT count(*) FROM accounts"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def _deliveries_indexes(engine: AsyncEngine) -> dict[str, str]:
    """The deliveries table's indexes as the database has them: name -> definition."""
    if engine.dialect.name == "postgresql":
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'deliveries'"
    else:
        query = (
            "SELECT name, coalesce(sql, '') FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = 'deliveries'"
        )
    async with engine.connect() as conn:
        return {row[0]: row[1] for row in await conn.execute(text(query))}


def _downgrade(connection: Connection, target: str) -> None:
    cfg = migrate.alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, target)


async def test_the_claims_indexes_hold_pending_deliveries_only(empty_url: str) -> None:
    """Migration 0007 makes the claim's two indexes partial (pending deliveries only); going
    back to 0006 gives the old ones (every delivery) back."""
    partial = {"ix_deliveries_pending_next_at", "ix_deliveries_pending_order_key"}
    old = {"ix_deliveries_state_next_at", "ix_deliveries_order_key_id"}
    engine = create_engine(empty_url)
    try:
        await migrate.upgrade(engine)
        indexes = await _deliveries_indexes(engine)
        assert partial <= set(indexes), indexes
        assert not old & set(indexes), indexes
        for name in partial:
            assert "WHERE" in indexes[name].upper(), indexes[name]
            # PostgreSQL: WHERE ((state)::text = 'pending'::text)
            condition = re.sub(r"::text|[()]", "", indexes[name].split("WHERE", 1)[1])
            assert condition.strip() == "state = 'pending'", indexes[name]
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "0006")
        indexes = await _deliveries_indexes(engine)
        assert old <= set(indexes), indexes
        assert not partial & set(indexes), indexes
        for name in old:
            assert "WHERE" not in indexes[name].upper(), indexes[name]
        # and forward again
        assert (await migrate.upgrade(engine))[0] == "0006"
        assert partial <= set(await _deliveries_indexes(engine))
    finally:
        await engine.dispose()
