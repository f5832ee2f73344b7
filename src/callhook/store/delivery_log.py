"""Queries of the delivery log: list with filters, one delivery with its attempts, replay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from callhook.store.outbox import EXPIRED, FAILED, PENDING
from callhook.store.tables import deliveries, delivery_attempts, delivery_queue


@dataclass(frozen=True, slots=True)
class Filters:
    """Which deliveries to list; ``subtree`` is the caller's account path (None: all)."""

    subtree: str | None
    extension: str | None = None
    call_id: str | None = None
    event_type: int | None = None
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _where(query: Any, f: Filters) -> Any:
    if f.subtree is not None:
        query = query.where(
            or_(
                deliveries.c.owner_path == f.subtree,
                deliveries.c.owner_path.startswith(f.subtree + "/", autoescape=True),
            )
        )
    if f.extension is not None:
        query = query.where(deliveries.c.extension == f.extension)
    if f.call_id is not None:
        query = query.where(deliveries.c.call_id == f.call_id)
    if f.event_type is not None:
        query = query.where(deliveries.c.event_type == f.event_type)
    if f.state is not None:
        query = query.where(deliveries.c.state == f.state)
    if f.since is not None:
        query = query.where(deliveries.c.created >= f.since)
    if f.until is not None:
        query = query.where(deliveries.c.created < f.until)
    return query


async def list_deliveries(
    conn: AsyncConnection, f: Filters, *, before: int | None, limit: int
) -> list[Any]:
    """Newest first; ``before`` is the internal id the previous page ended at."""
    query = _where(select(deliveries), f)
    if before is not None:
        query = query.where(deliveries.c.id < before)
    query = query.order_by(deliveries.c.id.desc()).limit(limit)
    return list(await conn.execute(query))


async def get_delivery(conn: AsyncConnection, webhook_id: str) -> Any | None:
    query = select(deliveries).where(deliveries.c.webhook_id == webhook_id)
    return (await conn.execute(query)).first()


async def attempts_of(conn: AsyncConnection, delivery_id: int) -> list[Any]:
    query = (
        select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id == delivery_id)
        .order_by(delivery_attempts.c.id)
    )
    return list(await conn.execute(query))


async def requeue(
    conn: AsyncConnection, ids: Sequence[int], now: datetime, expires: dict[int, datetime]
) -> int:
    """Make finished deliveries pending again, due now (replay and recover): back in the
    queue."""
    count = 0
    for delivery_id in ids:
        requeued = (
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.state != PENDING)
                .values(
                    state=PENDING,
                    next_at=now,
                    expires_at=expires[delivery_id],
                    finished=None,
                    lease_until=None,
                    lease_owner=None,
                    last_error=None,
                )
                .returning(deliveries.c.order_key, deliveries.c.host)
            )
        ).first()
        if requeued is None:
            continue
        await conn.execute(
            insert(delivery_queue).values(
                id=delivery_id, order_key=requeued.order_key, host=requeued.host, next_at=now
            )
        )
        count += 1
    return count


async def failed_since(conn: AsyncConnection, f: Filters) -> list[tuple[int, int]]:
    """(id, event type) of the failed and expired deliveries matching ``f``."""
    query = _where(select(deliveries.c.id, deliveries.c.event_type), f).where(
        deliveries.c.state.in_([FAILED, EXPIRED])
    )
    return [(r.id, r.event_type) for r in await conn.execute(query.order_by(deliveries.c.id))]
