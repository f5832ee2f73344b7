"""The durable outbox: calls, their events, deliveries, claims with leases, attempts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from callhook.domain.calls import CallEvent, CallState
from callhook.store import bulk
from callhook.store.tables import (
    accounts,
    call_events,
    calls,
    deliveries,
    delivery_attempts,
    delivery_queue,
    extensions,
)
from callhook.store.tables import phone_call_events as pce

PENDING, DELIVERED, FAILED, EXPIRED = "pending", "delivered", "failed", "expired"

#: a timestamp as the driver takes it (``bulk.timestamp`` of a connection)
Stamp = Callable[[datetime | None], Any]


def insert_ignore(conn: AsyncConnection, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on either engine."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


# --- calls and their events --------------------------------------------------------------------


@dataclass(slots=True)
class CallRow:
    #: 0 until the row is inserted (``insert_calls``)
    id: int
    state: CallState
    seq: int


#: rows per statement when a list of keys goes into IN (...): well under SQLite's limit
_CHUNK = 500


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


async def find_calls(
    conn: AsyncConnection, source_id: int, call_ids: Sequence[str]
) -> dict[str, CallRow]:
    """The calls that exist among ``call_ids`` (read, not locked: for a single writer)."""
    found: dict[str, CallRow] = {}
    for chunk in _chunks(sorted(set(call_ids))):
        query = select(calls.c.id, calls.c.call_id, calls.c.state, calls.c.seq).where(
            calls.c.source_id == source_id, calls.c.call_id.in_(chunk)
        )
        for row in await conn.execute(query):
            state = CallState.from_json(json.loads(row.state))
            found[row.call_id] = CallRow(row.id, state, row.seq)
    return found


CALL_COLUMNS = ("source_id", "call_id", "state", "seq", "created", "updated")


def call_rows(source_id: int, new: dict[str, CallRow], stamp: Any) -> list[tuple[Any, ...]]:
    """The rows of new calls, in ``CALL_COLUMNS`` order (``stamp``: now, as the driver takes it)."""
    return [
        (source_id, call_id, json.dumps(row.state.to_json()), row.seq, stamp, stamp)
        for call_id, row in new.items()
    ]


def saved_call_rows(rows: Sequence[CallRow], stamp: Any) -> list[tuple[Any, ...]]:
    """state, seq, updated, id: for ``SAVE_CALL``."""
    return [(json.dumps(c.state.to_json()), c.seq, stamp, c.id) for c in rows]


SAVE_CALL = "UPDATE calls SET state = ?, seq = ?, updated = ? WHERE id = ?"


async def insert_calls(
    conn: AsyncConnection, source_id: int, new: dict[str, CallRow], now: datetime
) -> None:
    """Insert new calls (``id`` 0) and set their ids; the caller is the only writer of calls."""
    if not new:
        return
    rows = call_rows(source_id, new, bulk.timestamp(conn, now))
    await bulk.insert_rows(conn, calls, CALL_COLUMNS, rows)
    for chunk in _chunks(sorted(new)):
        query = select(calls.c.id, calls.c.call_id).where(
            calls.c.source_id == source_id, calls.c.call_id.in_(chunk)
        )
        for found in await conn.execute(query):
            new[found.call_id].id = found.id


async def save_calls(conn: AsyncConnection, rows: Sequence[CallRow], now: datetime) -> None:
    if not rows:
        return
    await bulk.run_many(conn, SAVE_CALL, saved_call_rows(rows, bulk.timestamp(conn, now)))


async def known_events(conn: AsyncConnection, source_id: int, event_ids: Sequence[str]) -> set[str]:
    """The ids among ``event_ids`` already stored for the source."""
    known: set[str] = set()
    for chunk in _chunks(sorted(set(event_ids))):
        query = select(call_events.c.event_id).where(
            call_events.c.source_id == source_id, call_events.c.event_id.in_(chunk)
        )
        known.update(await conn.scalars(query))
    return known


@dataclass(frozen=True, slots=True)
class NewEvent:
    source_id: int
    call: CallRow
    event: CallEvent
    note: str | None


EVENT_COLUMNS = ("source_id", "event_id", "call_ref", "kind", "time", "body", "note", "received")


def event_rows(stamp: Stamp, rows: Sequence[NewEvent], now: datetime) -> list[tuple[Any, ...]]:
    """The call_events rows of ``rows``, in ``EVENT_COLUMNS`` order (their calls' ids known)."""
    received = stamp(now)
    return [
        (
            r.source_id,
            r.event.event_id,
            r.call.id,
            r.event.kind.value,
            stamp(r.event.time),
            json.dumps(r.event.to_json()),
            r.note,
            received,
        )
        for r in rows
    ]


async def insert_events(conn: AsyncConnection, rows: Sequence[NewEvent], now: datetime) -> None:
    """Store call events (their ids were checked with ``known_events`` under the calls' locks;
    a concurrent insert of the same id fails the transaction instead of being lost)."""

    def stamp(value: datetime | None) -> Any:
        return bulk.timestamp(conn, value)

    await bulk.insert_rows(conn, call_events, EVENT_COLUMNS, event_rows(stamp, rows, now))


# --- matching rules ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    method: int
    url: str
    app_id: int | None
    owner_path: str


_org = accounts.alias("org")
_owner = accounts.alias("owner")
_RULES = (
    select(
        _org.c.org_code,
        extensions.c.number,
        pce.c.type,
        pce.c.id,
        pce.c.method,
        pce.c.url,
        pce.c.app_id,
        _owner.c.path,
    )
    .select_from(
        pce.join(extensions, extensions.c.id == pce.c.extension_id)
        .join(_org, _org.c.id == extensions.c.org_id)
        .join(_owner, _owner.c.id == extensions.c.owner_id)
    )
    .where(pce.c.status == 1)
    .order_by(pce.c.id)
)

#: (organization code, short number, PhoneCallEvent type)
RuleKey = tuple[int, str, int]


async def rules_for_many(conn: AsyncConnection, wanted: set[RuleKey]) -> dict[RuleKey, list[Rule]]:
    """The enabled PhoneCallEvents of each (organization, extension, type), in id order; one
    query for a whole commit group."""
    found: dict[RuleKey, list[Rule]] = {key: [] for key in wanted}
    pairs = sorted({(org, short) for org, short, _ in wanted})
    for chunk in _chunks(pairs):
        query = _RULES.where(
            _org.c.org_code.in_(sorted({org for org, _ in chunk})),
            extensions.c.number.in_(sorted({short for _, short in chunk})),
        )
        for r in await conn.execute(query):
            rules = found.get((r.org_code, r.number, r.type))
            if rules is not None:
                rules.append(Rule(r.id, r.method, r.url, r.app_id, r.path))
    return found


# --- deliveries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewDelivery:
    webhook_id: str
    #: its id is known once the call is inserted (a new call's row comes in the same commit)
    call: CallRow
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
    payload: str
    expires_at: datetime
    #: shown in the delivery log: why the event behind it was made up by its source
    note: str | None = None


def order_key(url: str, call_ref: int) -> str:
    """Deliveries with the same key are sent one after another: (url without fragment, call)."""
    return hashlib.sha256(f"{call_ref}\n{url.split('#', 1)[0]}".encode()).hexdigest()


DELIVERY_COLUMNS = (
    "webhook_id",
    "call_ref",
    "call_id",
    "seq",
    "event_type",
    "extension",
    "owner_path",
    "rule_id",
    "app_id",
    "method",
    "url",
    "host",
    "order_key",
    "payload",
    "state",
    "attempts",
    "next_at",
    "expires_at",
    "created",
    "note",
)


def delivery_rows(
    stamp: Stamp, rows: Sequence[NewDelivery], now: datetime
) -> list[tuple[Any, ...]]:
    """The rows of new deliveries, pending and due now, in ``DELIVERY_COLUMNS`` order (their
    calls' ids known)."""
    created = stamp(now)
    keys: dict[tuple[str, int], str] = {}

    def key_of(d: NewDelivery) -> str:  # a call's deliveries mostly share their URL
        key = keys.get((d.url, d.call.id))
        if key is None:
            key = keys[(d.url, d.call.id)] = order_key(d.url, d.call.id)
        return key

    return [
        (
            d.webhook_id,
            d.call.id,
            d.call_id,
            d.seq,
            d.event_type,
            d.extension,
            d.owner_path,
            d.rule_id,
            d.app_id,
            d.method,
            d.url,
            d.host,
            key_of(d),
            d.payload,
            PENDING,
            0,
            created,
            stamp(d.expires_at),
            created,
            d.note,
        )
        for d in rows
    ]


#: how long a delivery made behind an earlier one of its (url, call) in the same commit waits
#: in the queue at most: it is due as soon as that one is finished (WAKE_NEXT), so the claim
#: does not read it again and again meanwhile; the limit only bounds how late it would be if
#: no finish woke it. A claim clears ``parked`` (a leased row is never woken: it would be due
#: again while its lease runs)
PARKED = timedelta(seconds=60)

#: SQLite (one writer): the queue rows of the deliveries inserted after the one given (?1),
#: each after the first of its (url, call) parked until ?2
QUEUE_INSERTED = (
    "INSERT INTO delivery_queue (id, order_key, host, next_at, parked) "
    "SELECT id, order_key, host, CASE WHEN n > 1 THEN ?2 ELSE next_at END, n > 1 FROM ("
    "SELECT id, order_key, host, next_at, "
    "row_number() OVER (PARTITION BY order_key ORDER BY id) AS n "
    "FROM deliveries WHERE id > ?1) ORDER BY id"
)
#: before the finished deliveries (``{ids}``) leave the queue: the next of each one's
#: (url, call), if it was parked behind it, is due from its delivery's own next attempt (when
#: it was made)
WAKE_NEXT = (
    "UPDATE delivery_queue SET next_at = (SELECT d.next_at FROM deliveries AS d "
    "WHERE d.id = delivery_queue.id), parked = {false} WHERE parked AND id IN ("
    "SELECT (SELECT min(q.id) FROM delivery_queue AS q "
    "WHERE q.order_key = done.order_key AND q.id > done.id) "
    "FROM delivery_queue AS done WHERE done.id IN ({ids}))"
)
#: SQLite: the last delivery's id before an insert (0 when there is none)
LAST_DELIVERY = "SELECT coalesce(max(id), 0) FROM deliveries"


async def insert_deliveries(
    conn: AsyncConnection, rows: Sequence[NewDelivery], now: datetime
) -> None:
    """Insert new deliveries, pending and due now, in the order given (their ids keep it), and
    their rows of the queue (the only writer: SQLite in memory)."""
    if not rows:
        return

    def stamp(value: datetime | None) -> Any:
        return bulk.timestamp(conn, value)

    last = (await conn.exec_driver_sql(LAST_DELIVERY)).scalar_one()
    await bulk.insert_rows(conn, deliveries, DELIVERY_COLUMNS, delivery_rows(stamp, rows, now))
    await conn.exec_driver_sql(QUEUE_INSERTED, (last, stamp(now + PARKED)))


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


@lru_cache(maxsize=8)
def _lease_statement(skipping: bool) -> Any:
    """The claim's first step through the engine (SQLite in memory; ``outbox_sqlite`` and
    ``outbox_postgres`` take the same rows), built once (its values are bound parameters): the
    deliveries due in the queue (a leased one is due there when its lease ends), each the first
    of its (url, call) still in it, due again there when the lease ends; their ids."""
    cand = delivery_queue.alias("cand")
    earlier = delivery_queue.alias("earlier")
    blocked = exists().where(
        and_(earlier.c.order_key == cand.c.order_key, earlier.c.id < cand.c.id)
    )
    due = select(cand.c.id).where(
        cand.c.next_at <= bindparam("b_now", type_=delivery_queue.c.next_at.type), ~blocked
    )
    if skipping:
        due = due.where(cand.c.host.not_in(bindparam("b_skip", expanding=True)))
    due = due.order_by(cand.c.next_at, cand.c.id).limit(bindparam("b_limit", type_=Integer))
    until = bindparam("b_until", type_=delivery_queue.c.next_at.type)
    return (
        update(delivery_queue)
        .where(delivery_queue.c.id.in_(due.scalar_subquery()))
        .values(next_at=until, parked=False)
        .returning(delivery_queue.c.id)
    )


# --- a worker's cycle: one transaction (outbox_sqlite, outbox_postgres) ----------------------

EXPIRED_REASON = "expired before it could be sent"


@dataclass(frozen=True, slots=True)
class ClaimWanted:
    now: datetime
    lease: timedelta
    limit: int
    skip_hosts: Sequence[str] = ()


@dataclass(slots=True)
class CycleDone:
    #: per finished attempt: False if its lease was lost meanwhile (nothing of it written)
    kept: list[bool] = field(default_factory=list)
    #: claimed and still to be sent, by id
    jobs: list[Job] = field(default_factory=list)
    #: claimed too late: recorded as expired in the same transaction
    expired: list[Job] = field(default_factory=list)
    #: the claim took long (PostgreSQL: its statistics may be stale)
    slow_claim: bool = False


async def claim(
    conn: AsyncConnection,
    *,
    now: datetime,
    owner: str,
    lease: timedelta,
    limit: int,
    skip_hosts: Sequence[str] = (),
) -> list[Job]:
    """Lease up to ``limit`` due deliveries, each the first unfinished one of its (url, call)
    (one writer: SQLite in memory)."""
    params: dict[str, Any] = {"b_now": now, "b_limit": limit}
    if skip_hosts:
        params["b_skip"] = list(skip_hosts)
    until = now + lease
    params["b_until"] = until
    # an UPDATE first: on SQLite it takes the write lock at once (a SELECT first would have to
    # upgrade its read lock, which fails instead of waiting when others write)
    ids = list(await conn.scalars(_lease_statement(bool(skip_hosts)), params))
    if not ids:
        return []
    rows = await conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(ids))
        .values(lease_until=until, lease_owner=owner)
        .returning(*_JOB_COLUMNS)
    )
    return sorted((Job(*r) for r in rows), key=lambda job: job.id)


