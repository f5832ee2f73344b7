"""Bulk inserts at the driver level, for the hot paths (ingest, attempt records).

SQLAlchemy Core runs a Python bind processor for every value of every row of an executemany;
for the outbox's wide rows with three timestamps that was most of ingest's time. Here the
statement is rendered once per table and columns, and the values are already what the driver
takes: on SQLite, timestamps as the same text SQLAlchemy stores (naive UTC, microseconds);
on PostgreSQL, aware datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection


@lru_cache(maxsize=256)
def _statement(dialect: str, table: str, columns: tuple[str, ...]) -> str:
    if dialect == "postgresql":
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    else:
        marks = ", ".join("?" for _ in columns)
    # names come from Table definitions (insert_rows checks them), never from input
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


@lru_cache(maxsize=1024)
def sqlite_datetime(value: datetime) -> str:
    """What SQLAlchemy's SQLite DATETIME stores for an aware datetime (UTC, naive text)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC timestamp column")
    utc = value.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}"
    )


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
    """INSERT ``rows`` (driver-ready values, in ``columns`` order) in one executemany."""
    if not rows:
        return
    for name in columns:
        if name not in table.c:
            raise ValueError(f"{table.name} has no column {name}")
    sql = _statement(conn.dialect.name, table.name, tuple(columns))
    await conn.exec_driver_sql(sql, list(rows))


@lru_cache(maxsize=64)
def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (the SQL here has no other ``?``)."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


async def run_many(conn: AsyncConnection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """One statement written with ``?`` placeholders, executed for each row (executemany)."""
    if not rows:
        return
    statement = _numbered(sql) if conn.dialect.name == "postgresql" else sql
    await conn.exec_driver_sql(statement, list(rows))
