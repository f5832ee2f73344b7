"""Queries for PhoneCallEvents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from callhook.domain.phone_call_events import EventType, PhoneCallEvent
from callhook.store.tables import phone_call_events as pce


def _event(row: Any) -> PhoneCallEvent:
    return PhoneCallEvent(
        id=row.id,
        extension_id=row.extension_id,
        type=EventType(row.type),
        method=row.method,
        url=row.url,
        status=row.status,
        note=row.note,
        modified=row.modified,
    )


async def insert_event(
    conn: AsyncConnection, event: PhoneCallEvent, *, app_id: int | None = None
) -> None:
    await conn.execute(
        insert(pce).values(
            id=event.id,
            extension_id=event.extension_id,
            type=int(event.type),
            method=event.method,
            url=event.url,
            status=event.status,
            note=event.note,
            modified=event.modified,
            app_id=app_id,
        )
    )


async def find_events(
    conn: AsyncConnection,
    extension_id: int,
    etype: EventType | None = None,
    event_id: str | None = None,
) -> list[PhoneCallEvent]:
    query = select(pce).where(pce.c.extension_id == extension_id)
    if etype is not None:
        query = query.where(pce.c.type == int(etype))
    if event_id is not None:
        query = query.where(pce.c.id == event_id)
    return [_event(r) for r in await conn.execute(query.order_by(pce.c.url, pce.c.id))]


async def save_event(conn: AsyncConnection, event: PhoneCallEvent) -> None:
    await conn.execute(
        update(pce)
        .where(pce.c.id == event.id)
        .values(
            method=event.method,
            url=event.url,
            status=event.status,
            note=event.note,
            modified=event.modified,
        )
    )


async def delete_events(conn: AsyncConnection, ids: Sequence[str]) -> None:
    if ids:
        await conn.execute(delete(pce).where(pce.c.id.in_(list(ids))))