async def release(conn: AsyncConnection, ids: Sequence[int], owner: str, next_at: datetime) -> None:
    """Give leased deliveries back without an attempt (breaker open, shutting down)."""
    if not ids:
        return
    mine = list(
        await conn.scalars(
            update(deliveries)
            .where(deliveries.c.id.in_(list(ids)), deliveries.c.lease_owner == owner)
            .values(lease_until=None, lease_owner=None, next_at=next_at)
            .returning(deliveries.c.id)
        )
    )
    if mine:
        await conn.execute(
            update(delivery_queue).where(delivery_queue.c.id.in_(mine)).values(next_at=next_at)
        )


async def release_all(conn: AsyncConnection, owner: str | None = None) -> int:
    """Drop leases (of one owner, or all of them when one process owns the database): each
    delivery due again at its own next attempt."""
    query = update(deliveries).where(deliveries.c.lease_owner.is_not(None))
    if owner is not None:
        query = query.where(deliveries.c.lease_owner == owner)
    query = query.values(lease_until=None, lease_owner=None)
    released = list(await conn.scalars(query.returning(deliveries.c.id)))
    for chunk in _chunks(released):
        await conn.execute(
            update(delivery_queue)
            .where(delivery_queue.c.id.in_(chunk))
            .values(next_at=_own_next_attempt())
        )
    return len(released)


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
    await _dequeue(conn, [(job.id, state, next_at)])
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


