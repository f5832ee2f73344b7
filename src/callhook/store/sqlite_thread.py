"""A SQLite file's hot writer straight through sqlite3, on a thread of its own.

Through SQLAlchemy and aiosqlite each statement of a transaction is several hops between the
event loop and aiosqlite's thread, and with the loop busy each hop waits for it. Here a whole
transaction is one function run on one thread with its own connection: one hop per
transaction. The worker's cycles (``outbox_sqlite``) and ingest's writes (``ingest_sqlite``)
run this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

R = TypeVar("R")
P = TypeVar("P")

#: seconds to wait for the write lock at most, and between two tries
BUSY_TIMEOUT = 10.0
BUSY_STEP = 0.0005


class SqliteThread:
    """One connection to ``path`` on one thread (``close`` when done)."""

    def __init__(self, path: str, *, synchronous: str, name: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def transaction(self, work: Callable[[sqlite3.Connection], R]) -> R:
        """``work(conn)`` in one write transaction on the thread, committed before it returns.

        A caller cancelled meanwhile still gets the outcome: the transaction goes on in its
        thread and may commit, and what it wrote must not be written again; the cancellation
        comes back at the caller's next await.
        """
        return await self._hop(self._transaction, work)

    async def prepared_transaction(
        self,
        prepare: Callable[[sqlite3.Connection], P],
        work: Callable[[sqlite3.Connection, P], R],
    ) -> R:
        """``prepare(conn)`` on the thread outside any transaction (reads that need not hold
        the write lock), then ``work(conn, prepared)`` as ``transaction`` does: one hop."""
        return await self._hop(self._prepared, prepare, work)

    async def _hop(self, fn: Callable[..., R], *args: Any) -> R:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            try:
                while not future.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(future)
                return future.result()
            finally:
                if task is not None:
                    task.cancel()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        await asyncio.get_running_loop().run_in_executor(pool, self._disconnect)
        pool.shutdown(wait=False)

    # --- on the thread -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None)
            for pragma in (
                "journal_mode=WAL",
                "foreign_keys=ON",
                # a busy database is waited for in begin()
                "busy_timeout=0",
                f"synchronous={self.synchronous}",
            ):
                conn.execute(f"PRAGMA {pragma}")
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _transaction(self, work: Callable[[sqlite3.Connection], R]) -> R:
        conn = self._connect()
        begin(conn)
        try:
            done = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return done

    def _prepared(
        self,
        prepare: Callable[[sqlite3.Connection], P],
        work: Callable[[sqlite3.Connection, P], R],
    ) -> R:
        prepared = prepare(self._connect())
        return self._transaction(lambda conn: work(conn, prepared))


def begin(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, waiting for another process's write in short steps (``waiting``)."""
    waiting(conn, "BEGIN IMMEDIATE")


def waiting(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> None:
    """``conn.execute(sql, params)``, tried again in short steps while another connection
    holds the write lock (a statement that takes the lock: BEGIN IMMEDIATE, or a write in
    autocommit, which a busy lock leaves undone).

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between tries: a commit of
    ingest that holds the lock 10 ms made a cycle wait 18 ms, and p99 of the waits was 34 ms.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            conn.execute(sql, params)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
        time.sleep(BUSY_STEP)
