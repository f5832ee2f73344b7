"""Ingest's write transaction on a SQLite file, straight through sqlite3 on a thread of its own.

What a commit group writes (its new calls, their events, the deliveries they cause, the calls
it changed) is one transaction. Through SQLAlchemy and aiosqlite its statements took ~14 ms of
hops between a busy event loop and aiosqlite's thread while holding SQLite's write lock, which
the worker waited behind. Here it is one function on one thread with its own connection
(``sqlite_thread``), committed ``synchronous=FULL``: a 202 still means on disk. The rows are
``outbox``'s; the statements insert many rows each, as ``bulk`` does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
    rows, for the events and deliveries that refer to them), the events, the deliveries, and
    save the changed calls."""
    stamp = bulk.sqlite_datetime(now)
    for source_id, new in new_calls:
        _insert_calls(conn, source_id, new, stamp)
    _insert(conn, "call_events", outbox.EVENT_COLUMNS, outbox.event_rows(_stamp, events, now))
    rows = outbox.delivery_rows(_stamp, deliveries, now)
    _insert(conn, "deliveries", outbox.DELIVERY_COLUMNS, rows)
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
