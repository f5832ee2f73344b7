"""The UnifiedAPI's hot path on a SQLite file, straight through sqlite3.

Reads (the token, the account, the extension, the rules) run synchronously on the event loop's
thread, on a read-only connection of their own: each is one indexed lookup of a few µs, less
than a hop to another thread costs. What they found is kept (``DirectoryCache``) for as long
as the database says nothing it depends on changed: before each lookup, ``PRAGMA
data_version`` (~2 µs) tells whether any other connection, of any process, committed since the
last look; if one did, the ``api_versions`` counters, which triggers bump on every change to
the directory and to the rules (migration 0005), tell whether it was such a change, and if so
everything kept is dropped. A token revoked by ``callhook admin`` in another process is
refused by the next request; ingest's and the worker's commits only cost the counters' read.

Creates are group-committed (``group_commit``): the rules of the Creates that arrive while a
commit runs are inserted together in the next transaction, with ``synchronous=FULL``: one fsync
for them all, and a 201 still means the rule is on disk. The INSERT runs on the event loop's
thread when the write lock is free at once, the COMMIT (the fsync) on a thread of its own
(``RuleWriter``). The process's writers of this file take turns (``database.write_turn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.domain.accounts import Account, Extension
from callhook.domain.phone_call_events import EventType, PhoneCallEvent
from callhook.store import bulk
from callhook.store.credentials import TokenRecord
from callhook.store.database import write_turn
from callhook.store.directory_cache import DirectoryCache
from callhook.store.group_commit import GroupCommit
from callhook.store.sqlite_thread import begin
from callhook.store.uapi_store import (
    FIND_ACCESS,
    FIND_EXTENSION,
    FIND_EXTENSION_IN_ORG,
    GET_ACCOUNT,
    MAX_KEPT_RULES,
    MAX_RULE_LISTS,
    ExtensionGone,
    account_of,
    event_of,
    events_params,
    extension_of,
    row_of,
    token_of,
)

#: a read that finds the database locked (only while a WAL file is recovered) waits this long
READ_BUSY_MS = 5000
_VERSIONS = "SELECT name, version FROM api_versions"
_COLUMNS = "(id, extension_id, type, method, url, status, note, modified, app_id)"
#: a job for the writer's thread: the loop, what to settle when done, the function, its arguments
_Job = tuple[asyncio.AbstractEventLoop, "_Done", Callable[..., None], tuple[Any, ...]]


@lru_cache(maxsize=64)
def _insert(rows: int) -> str:
    """The INSERT of ``rows`` rules in one statement (kept: the group sizes repeat)."""
    return f"INSERT INTO phone_call_events {_COLUMNS} VALUES {bulk.values(rows, 9)}"  # noqa: S608


@lru_cache(maxsize=8192)
def moment(text: str) -> datetime:
    """A timestamp as SQLAlchemy stores it on SQLite (naive UTC text) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _token(row: Any) -> tuple[TokenRecord, Account]:
    return token_of(row, moment)


class _Done(asyncio.Future[None]):
    """The COMMIT's end, awaited by the group's commit: a caller cancelled meanwhile cannot
    cancel it (asyncio then cancels the caller once it is there: the COMMIT may be done, and
    the connection must be the loop's again before anything else)."""

    def cancel(self, msg: object = None) -> bool:
        return False


def _settle(done: _Done, failure: BaseException | None) -> None:
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)


