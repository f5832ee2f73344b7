"""The migrations produce exactly the schema the code declares, on both engines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, bindparam, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.store import migrate
from callhook.store.database import create_engine
from callhook.store.tables import UTCDateTime, metadata
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
        await migrate.upgrade(engine, "0007")
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
        assert (await migrate.upgrade(engine, "0007"))[0] == "0006"
        assert partial <= set(await _deliveries_indexes(engine))
    finally:
        await engine.dispose()


_DELIVERY = (
    "INSERT INTO deliveries (id, webhook_id, call_ref, call_id, seq, event_type, extension, "
    "owner_path, rule_id, method, url, host, order_key, payload, state, attempts, next_at, "
    "expires_at, lease_until, lease_owner, created) VALUES (:id, :wid, 1, 'c1', :seq, 1, "
    "'0003*201', '1', 'r', 1, 'http://h.example/x', 'h.example:80', 'k', '{}', :state, 0, "
    ":next_at, '2030-01-01 00:00:00', :lease_until, :owner, '2026-01-01 00:00:00')"
)


_delivery = text(_DELIVERY).bindparams(
    bindparam("next_at", type_=UTCDateTime), bindparam("lease_until", type_=UTCDateTime)
)


def _at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


async def test_the_pending_deliveries_move_to_the_queue(empty_url: str) -> None:
    """Migration 0008 puts each pending delivery in ``delivery_queue`` (a leased one due when its
    lease ends) and drops the partial indexes: no index of deliveries names its state, lease
    or next attempt any more. Going back to 0007 restores the indexes and drops the queue."""
    partial = {"ix_deliveries_pending_next_at", "ix_deliveries_pending_order_key"}
    engine = create_engine(empty_url)
    try:
        await migrate.upgrade(engine, "0007")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO sources (id, name, token_hash, created) "
                    "VALUES (1, 's', 'h', '2026-01-01 00:00:00')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO calls (id, source_id, call_id, state, seq, created, updated) "
                    "VALUES (1, 1, 'c1', '{}', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                )
            )
            rows = [
                (1, "delivered", "2026-01-01 00:00:01", None, None),
                (2, "pending", "2026-01-01 00:00:02", None, None),
                (3, "pending", "2026-01-01 00:00:03", "2026-01-01 00:01:30", "w1"),
                (4, "failed", "2026-01-01 00:00:04", None, None),
            ]
            for id_, state, next_at, lease_until, owner in rows:
                params = {"id": id_, "wid": f"msg_{id_}", "seq": id_, "state": state}
                params |= {"next_at": _at(next_at), "lease_until": _at(lease_until), "owner": owner}
                await conn.execute(_delivery, params)
        await migrate.upgrade(engine)
        indexes = await _deliveries_indexes(engine)
        assert not partial & set(indexes), indexes
        for definition in indexes.values():
            for column in ("state", "lease", "next_at"):
                assert column not in definition, definition
        query = "SELECT id, order_key, host, next_at FROM delivery_queue ORDER BY id"
        async with engine.connect() as conn:
            queued = [tuple(row) for row in await conn.execute(text(query))]
        assert [(i, k, h) for i, k, h, _ in queued] == [
            (2, "k", "h.example:80"),
            (3, "k", "h.example:80"),
        ]
        assert [str(at)[:19] for *_, at in queued] == ["2026-01-01 00:00:02", "2026-01-01 00:01:30"]
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "0007")
        assert partial <= set(await _deliveries_indexes(engine))
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert "delivery_queue" not in tables
    finally:
        await engine.dispose()


async def _fillfactor(engine: AsyncEngine) -> str | None:
    query = "SELECT reloptions FROM pg_class WHERE relname = 'deliveries'"
    async with engine.connect() as conn:
        options = (await conn.execute(text(query))).scalar_one()
    found = [o.split("=", 1)[1] for o in options or [] if o.startswith("fillfactor=")]
    return found[0] if found else None


async def test_deliveries_pages_keep_room_for_three_versions(empty_url: str) -> None:
    """PostgreSQL: migration 0009 fills a page of deliveries to 35 % (room for each row's lease
    and record beside it); going back to 0008 gives 0006's 70 %. SQLite has no fill factor."""
    engine = create_engine(empty_url)
    try:
        if engine.dialect.name != "postgresql":
            pytest.skip("a PostgreSQL setting")
        await migrate.upgrade(engine, "0008")
        assert await _fillfactor(engine) == "70"
        await migrate.upgrade(engine, "0009")
        assert await _fillfactor(engine) == "35"
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "0008")
        assert await _fillfactor(engine) == "70"
    finally:
        await engine.dispose()
