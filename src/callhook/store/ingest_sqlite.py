"""Ingest's write transaction on a SQLite file, straight through sqlite3 on a thread of its own.

What a commit group writes (its new calls, their events, the deliveries they cause, the calls
it changed) is one transaction. Through SQLAlchemy and aiosqlite its statements took ~14 ms of
hops between a busy event loop and aiosqlite's thread while holding SQLite's write lock, which
the worker waited behind. Here it is one function on one thread with its own connection
(``sqlite_thread``), committed ``synchronous=FULL``: a 202 still means on disk. The rows are
``outbox``'s; the statements insert many rows each, as ``bulk`` does.

The group's reads (its calls, its known event ids, the rules it needs) go the same way, on the
same thread and in the same hop, each in one statement that answers one row (``ingest``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from callhook.domain.calls import CallState
from callhook.store import bulk, outbox

#: the calls' new state, seq and update time, many rows in one statement
_SAVE_FROM_VALUES = (
    "UPDATE calls SET state = v.column1, seq = v.column2, updated = v.column3 "
    "FROM (VALUES {values}) AS v WHERE calls.id = v.column4"
)


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else bulk.sqlite_datetime(value)


def write(
    conn: sqlite3.Connection,
    new_calls: Sequence[tuple[int, dict[str, outbox.CallRow]]],
    events: Sequence[outbox.NewEvent],
    deliveries: Sequence[outbox.NewDelivery],
    changed: Sequence[outbox.CallRow],
    now: datetime,
) -> None:
    """Inside a transaction: insert the new calls (per source; their ids are set on their
    rows, for the events and deliveries that refer to them), the events, the deliveries (and
    their rows of the queue), and save the changed calls."""
    stamp = bulk.sqlite_datetime(now)
    for source_id, new in new_calls:
        _insert_calls(conn, source_id, new, stamp)
    _insert(conn, "call_events", outbox.EVENT_COLUMNS, outbox.event_rows(_stamp, events, now))
    if deliveries:
        (last,) = conn.execute(outbox.LAST_DELIVERY).fetchone()
        rows = outbox.delivery_rows(_stamp, deliveries, now)
        _insert(conn, "deliveries", outbox.DELIVERY_COLUMNS, rows)
        conn.execute(outbox.QUEUE_INSERTED, (last, _stamp(now + outbox.PARKED)))
    saved = outbox.saved_call_rows(changed, stamp)
    for chunk in bulk.chunked(saved, 4):
        sql = _SAVE_FROM_VALUES.format(values=bulk.values(len(chunk), 4))
        conn.execute(sql, tuple(v for row in chunk for v in row))


def _insert_calls(
    conn: sqlite3.Connection, source_id: int, new: dict[str, outbox.CallRow], stamp: str
) -> None:
    if not new:
        return
    columns = ", ".join(outbox.CALL_COLUMNS)
    width = len(outbox.CALL_COLUMNS)
    for chunk in bulk.chunked(outbox.call_rows(source_id, new, stamp), width):
        sql = (
            f"INSERT INTO calls ({columns}) VALUES {bulk.values(len(chunk), width)} "  # noqa: S608
            "RETURNING id, call_id"
        )
        for call_ref, call_id in conn.execute(sql, tuple(v for row in chunk for v in row)):
            new[call_id].id = call_ref


def _insert(
    conn: sqlite3.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    names = ", ".join(columns)
    width = len(columns)
    for chunk in bulk.chunked(rows, width):
        sql = f"INSERT INTO {table} ({names}) VALUES {bulk.values(len(chunk), width)}"  # noqa: S608
        conn.execute(sql, tuple(v for row in chunk for v in row))


# --- the reads, in the same transaction as the write ---------------------------------------------
# Each query answers in one row, a JSON array: through sqlite3 every row of a result is a step
# that gives the GIL up and takes it back from the busy event loop.

#: keys per statement in IN (...): well under SQLite's limit on variables
_CHUNK = 500

_CALLS = (
    "SELECT json_group_array(json_array(id, call_id, json(state), seq)) FROM calls "
    "WHERE source_id = ? AND call_id IN ({marks})"
)
_KNOWN = (
    "SELECT json_group_array(event_id) FROM call_events "
    "WHERE source_id = ? AND event_id IN ({marks})"
)
_RULES = (
    "SELECT json_group_array(json_array(org.org_code, extensions.number, pce.type, pce.id, "
    "pce.method, pce.url, pce.app_id, owner.path)) "
    "FROM phone_call_events AS pce "
    "JOIN extensions ON extensions.id = pce.extension_id "
    "JOIN accounts AS org ON org.id = extensions.org_id "
    "JOIN accounts AS owner ON owner.id = extensions.owner_id "
    "WHERE pce.status = 1 AND org.org_code IN ({orgs}) AND extensions.number IN ({shorts})"
)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _one_json(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    found: list[Any] = json.loads(_one_text(conn, sql, params))
    return found


def _one_text(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> str:
    (text,) = conn.execute(sql, params).fetchone()
    return str(text)


def _texts(
    conn: sqlite3.Connection, query: str, source_id: int, keys: Iterable[str]
) -> tuple[str, ...]:
    ordered = sorted(set(keys))
    found = []
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        found.append(_one_text(conn, query.format(marks=_marks(len(chunk))), (source_id, *chunk)))
    return tuple(found)


def calls_text(
    conn: sqlite3.Connection, source_id: int, call_ids: Iterable[str]
) -> tuple[str, ...]:
    """The calls that exist among ``call_ids`` as read, JSON texts: two reads of unchanged
    calls give equal texts (``parse_calls`` makes their rows)."""
    return _texts(conn, _CALLS, source_id, call_ids)


def parse_calls(texts: Iterable[str]) -> dict[str, outbox.CallRow]:
    found: dict[str, outbox.CallRow] = {}
    for text in texts:
        for call_ref, call_id, state, seq in json.loads(text):
            found[call_id] = outbox.CallRow(call_ref, CallState.from_json(state), seq)
    return found


def find_calls(
    conn: sqlite3.Connection, source_id: int, call_ids: Iterable[str]
) -> dict[str, outbox.CallRow]:
    """The calls that exist among ``call_ids`` (as ``outbox.find_calls``)."""
    return parse_calls(calls_text(conn, source_id, call_ids))


def known_text(
    conn: sqlite3.Connection, source_id: int, event_ids: Iterable[str]
) -> tuple[str, ...]:
    """The ids among ``event_ids`` already stored for the source, as read: JSON texts."""
    return _texts(conn, _KNOWN, source_id, event_ids)


def parse_known(texts: Iterable[str]) -> set[str]:
    return {event_id for text in texts for event_id in json.loads(text)}


def known_events(conn: sqlite3.Connection, source_id: int, event_ids: Iterable[str]) -> set[str]:
    """The ids among ``event_ids`` already stored for the source (as ``outbox.known_events``)."""
    return parse_known(known_text(conn, source_id, event_ids))


def rules_for_many(
    conn: sqlite3.Connection, wanted: set[outbox.RuleKey]
) -> dict[outbox.RuleKey, list[outbox.Rule]]:
    """The enabled PhoneCallEvents of each (organization, extension, type), in id order (as
    ``outbox.rules_for_many``)."""
    found: dict[outbox.RuleKey, list[outbox.Rule]] = {key: [] for key in wanted}
    pairs = sorted({(org, short) for org, short, _ in wanted})
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start : start + _CHUNK]
        orgs = sorted({org for org, _ in chunk})
        shorts = sorted({short for _, short in chunk})
        sql = _RULES.format(orgs=_marks(len(orgs)), shorts=_marks(len(shorts)))
        for org, short, etype, rule_id, method, url, app_id, path in _one_json(
            conn, sql, (*orgs, *shorts)
        ):
            rules = found.get((org, short, etype))
            if rules is not None:
                rules.append(outbox.Rule(rule_id, method, url, app_id, path))
    for rules in found.values():
        rules.sort(key=_rule_id)
    return found


def _rule_id(rule: outbox.Rule) -> str:
    return rule.id
