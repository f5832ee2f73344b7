"""The durable outbox: calls, their events, deliveries, claims with leases, attempts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from callhook.domain.calls import CallEvent, CallState
from callhook.store.tables import (
    accounts,
    call_events,
    calls,
    deliveries,
    delivery_attempts,
    extensions,
)
from callhook.store.tables import phone_call_events as pce

PENDING, DELIVERED, FAILED, EXPIRED = "pending", "delivered", "failed", "expired"


def insert_ignore(conn: AsyncConnection, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on either engine."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


# --- calls and their events --------------------------------------------------------------------


@dataclass(slots=True)
class CallRow:
    id: int
    state: CallState
    seq: int


async def lock_call(conn: AsyncConnection, source_id: int, call_id: str, now: datetime) -> CallRow:
    """The call's row, created if new, locked until the transaction ends (PostgreSQL)."""
    await conn.execute(
        insert_ignore(conn, calls).values(
            source_id=source_id,
            call_id=call_id,
            state=json.dumps(CallState().to_json()),
            seq=0,
            created=now,
            updated=now,
        )
    )
    query = select(calls.c.id, calls.c.state, calls.c.seq).where(
        calls.c.source_id == source_id, calls.c.call_id == call_id
    )
    row = (await conn.execute(query.with_for_update())).one()
    return CallRow(row.id, CallState.from_json(json.loads(row.state)), row.seq)


async def save_call(conn: AsyncConnection, call: CallRow, now: datetime) -> None:
    await conn.execute(
        update(calls)
        .where(calls.c.id == call.id)
        .values(state=json.dumps(call.state.to_json()), seq=call.seq, updated=now)
    )


async def record_event(
    conn: AsyncConnection,
    source_id: int,
    call: CallRow,
    event: CallEvent,
    note: str | None,
    now: datetime,
) -> bool:
    """Store a call event; False when (source, event id) was already stored."""
    result = await conn.execute(
        insert_ignore(conn, call_events).values(
            source_id=source_id,
            event_id=event.event_id,
            call_ref=call.id,
            kind=event.kind.value,
            time=event.time,
            body=json.dumps(event.to_json()),
            note=note,
            received=now,
        )
    )
    return bool(result.rowcount)


# --- matching rules ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    method: int
    url: str
    app_id: int | None
    owner_path: str


async def rules_for(
    conn: AsyncConnection, org_code: int, short: str, event_type: int
) -> list[Rule]:
    """The enabled PhoneCallEvents of one extension and type."""
    org = accounts.alias("org")
    owner = accounts.alias("owner")
    query = (
        select(pce.c.id, pce.c.method, pce.c.url, pce.c.app_id, owner.c.path)
        .select_from(
            pce.join(extensions, extensions.c.id == pce.c.extension_id)
            .join(org, org.c.id == extensions.c.org_id)
            .join(owner, owner.c.id == extensions.c.owner_id)
        )
        .where(
            org.c.org_code == org_code,
            extensions.c.number == short,
            pce.c.type == event_type,
            pce.c.status == 1,
        )
        .order_by(pce.c.id)
    )
    return [Rule(r.id, r.method, r.url, r.app_id, r.path) for r in await conn.execute(query)]


# --- deliveries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewDelivery:
    webhook_id: str
    call_ref: int
    call_id: str
    seq: int
    event_type: int
    extension: str
    owner_path: str
    rule_id: str
    app_id: int | None
    method: int
    url: str
    host: str
    order_key: str
    payload: str
    expires_at: datetime


