"""How SQLite plans the worker's cycle (store/outbox_sqlite.py) on a file holding a backlog:
the claim walks the queue of pending deliveries (migration 0008), the record finds
its rows by primary key. Through the worker's own connection, on a table never analyzed (as
the service leaves it)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import make_url

from callhook.service import utcnow
from callhook.store import bulk, outbox, outbox_sqlite
from callhook.store.outbox import ClaimWanted
from callhook.store.outbox_sqlite import SqliteCycles
from tests.databases import SqliteTemplates

#: pending deliveries in the backlog (two to a call), and finished ones beside them
PENDING = 3000
DELIVERED = 1000
LEASE = timedelta(seconds=60)


@pytest.fixture
def path(sqlite_templates: SqliteTemplates) -> str:
    """A migrated SQLite file holding a call and its backlog of deliveries, all due."""
    database = make_url(sqlite_templates.clone()).database
    assert database is not None
    now = bulk.sqlite_datetime(utcnow() - timedelta(seconds=1))
    later = bulk.sqlite_datetime(utcnow() + timedelta(hours=1))
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO sources (id, name, token_hash, created) VALUES (1, 'pbx', 'h', ?)", (now,)
        )
        conn.execute(
            "INSERT INTO calls (id, source_id, call_id, state, seq, created, updated) "
            "VALUES (1, 1, 'c', '{}', 0, ?, ?)",
            (now, now),
        )
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO deliveries (webhook_id, call_ref, call_id, seq, event_type, extension, "
            "owner_path, rule_id, method, url, host, order_key, payload, state, attempts, "
            "next_at, expires_at, created) "
            "SELECT 'msg_' || i, 1, 'c', 1, 0, '210', '/', 'r', 1, 'http://127.0.0.1:9/hook', "
            "'127.0.0.1:9', 'k' || (i / 2), '', "
            "CASE WHEN i <= ? THEN 'delivered' ELSE 'pending' END, 0, ?, ?, ? FROM n",
            (PENDING + DELIVERED, DELIVERED, now, later, now),
        )
        conn.execute(
            "INSERT INTO delivery_queue (id, order_key, host, next_at) "
            "SELECT id, order_key, host, next_at FROM deliveries WHERE state = 'pending'"
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return database


@pytest.fixture
async def cycles(path: str) -> AsyncIterator[SqliteCycles]:
    made = SqliteCycles(path)
    yield made
    await made.close()


def _plan(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


def _wanted(limit: int) -> ClaimWanted:
    return ClaimWanted(utcnow(), LEASE, limit, ())


async def test_the_claim_walks_the_queue_of_pending_deliveries(cycles: SqliteCycles) -> None:
    """Due deliveries in next_at order from the queue's (next_at, id) index, and the earlier
    pending one of each call from its (order_key, id) index: neither reads finished
    deliveries, and no step scans a table."""
    now = bulk.sqlite_datetime(utcnow())

    def plan(conn: sqlite3.Connection) -> list[str]:
        return _plan(conn, outbox_sqlite._DUE.format(skip=""), (now, 60))

    details = await cycles._thread.transaction(plan)
    assert "SEARCH cand USING INDEX ix_delivery_queue_next_at (next_at<?)" in details, details
    assert any(
        d.startswith("SEARCH earlier USING ")
        and d.endswith("INDEX ix_delivery_queue_order_key (order_key=? AND id<?)")
        for d in details
    ), details
    assert any(d.startswith("SEARCH deliveries USING INTEGER PRIMARY KEY") for d in details)
    # each read through its index only, in order (no sort)
    assert not any(d.startswith("SCAN") for d in details), details
    assert not any("TEMP B-TREE" in d for d in details), details
    # and the claim takes the first pending delivery of each call (deliveries 2k and 2k + 1
    # share a call; the 1000th was delivered, so the 1001st is the first of its call)
    jobs = (await cycles.cycle("w", [], [], _wanted(60))).jobs
    first = [DELIVERED + 1, *range(DELIVERED + 2, DELIVERED + 2 * 59 + 1, 2)]
    assert [job.webhook_id for job in jobs] == [f"msg_{i}" for i in first]


async def test_the_record_finds_its_rows_by_primary_key(cycles: SqliteCycles) -> None:
    """``state = 'pending'`` in the record's WHERE must not send SQLite through an index of
    pending deliveries (the whole backlog) to find a cycle's few rows."""
    jobs = (await cycles.cycle("w", [], [], _wanted(5))).jobs
    assert len(jobs) == 5
    done = [
        outbox.Finished(
            job,
            outbox.Attempt(utcnow(), job.host, 204, None, None, 3, "", "w"),
            outbox.DELIVERED,
            None,
            None,
        )
        for job in jobs
    ]
    rows = outbox.finish_rows(outbox_sqlite._stamp, done)
    sql = outbox.FINISH_FROM_VALUES.format(values=bulk.values(len(rows), 6))
    params = (*(v for row in rows for v in row), "w")
    expire = (outbox.EXPIRED, outbox.EXPIRED_REASON, bulk.sqlite_datetime(utcnow()), jobs[0].id)

    def plans(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
        return _plan(conn, sql, params), _plan(conn, outbox_sqlite._EXPIRE, expire)

    for details in await cycles._thread.transaction(plans):
        on_deliveries = [d for d in details if "deliveries" in d]
        assert len(on_deliveries) == 1, details
        assert on_deliveries[0].startswith("SEARCH deliveries USING INTEGER PRIMARY KEY"), details
    # and the record records
    assert (await cycles.cycle("w", done, [], None)).kept == [True] * 5
