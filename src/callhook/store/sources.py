"""Queries for call-event sources (the PBXs and scripts that push calls to callhook)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from callhook.store.tables import call_events, sources


@dataclass(frozen=True, slots=True)
class Source:
    id: int
    name: str
    created: datetime


def _source(row: Any) -> Source:
    return Source(row.id, row.name, row.created)


async def insert_source(conn: AsyncConnection, name: str, token_hash: str, now: datetime) -> Source:
    result = await conn.execute(
        insert(sources).values(name=name, token_hash=token_hash, created=now)
    )
    (new_id,) = result.inserted_primary_key or (None,)
    assert new_id is not None
    return Source(int(new_id), name, now)


async def find_by_token(conn: AsyncConnection, token_hash: str) -> Source | None:
    query = select(sources).where(sources.c.token_hash == token_hash)
    row = (await conn.execute(query)).first()
    return _source(row) if row else None


async def find_by_name(conn: AsyncConnection, name: str) -> Source | None:
    row = (await conn.execute(select(sources).where(sources.c.name == name))).first()
    return _source(row) if row else None


async def list_sources(conn: AsyncConnection) -> list[tuple[Source, int, datetime | None]]:
    """Every source with how many events it sent and when the last one arrived."""
    counts = (
        select(
            call_events.c.source_id,
            func.count().label("events"),
            func.max(call_events.c.received).label("last"),
        )
        .group_by(call_events.c.source_id)
        .subquery()
    )
    query = (
        select(sources, counts.c.events, counts.c.last)
        .select_from(sources.outerjoin(counts, counts.c.source_id == sources.c.id))
        .order_by(sources.c.name)
    )
    return [(_source(r), r.events or 0, r.last) for r in await conn.execute(query)]


async def delete_source(conn: AsyncConnection, source_id: int) -> None:
    await conn.execute(delete(sources).where(sources.c.id == source_id))
