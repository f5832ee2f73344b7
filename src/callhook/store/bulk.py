"""Bulk writes at the driver level, for the hot paths (ingest, attempt records).

SQLAlchemy Core runs a Python bind processor for every value of every row of an executemany;
for the outbox's wide rows with three timestamps that was most of ingest's time. Here the
statement is rendered once per shape, and the values are already what the driver takes: on
SQLite, timestamps as the same text SQLAlchemy stores (naive UTC, microseconds); on
PostgreSQL, aware datetimes.

On SQLite many rows go in one statement (``VALUES (...), (...)``) rather than an executemany:
the sqlite3 module gives the GIL back and takes it again for every row of an executemany, and
in a busy process each taking waits for the event loop's thread to let go of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

#: bound values in one SQLite statement at most (its limit is 32766)
SQLITE_VALUES = 20_000


@lru_cache(maxsize=256)
def values(rows: int, width: int) -> str:
    """``(?, ?), (?, ?)``: ``rows`` groups of ``width`` placeholders."""
    group = "(" + ", ".join("?" for _ in range(width)) + ")"
    return ", ".join(group for _ in range(rows))


def chunked(rows: Sequence[tuple[Any, ...]], width: int) -> list[Sequence[tuple[Any, ...]]]:
    """``rows`` in pieces that fit in one SQLite statement."""
    size = max(1, min(500, SQLITE_VALUES // max(1, width)))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


@lru_cache(maxsize=256)
def _statement(dialect: str, table: str, columns: tuple[str, ...], rows: int = 1) -> str:
    if dialect == "postgresql":
        marks = "(" + ", ".join(f"${n}" for n in range(1, len(columns) + 1)) + ")"
    else:
        marks = values(rows, len(columns))
    # names come from Table definitions (insert_rows checks them), never from input
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {marks}"  # noqa: S608


@lru_cache(maxsize=1024)
def sqlite_datetime(value: datetime) -> str:
    """What SQLAlchemy's SQLite DATETIME stores for an aware datetime (UTC, naive text)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC timestamp column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def timestamp(conn: AsyncConnection, value: datetime | None) -> Any:
    """A timestamp as the connection's driver takes it."""
    if value is None:
        return None
    if conn.dialect.name == "sqlite":
        return sqlite_datetime(value)
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC timestamp column")
    return value


async def insert_rows(
    conn: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """INSERT ``rows`` (driver-ready values, in ``columns`` order): an executemany on
    PostgreSQL, multi-row statements on SQLite."""
    if not rows:
        return
    for name in columns:
        if name not in table.c:
            raise ValueError(f"{table.name} has no column {name}")
    if conn.dialect.name != "sqlite":
        sql = _statement(conn.dialect.name, table.name, tuple(columns))
        await conn.exec_driver_sql(sql, list(rows))
        return
    for chunk in chunked(rows, len(columns)):
        sql = _statement("sqlite", table.name, tuple(columns), len(chunk))
        await conn.exec_driver_sql(sql, tuple(v for row in chunk for v in row))


@lru_cache(maxsize=64)
def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (the SQL here has no other ``?``)."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


async def run_many(conn: AsyncConnection, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """One statement written with ``?`` placeholders, executed for each row (executemany);
    the rows it changed in all where the driver counts them (SQLite), else -1."""
    if not rows:
        return 0
    statement = _numbered(sql) if conn.dialect.name == "postgresql" else sql
    result = await conn.exec_driver_sql(statement, list(rows))
    return result.rowcount if conn.dialect.name == "sqlite" else -1