ATTEMPT_COLUMNS = (
    "delivery_id",
    "at",
    "host",
    "status",
    "error_class",
    "error",
    "latency_ms",
    "snippet",
    "worker",
)


#: SQLite: many attempts in one statement, each only while its lease is still the worker's
FINISH_FROM_VALUES = (
    "UPDATE deliveries SET state = v.column1, lease_until = NULL, lease_owner = NULL, "
    "last_error = v.column2, attempts = attempts + 1, last_status = v.column3, "
    "next_at = COALESCE(v.column4, next_at), finished = v.column5 "
    "FROM (VALUES {values}) AS v "
    "WHERE deliveries.id = v.column6 AND deliveries.state = 'pending' "
    "AND deliveries.lease_owner = ?"
)


def finish_rows(stamp: Stamp, finished: Sequence[Finished]) -> list[tuple[Any, ...]]:
    """state, reason, status, next attempt, finished time, id: for FINISH_FROM_VALUES and its
    kin."""
    return [
        (
            f.state,
            f.reason,
            f.attempt.status,
            stamp(f.next_at),
            None if f.state == PENDING else stamp(f.attempt.at),
            f.job.id,
        )
        for f in finished
    ]


def attempt_rows(stamp: Stamp, finished: Sequence[Finished]) -> list[tuple[Any, ...]]:
    """The delivery_attempts rows of ``finished``, in ``ATTEMPT_COLUMNS`` order."""
    return [
        (
            f.job.id,
            stamp(f.attempt.at),
            f.attempt.host,
            f.attempt.status,
            f.attempt.error_class,
            f.attempt.error,
            f.attempt.latency_ms,
            f.attempt.snippet,
            f.attempt.worker,
        )
        for f in finished
    ]