class RuleWriter:
    """The Creates' rules written to the file: BEGIN IMMEDIATE and the INSERT on the event
    loop's thread when the write lock is free at once (no wait: ``busy_timeout=0``), only the
    COMMIT, ``synchronous=FULL`` (the fsync, which releases the GIL), on a thread of its own.
    When another connection holds the lock, the whole transaction goes to the thread, which waits
    for it in short steps (``sqlite_thread.begin``). One connection, used by one thread at a
    time: the loop's until the COMMIT is handed over, the thread's until it is done.

    The thread takes its work from a queue and answers the loop with one ``call_soon_threadsafe``
    (an executor's future, its wrapping and a shield cost the two threads more Python, and the
    GIL more handovers, for each group). ``temp_store=MEMORY``: the statement journal of a
    group's INSERT (a rule's random id lands on its own page of the primary key's index, so a
    large group's journal outgrows SQLite's in-memory threshold) stays in memory instead of a
    temporary file written page by page."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in (
            "journal_mode=WAL",
            "foreign_keys=ON",
            "busy_timeout=0",
            "synchronous=FULL",
            "temp_store=MEMORY",
        ):
            self._conn.execute(f"PRAGMA {pragma}")
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="callhook-uapi", daemon=True)
        self._thread.start()

    async def _run(self, fn: Callable[..., None], *args: Any) -> None:
        """``fn(*args)`` on the thread; a caller cancelled meanwhile still waits for it."""
        loop = asyncio.get_running_loop()
        done = _Done(loop=loop)
        self._jobs.put((loop, done, fn, args))
        await done

    async def write(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            await self._run(self._whole, statements)
            return
        try:
            for sql, values in statements:
                conn.execute(sql, values)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        await self._run(self._commit)

    # --- on the thread -----------------------------------------------------------------------

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, done, fn, args = job
            failure: BaseException | None = None
            try:
                fn(*args)
            except BaseException as exc:  # handed to the loop, which raises it in the caller
                failure = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, done, failure)
            del job, done, failure

    def _commit(self) -> None:
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _whole(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        begin(self._conn)
        try:
            for sql, values in statements:
                self._conn.execute(sql, values)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._commit()

    async def close(self) -> None:
        await self._run(self._conn.close)
        self._jobs.put(None)


class SqliteUapiStore:
    def __init__(self, engine: AsyncEngine, path: str) -> None:
        self.engine = engine
        self.path = path
        self._reader: sqlite3.Connection | None = None
        self.cache = DirectoryCache(limits={"rules": MAX_RULE_LISTS})
        self.cache.set_enabled(True)
        self._data_version: int | None = None
        self._versions: dict[str, int] = {}
        #: the database was looked at in this turn of the event loop
        self._looked = False
        self._writer: RuleWriter | None = None
        self._group: GroupCommit[tuple[Any, ...], None] = GroupCommit(self._commit)

    def _read(self) -> sqlite3.Connection:
        """The reading connection, after dropping what was kept if the directory or the rules
        changed since the last look.

        The look is taken once per turn of the event loop: the lookups of a request never
        wait (they run synchronously), so all of them, and those of the other requests run in
        the same turn (received before it began), see the database as of that turn's look.
        """
        conn = self._reader
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={READ_BUSY_MS}")
            conn.execute("PRAGMA query_only=ON")
            self._reader = conn
        if self._looked:
            return conn
        self._looked = True
        asyncio.get_running_loop().call_soon(self._look_again)
        seen = conn.execute("PRAGMA data_version").fetchone()[0]
        if seen != self._data_version:
            versions = dict(conn.execute(_VERSIONS).fetchall())
            self._data_version = seen
            if versions.get("directory") != self._versions.get("directory"):
                self.cache.flush()
            elif versions.get("rules") != self._versions.get("rules"):
                self.cache.drop("rules")
            self._versions = versions
        return conn

    def _look_again(self) -> None:
        self._looked = False

    def _lookup(
        self,
        kind: str,
        key: Any,
        sql: str,
        params: tuple[Any, ...],
        convert: Callable[[Any], Any],
    ) -> Any | None:
        """The first row of ``sql`` as ``convert`` makes it (None if no row), kept by
        (kind, key) while nothing changes."""
        conn = self._read()
        found = self.cache.get(kind, key)
        if found is None:
            generation = self.cache.generation
            row = conn.execute(sql, params).fetchone()
            if row is None:
                return None
            found = convert(row)
            self.cache.put(kind, key, found, generation)
        return found

    async def find_token(self, token_hash: str) -> tuple[TokenRecord, Account] | None:
        found: tuple[TokenRecord, Account] | None = self._lookup(
            "token", token_hash, FIND_ACCESS, (token_hash,), _token
        )
        return found

    async def get_account(self, account_id: int) -> Account | None:
        found: Account | None = self._lookup(
            "account", account_id, GET_ACCOUNT, (account_id,), account_of
        )
        return found

    async def find_extension(self, org_code: int, number: str) -> Extension | None:
        key = (org_code, number)
        found: Extension | None = self._lookup("extension", key, FIND_EXTENSION, key, extension_of)
        return found

    async def find_extension_in_org(self, org_id: int, number: str) -> Extension | None:
        key = (org_id, number)
        found: Extension | None = self._lookup(
            "org extension", key, FIND_EXTENSION_IN_ORG, key, extension_of
        )
        return found

    async def find_events(
        self, extension_id: int, etype: EventType | None, event_id: str | None
    ) -> list[PhoneCallEvent]:
        conn = self._read()
        key = (extension_id, etype, event_id)
        found: tuple[PhoneCallEvent, ...] | None = self.cache.get("rules", key)
        if found is None:
            generation = self.cache.generation
            sql, params = events_params(extension_id, etype, event_id)
            found = tuple(event_of(row, moment) for row in conn.execute(sql, params))
            if len(found) <= MAX_KEPT_RULES:
                self.cache.put("rules", key, found, generation)
        return list(found)

    async def insert_event(self, event: PhoneCallEvent, app_id: int) -> None:
        row = row_of(event, app_id, bulk.sqlite_datetime(event.modified))
        try:
            await self._group.submit(row)
        except sqlite3.IntegrityError:
            # the only constraint a new rule (with a fresh random id) can break is its
            # extension's foreign key: the extension was deleted since it was resolved
            raise ExtensionGone(event.extension_id) from None

    async def _commit(self, rows: Sequence[tuple[Any, ...]]) -> list[None]:
        if self._writer is None:
            self._writer = RuleWriter(self.path)
        statements: list[tuple[str, Sequence[Any]]] = [
            (_insert(len(chunk)), list(chain.from_iterable(chunk)))
            for chunk in bulk.chunked(rows, 9)
        ]
        async with write_turn(self.engine):
            await self._writer.write(statements)
        return [None] * len(rows)

    def directory_changed(self) -> None:
        """Nothing to do: the change was committed by another connection, which the reading
        connection's ``data_version`` shows."""

    def rules_changed(self, extension_id: int) -> None:
        """As ``directory_changed``."""

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
