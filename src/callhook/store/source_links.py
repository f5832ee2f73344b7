"""Queries for source_links: the live state of each AMI/ESL link, one row per source."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from callhook.store.tables import source_links, sources


@dataclass(frozen=True, slots=True)
class LinkRow:
    source_id: int
    kind: str
    target: str
    connected: bool
    since: datetime | None
    events: int
    reconnects: int
    tracked_calls: int
    last_error: str | None
    last_error_at: datetime | None
    runner: str
    updated: datetime


_COLUMNS = (
    "source_id",
    "kind",
    "target",
    "connected",
    "since",
    "events",
    "reconnects",
    "tracked_calls",
    "last_error",
    "last_error_at",
    "runner",
    "updated",
)


async def save_link(conn: AsyncConnection, row: LinkRow) -> None:
    """Insert or replace the source's row (one per source: the latest runner wins)."""
    values: dict[str, Any] = {name: getattr(row, name) for name in _COLUMNS}
    changed = await conn.execute(
        update(source_links).where(source_links.c.source_id == row.source_id).values(**values)
    )
    if not changed.rowcount:
        await conn.execute(insert(source_links).values(**values))


async def list_links(conn: AsyncConnection) -> list[tuple[str, LinkRow]]:
    """(source name, link) for every source that has a link, by name."""
    query = (
        select(sources.c.name, source_links)
        .select_from(source_links.join(sources, sources.c.id == source_links.c.source_id))
        .order_by(sources.c.name)
    )
    found = []
    for r in await conn.execute(query):
        found.append((r.name, LinkRow(*(getattr(r, name) for name in _COLUMNS))))
    return found