async def _recorded_by(conn: AsyncConnection, finished: Sequence[Finished], owner: str) -> set[int]:
    """After ``FINISH_FROM_VALUES``: the deliveries it changed (their state is the one recorded
    and their attempts were counted by this update, which cleared the lease)."""
    wanted = {f.job.id: f for f in finished}
    kept: set[int] = set()
    for chunk in _chunks(list(wanted)):
        query = select(
            deliveries.c.id, deliveries.c.state, deliveries.c.attempts, deliveries.c.lease_owner
        ).where(deliveries.c.id.in_(chunk))
        for row in await conn.execute(query):
            f = wanted[row.id]
            if row.lease_owner is None and row.attempts == f.job.attempts + 1:
                kept.add(row.id)
    return kept


@dataclass(frozen=True, slots=True)
class Finished:
    """An attempt that was made and what follows from it."""

    job: Job
    attempt: Attempt
    state: str
    next_at: datetime | None
    reason: str | None


async def finish_attempts(
    conn: AsyncConnection, owner: str, finished: Sequence[Finished]
) -> list[bool]:
    """Record many attempts of one worker; for each, False if its lease was lost meanwhile
    (then nothing of it is written). Through the engine: SQLite in memory (a SQLite file goes
    through ``outbox_sqlite``, PostgreSQL through ``outbox_postgres``).

    One writer at a time: the updates check the lease themselves, and only when fewer rows
    changed than attempts were made does a query find which leases were lost.
    """
    if not finished:
        return []

    def stamp(value: datetime | None) -> Any:
        return bulk.timestamp(conn, value)

    changed = 0
    for chunk in bulk.chunked(finish_rows(stamp, finished), 6):
        sql = FINISH_FROM_VALUES.format(values=bulk.values(len(chunk), 6))
        params = (*(v for row in chunk for v in row), owner)
        result = await conn.exec_driver_sql(sql, params)
        changed += result.rowcount
    if changed == len(finished):
        kept = {f.job.id for f in finished}
    else:
        kept = await _recorded_by(conn, finished, owner)
    mine = [f for f in finished if f.job.id in kept]
    await _dequeue(conn, [(f.job.id, f.state, f.next_at) for f in mine])
    if mine:
        rows = attempt_rows(stamp, mine)
        await bulk.insert_rows(conn, delivery_attempts, ATTEMPT_COLUMNS, rows)
    return [f.job.id in kept for f in finished]


