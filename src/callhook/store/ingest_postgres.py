"""Ingest's transaction on PostgreSQL, straight through asyncpg.

A commit group is one transaction on a connection of ingest's own, in a fixed number of
statements, each prepared once (asyncpg's statement cache) and each taking whole columns as
arrays, so its text never changes with the group's size: the new calls inserted, the group's
calls locked, its known event ids, the rules it needs; then its events, its deliveries and its
calls written. Committed with ``synchronous_commit`` as the server has it (on by default): a
202 still means on disk.

The lookups by key go through ``unnest(...) CROSS JOIN LATERAL (... LIMIT 1)``: one probe of
the unique index per key whatever the planner's statistics say. With ``IN (...)`` or
``= ANY(...)`` a table that grew since it was last analyzed (a fresh database under load, for
the first minute before autovacuum looks) was read in full and each row compared with every
key: 200-300 ms per commit group at 30,000 events, growing with the table (bench/RESULTS.md).

Through SQLAlchemy's asyncpg adapter the same transaction was ~10 round trips with more rows
each and SQLAlchemy's processing around them; the rows are ``outbox``'s either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.domain.calls import CallState
from callhook.store import outbox
from callhook.store.database import asyncpg_options
from callhook.store.pg_connection import OwnConnection, columns, moment

NOTIFY = "SELECT pg_notify($1, '')"

#: new calls, empty; those that exist already are left as they are (and locked next)
_INSERT_CALLS = (
    "INSERT INTO calls (source_id, call_id, state, seq, created, updated) "
    "SELECT $1, k.call_id, $3, 0, $4, $4 FROM unnest($2::text[]) AS k(call_id) "
    "ON CONFLICT (source_id, call_id) DO NOTHING"
)
#: the calls, locked in the order of the keys given (sorted: no deadlock between two writers)
_LOCK_CALLS = (
    "SELECT c.id, c.call_id, c.state, c.seq FROM unnest($2::text[]) AS k(call_id) "
    "CROSS JOIN LATERAL (SELECT id, call_id, state, seq FROM calls "
    "WHERE source_id = $1 AND call_id = k.call_id LIMIT 1 FOR UPDATE) AS c"
)
_KNOWN = (
    "SELECT k.event_id FROM unnest($2::text[]) AS k(event_id) "
    "CROSS JOIN LATERAL (SELECT 1 FROM call_events "
    "WHERE source_id = $1 AND event_id = k.event_id LIMIT 1) AS e"
)
_RULES = (
    "SELECT k.org_code, k.number, pce.type, pce.id, pce.method, pce.url, pce.app_id, "
    "owner.path FROM unnest($1::int[], $2::text[]) AS k(org_code, number) "
    "CROSS JOIN LATERAL (SELECT id, owner_id FROM extensions "
    "WHERE org_id = (SELECT id FROM accounts WHERE org_code = k.org_code) "
    "AND number = k.number LIMIT 1) AS ext "
    "JOIN accounts AS owner ON owner.id = ext.owner_id "
    "JOIN phone_call_events AS pce ON pce.extension_id = ext.id AND pce.status = 1"
)
#: column types of ``outbox.EVENT_COLUMNS``
_EVENT_TYPES = ("bigint", "text", "bigint", "text", "timestamptz", "text", "text", "timestamptz")
#: column types of ``outbox.DELIVERY_COLUMNS``
_DELIVERY_TYPES = (
    "text",  # webhook_id
    "bigint",  # call_ref
    "text",  # call_id
    "int",  # seq
    "smallint",  # event_type
    "text",  # extension
    "text",  # owner_path
    "text",  # rule_id
    "bigint",  # app_id
    "smallint",  # method
    "text",  # url
    "text",  # host
    "text",  # order_key
    "text",  # payload
    "text",  # state
    "int",  # attempts
    "timestamptz",  # next_at
    "timestamptz",  # expires_at
    "timestamptz",  # created
    "text",  # note
)
_SAVE_CALLS = (
    "UPDATE calls SET state = v.state, seq = v.seq, updated = v.updated "
    "FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::bigint[]) "
    "AS v(state, seq, updated, id) WHERE calls.id = v.id"
)


def _insert_columns(table: str, names: Sequence[str], types: Sequence[str]) -> str:
    """INSERT of many rows given as one array per column."""
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, 1))
    return f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({arrays})"  # noqa: S608


_INSERT_EVENTS = _insert_columns("call_events", outbox.EVENT_COLUMNS, _EVENT_TYPES)
#: the deliveries and their rows of the queue
_MADE = _insert_columns("deliveries", outbox.DELIVERY_COLUMNS, _DELIVERY_TYPES)
#: (each after the first of its (url, call) parked for outbox.PARKED, the parameter after the
#: columns)
_PARKED = len(outbox.DELIVERY_COLUMNS) + 1
_INSERT_DELIVERIES = (
    f"WITH made AS ({_MADE} RETURNING id, order_key, host, next_at) "  # noqa: S608
    "INSERT INTO delivery_queue (id, order_key, host, next_at, parked) "
    f"SELECT id, order_key, host, CASE WHEN n > 1 THEN next_at + ${_PARKED}::interval "
    "ELSE next_at END, n > 1 FROM (SELECT *, row_number() OVER "
    "(PARTITION BY order_key ORDER BY id) AS n FROM made) AS m"
)


async def lock_calls(
    conn: asyncpg.Connection, source_id: int, call_ids: Iterable[str], now: datetime
) -> dict[str, outbox.CallRow]:
    """The calls' rows, made if new, locked until the transaction ends, in ``call_id`` order
    (two transactions locking the same calls cannot deadlock)."""
    ordered = sorted(set(call_ids))
    empty = json.dumps(CallState().to_json())
    await conn.execute(_INSERT_CALLS, source_id, ordered, empty, now)
    found: dict[str, outbox.CallRow] = {}
    for call_ref, call_id, state, seq in await conn.fetch(_LOCK_CALLS, source_id, ordered):
        found[call_id] = outbox.CallRow(call_ref, CallState.from_json(json.loads(state)), seq)
    return found


async def known_events(
    conn: asyncpg.Connection, source_id: int, event_ids: Iterable[str]
) -> set[str]:
    """The ids among ``event_ids`` already stored for the source."""
    rows = await conn.fetch(_KNOWN, source_id, sorted(set(event_ids)))
    return {row[0] for row in rows}


async def rules_for_many(
    conn: asyncpg.Connection, wanted: set[outbox.RuleKey]
) -> dict[outbox.RuleKey, list[outbox.Rule]]:
    """The enabled PhoneCallEvents of each (organization, extension, type), in id order (as
    ``outbox.rules_for_many``)."""
    found: dict[outbox.RuleKey, list[outbox.Rule]] = {key: [] for key in wanted}
    if not wanted:
        return found
    pairs = sorted({(org, short) for org, short, _ in wanted})
    orgs, shorts = [org for org, _ in pairs], [short for _, short in pairs]
    for org, short, etype, rule_id, method, url, app_id, path in await conn.fetch(
        _RULES, orgs, shorts
    ):
        rules = found.get((org, short, etype))
        if rules is not None:
            rules.append(outbox.Rule(rule_id, method, url, app_id, path))
    for rules in found.values():
        rules.sort(key=lambda rule: rule.id)
    return found


async def write(
    conn: asyncpg.Connection,
    events: Sequence[outbox.NewEvent],
    deliveries: Sequence[outbox.NewDelivery],
    changed: Sequence[outbox.CallRow],
    now: datetime,
    *,
    channel: str,
) -> None:
    """Inside the transaction: the events, the deliveries (in the order given: their ids keep
    it), the changed calls; ``channel`` notified when there are deliveries."""
    if events:
        rows = outbox.event_rows(moment, events, now)
        await conn.execute(_INSERT_EVENTS, *columns(rows))
    if deliveries:
        rows = outbox.delivery_rows(moment, deliveries, now)
        await conn.execute(_INSERT_DELIVERIES, *columns(rows), outbox.PARKED)
    if changed:
        saved = outbox.saved_call_rows(changed, now)
        await conn.execute(_SAVE_CALLS, *columns(saved))
    if deliveries:
        await conn.execute(NOTIFY, channel)


def connection(engine: AsyncEngine) -> OwnConnection:
    """Ingest's one connection (group commit runs one transaction at a time)."""
    return OwnConnection(asyncpg_options(engine), name="ingest")
