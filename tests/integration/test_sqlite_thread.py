"""The SQLite hot writers' thread (store/sqlite_thread.py): committed outcomes are not lost to
a cancelled caller, and another connection's write lock is waited for."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from callhook.store.sqlite_thread import SqliteThread


def _table(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.close()


def _count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        (n,) = conn.execute("SELECT count(*) FROM t").fetchone()
        return int(n)
    finally:
        conn.close()


async def test_a_cancelled_caller_gets_the_committed_outcome(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    _table(path)
    thread = SqliteThread(str(path), synchronous="FULL", name="test-sqlite")
    started, release = threading.Event(), threading.Event()

    def work(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (1)")
        started.set()
        release.wait(5)
        return 42

    seen: list[object] = []

    async def caller() -> None:
        seen.append(await thread.transaction(work))
        await asyncio.sleep(0)  # the cancellation comes back here
        seen.append("not reached")

    task = asyncio.create_task(caller())
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.01)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [42]
    assert _count(path) == 1
    await thread.close()


async def test_another_connections_write_lock_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    _table(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    timer = threading.Timer(0.05, lambda: other.execute("COMMIT"))
    timer.start()
    thread = SqliteThread(str(path), synchronous="FULL", name="test-sqlite")

    def work(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES (2)")
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    assert await thread.transaction(work) == 2
    timer.join()
    other.close()
    await thread.close()


async def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    _table(path)
    thread = SqliteThread(str(path), synchronous="FULL", name="test-sqlite")

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (1)")
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await thread.transaction(work)
    assert _count(path) == 0
    await thread.close()


async def test_a_prepared_transaction_reads_outside_then_writes_inside_one_hop(
    tmp_path: Path,
) -> None:
    """``prepare`` runs before the write lock is taken (another connection may hold it), its
    result goes to ``work`` in the write transaction, both on the thread's one connection."""
    path = tmp_path / "t.db"
    _table(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    thread = SqliteThread(str(path), synchronous="FULL", name="test-sqlite")
    seen: list[tuple[str, bool, int]] = []

    def prepare(conn: sqlite3.Connection) -> int:
        seen.append(("prepare", conn.in_transaction, threading.get_ident()))
        count = int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
        other.execute("COMMIT")  # the read did not wait for the other's write lock
        return count

    def work(conn: sqlite3.Connection, before: int) -> tuple[int, int]:
        seen.append(("work", conn.in_transaction, threading.get_ident()))
        conn.execute("INSERT INTO t VALUES (2)")
        return before, int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    assert await thread.prepared_transaction(prepare, work) == (0, 2)
    assert [(step, inside) for step, inside, _ in seen] == [("prepare", False), ("work", True)]
    assert len({ident for _, _, ident in seen}) == 1
    assert _count(path) == 2
    other.close()
    await thread.close()