async def _dequeue(
    conn: AsyncConnection, changed: Sequence[tuple[int, str, datetime | None]]
) -> None:
    """After deliveries' state changed (id, new state, next attempt or None): the finished ones
    leave the queue, the pending ones are due there at their next attempt."""
    done = [delivery_id for delivery_id, state, _ in changed if state != PENDING]
    for chunk in _chunks(done):
        marks = ", ".join("?" for _ in chunk)
        await conn.exec_driver_sql(WAKE_NEXT.format(false="0", ids=marks), tuple(chunk))
        await conn.execute(delete(delivery_queue).where(delivery_queue.c.id.in_(chunk)))
    for delivery_id, state, next_at in changed:
        if state == PENDING:
            due = _own_next_attempt() if next_at is None else next_at
            await conn.execute(
                update(delivery_queue).where(delivery_queue.c.id == delivery_id).values(next_at=due)
            )


def _own_next_attempt() -> Any:
    """In an UPDATE of the queue: its delivery's next attempt."""
    return (
        select(deliveries.c.next_at).where(deliveries.c.id == delivery_queue.c.id).scalar_subquery()
    )


#: a claim slower than this (seconds) may be working from stale statistics (see
#: ``refresh_statistics``)
SLOW_CLAIM = 0.25


async def refresh_statistics(conn: AsyncConnection) -> None:
    """PostgreSQL: ANALYZE the outbox. The claim's plan depends on how many deliveries the
    planner thinks there are; after a burst into a table it last saw small it picks a scan
    per candidate (seconds instead of milliseconds) until autovacuum gets to it."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("ANALYZE delivery_queue"))


async def queue_depth(conn: AsyncConnection) -> int:
    query = select(func.count()).select_from(delivery_queue)
    return int((await conn.execute(query)).scalar_one())


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest pending delivery may be claimed (for a worker deciding how long to
    sleep; a leased one when its lease ends)."""
    query = select(func.min(delivery_queue.c.next_at))
    value: datetime | None = (await conn.execute(query)).scalar_one()
    return value