async def insert_deliveries(
    conn: AsyncConnection, rows: Sequence[NewDelivery], now: datetime
) -> None:
    if not rows:
        return
    await conn.execute(
        insert(deliveries),
        [
            {
                "webhook_id": d.webhook_id,
                "call_ref": d.call_ref,
                "call_id": d.call_id,
                "seq": d.seq,
                "event_type": d.event_type,
                "extension": d.extension,
                "owner_path": d.owner_path,
                "rule_id": d.rule_id,
                "app_id": d.app_id,
                "method": d.method,
                "url": d.url,
                "host": d.host,
                "order_key": d.order_key,
                "payload": d.payload,
                "state": PENDING,
                "attempts": 0,
                "next_at": now,
                "expires_at": d.expires_at,
                "created": now,
            }
            for d in rows
        ],
    )


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed delivery, leased to one worker."""

    id: int
    webhook_id: str
    call_id: str
    seq: int
    event_type: int
    extension: str
    app_id: int | None
    method: int
    url: str
    host: str
    payload: str
    attempts: int
    expires_at: datetime


_JOB_COLUMNS = [
    deliveries.c[name]
    for name in (
        "id",
        "webhook_id",
        "call_id",
        "seq",
        "event_type",
        "extension",
        "app_id",
        "method",
        "url",
        "host",
        "payload",
        "attempts",
        "expires_at",
    )
]


async def claim(
    conn: AsyncConnection,
    *,
    now: datetime,
    owner: str,
    lease: timedelta,
    limit: int,
    skip_hosts: Sequence[str] = (),
) -> list[Job]:
    """Lease up to ``limit`` due deliveries, each the first unfinished one of its (url, call).

    On PostgreSQL the rows are locked with SKIP LOCKED, so workers never claim the same one.
    """
    cand = deliveries.alias("cand")
    earlier = deliveries.alias("earlier")
    blocked = exists().where(
        and_(
            earlier.c.order_key == cand.c.order_key,
            earlier.c.id < cand.c.id,
            earlier.c.state == PENDING,
        )
    )
    due = select(cand.c.id).where(
        cand.c.state == PENDING,
        cand.c.next_at <= now,
        (cand.c.lease_until.is_(None)) | (cand.c.lease_until < now),
        ~blocked,
    )
    if skip_hosts:
        due = due.where(cand.c.host.not_in(list(skip_hosts)))
    due = due.order_by(cand.c.next_at, cand.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        # a materialized CTE locks the rows once; as a plain IN (subquery) PostgreSQL may run
        # the LIMIT ... SKIP LOCKED subquery again and update rows it never locked
        locked = (
            due.with_for_update(skip_locked=True, of=cand)
            .cte("due")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        claimed = (
            update(deliveries)
            .where(deliveries.c.id == locked.c.id)
            .values(lease_until=now + lease, lease_owner=owner)
            .returning(*_JOB_COLUMNS)
        )
    else:
        # one UPDATE ... RETURNING: on SQLite it takes the write lock at once (a SELECT first
        # would have to upgrade its read lock, which fails instead of waiting when others write)
        claimed = (
            update(deliveries)
            .where(deliveries.c.id.in_(due.scalar_subquery()))
            .values(lease_until=now + lease, lease_owner=owner)
            .returning(*_JOB_COLUMNS)
        )
    rows = list(await conn.execute(claimed))
    return sorted((Job(**r._asdict()) for r in rows), key=lambda job: job.id)


async def release(conn: AsyncConnection, ids: Sequence[int], owner: str, next_at: datetime) -> None:
    """Give leased deliveries back without an attempt (breaker open, shutting down)."""
    if ids:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(list(ids)), deliveries.c.lease_owner == owner)
            .values(lease_until=None, lease_owner=None, next_at=next_at)
        )


async def release_all(conn: AsyncConnection, owner: str | None = None) -> int:
    """Drop leases (of one owner, or all of them when one process owns the database)."""
    query = update(deliveries).where(deliveries.c.lease_owner.is_not(None))
    if owner is not None:
        query = query.where(deliveries.c.lease_owner == owner)
    result = await conn.execute(query.values(lease_until=None, lease_owner=None))
    return result.rowcount or 0


@dataclass(frozen=True, slots=True)
class Attempt:
    at: datetime
    host: str
    status: int | None
    error_class: str | None
    error: str | None
    latency_ms: int
    snippet: str
    worker: str


async def finish_attempt(
    conn: AsyncConnection,
    job: Job,
    attempt: Attempt | None,
    *,
    state: str,
    next_at: datetime | None,
    reason: str | None,
) -> bool:
    """Record an attempt and the delivery's new state; False if the lease was lost meanwhile."""
    values: dict[str, Any] = {
        "state": state,
        "lease_until": None,
        "lease_owner": None,
        "last_error": reason,
    }
    if attempt is not None:
        values["attempts"] = deliveries.c.attempts + 1
        values["last_status"] = attempt.status
    if next_at is not None:
        values["next_at"] = next_at
    if state != PENDING:
        values["finished"] = attempt.at if attempt else func.now()
    owner = attempt.worker if attempt else None
    query = update(deliveries).where(deliveries.c.id == job.id, deliveries.c.state == PENDING)
    if owner is not None:
        query = query.where(deliveries.c.lease_owner == owner)
    result = await conn.execute(query.values(**values))
    if not result.rowcount:
        return False
    if attempt is not None:
        await conn.execute(
            insert(delivery_attempts).values(
                delivery_id=job.id,
                at=attempt.at,
                host=attempt.host,
                status=attempt.status,
                error_class=attempt.error_class,
                error=attempt.error,
                latency_ms=attempt.latency_ms,
                snippet=attempt.snippet,
                worker=attempt.worker,
            )
        )
    return True


async def queue_depth(conn: AsyncConnection) -> int:
    query = select(func.count()).select_from(deliveries).where(deliveries.c.state == PENDING)
    return int((await conn.execute(query)).scalar_one())


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest pending delivery is due (for a worker deciding how long to sleep)."""
    query = select(func.min(deliveries.c.next_at)).where(deliveries.c.state == PENDING)
    value: datetime | None = (await conn.execute(query)).scalar_one()
    return value
