"""How the UnifiedAPI's PostgreSQL store reaches the database."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine

from callhook.store.database import asyncpg_options


def test_the_store_connects_to_postgresql_as_the_engine_does() -> None:
    url = "postgresql+asyncpg://u:p%40ss@db.example:6543/calls?ssl=require"
    engine = create_async_engine(url + "&prepared_statement_cache_size=50")
    assert asyncpg_options(engine) == {
        "host": "db.example",
        "port": 6543,
        "user": "u",
        "password": "p@ss",
        "database": "calls",
        "ssl": "require",
    }
