"""Queries for PhoneCallEvents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
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


_INSERT = insert(pce)


async def insert_event(
    conn: AsyncConnection, event: PhoneCallEvent, *, app_id: int | None = None
) -> None:
    await conn.execute(
        _INSERT,
        {
            "id": event.id,
            "extension_id": event.extension_id,
            "type": int(event.type),
            "method": event.method,
            "url": event.url,
            "status": event.status,
            "note": event.note,
            "modified": event.modified,
            "app_id": app_id,
        },
    )


def _find_query(by_type: bool, by_id: bool) -> Any:
    query = select(pce).where(pce.c.extension_id == bindparam("extension_id"))
    if by_type:
        query = query.where(pce.c.type == bindparam("type"))
    if by_id:
        query = query.where(pce.c.id == bindparam("id"))
    return query.order_by(pce.c.url, pce.c.id)


#: built once, by (type given, id given): a prebuilt statement's cache key is memoized
_FIND = {(t, i): _find_query(t, i) for t in (False, True) for i in (False, True)}


async def find_events(
    conn: AsyncConnection,
    extension_id: int,
    etype: EventType | None = None,
    event_id: str | None = None,
) -> list[PhoneCallEvent]:
    params: dict[str, Any] = {"extension_id": extension_id}
    if etype is not None:
        params["type"] = int(etype)
    if event_id is not None:
        params["id"] = event_id
    query = _FIND[etype is not None, event_id is not None]
    return [_event(r) for r in await conn.execute(query, params)]


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
