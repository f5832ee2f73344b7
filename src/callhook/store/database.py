"""Engines: SQLite (WAL, foreign keys) by default, PostgreSQL by URL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def _sqlite_pragmas(synchronous: str) -> Any:
    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    return set_pragmas


def create_engine(url: str, *, durable: bool = True) -> AsyncEngine:
    """An engine for ``url``. SQLite commits reach the disk before they return (synchronous
    FULL) unless ``durable`` is False (NORMAL: in WAL mode a power cut may undo the last
    commits, never corrupt the database), which is for writes that are safe to lose."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        pragmas = _sqlite_pragmas("FULL" if durable else "NORMAL")
        event.listen(engine.sync_engine, "connect", pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def describe(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


#: per database file: the engines of one process on one file share a lock
_WRITE_LOCKS: dict[str, asyncio.Lock] = {}


@contextlib.asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction; on SQLite, the process's writers take turns here.

    SQLite has one writer at a time. Two connections of one process that both write would
    otherwise meet in SQLite's busy handler, which sleeps 1, 2, 5, ... up to 100 ms between
    tries: the hot writers (ingest's group commits, the worker's claims and records) queue
    on an asyncio lock instead, in order, and never sleep.
    """
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    async with write_turn(engine), engine.begin() as conn:
        yield conn


def write_turn(engine: AsyncEngine) -> asyncio.Lock:
    """The lock the writers of ``engine``'s SQLite file take turns on in this process (also
    for writers that go around the engine, straight through the driver). The UnifiedAPI's rule
    writer runs on a thread by itself and cannot hold it: it waits for SQLite's own write lock,
    as another process's writer does (``uapi_sqlite.RuleWriter``, decision 0015)."""
    key = str(engine.url.database)
    lock = _WRITE_LOCKS.get(key)
    if lock is None:
        lock = _WRITE_LOCKS[key] = asyncio.Lock()
    return lock


# --- asyncpg straight, for the hot paths that go around SQLAlchemy on PostgreSQL ---------------

#: what SQLAlchemy's asyncpg dialect takes from a URL for itself, not for asyncpg.connect
_DIALECT_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func")


def asyncpg_options(engine: AsyncEngine) -> dict[str, Any]:
    """asyncpg.connect's arguments for the engine's database, as the engine itself connects
    (host, port, user, password, database, ssl... from the URL and its query)."""
    args, options = engine.dialect.create_connect_args(engine.url)
    assert not args
    return {k: v for k, v in options.items() if k not in _DIALECT_ONLY}


async def asyncpg_connect(options: dict[str, Any]) -> asyncpg.Connection:
    """A connection; cancelled meanwhile, the connection being made is closed, not leaked."""
    connecting = asyncio.ensure_future(asyncpg.connect(**options))
    try:
        return await asyncio.shield(connecting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            (await connecting).terminate()
        raise
