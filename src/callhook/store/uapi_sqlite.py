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

Creates are group-committed on a thread of their own (``group_commit.ThreadGroupCommit``,
``RuleWriter``): the rules of the Creates that arrive while a commit runs are inserted together
by the next one, which the thread starts as soon as the last is done, with
``synchronous=FULL``: one fsync for them all, and a 201 still means the rule is on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
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
from callhook.store.directory_cache import DirectoryCache
from callhook.store.group_commit import ThreadGroupCommit
from callhook.store.sqlite_thread import begin, waiting
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


class RuleWriter:
    """The Creates' rules written to the file from the group commit's thread
    (``ThreadGroupCommit``), on a connection of its own.

    A group that fits one statement is one INSERT in autocommit: the statement is its own
    transaction, committed with ``synchronous=FULL`` (the fsync) before it returns, so the
    thread gives up the GIL once for the whole write and takes it back once (BEGIN, INSERT and
    COMMIT as three statements take it back three times, each a wait for the busy event loop).
    A larger group is one BEGIN IMMEDIATE ... COMMIT. Another connection holding the write
    lock is waited for in short steps (``sqlite_thread.waiting``): the rule writer does not
    take turns with the process's other writers (``database.write_turn`` is the event loop's),
    it waits for the file's lock as another process's writer would.

    ``temp_store=MEMORY``: the statement journal of a large group's INSERT (rules spread over
    many index pages: the random ids made before decision 0015, or many extensions) stays in
    memory instead of a temporary file written page by page."""

    PRAGMAS = (
        "journal_mode=WAL",
        "foreign_keys=ON",
        "busy_timeout=0",
        "synchronous=FULL",
        "temp_store=MEMORY",
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        """The writer's connection (made on first use, on the thread that uses it)."""
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in self.PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
            self._conn = conn
        return self._conn

    def write(self, rows: Sequence[tuple[Any, ...]]) -> list[None]:
        """Insert ``rows`` (rules in the table's column order) in one transaction."""
        conn = self.connection()
        chunks = list(bulk.chunked(rows, 9))
        if len(chunks) == 1:
            waiting(conn, _insert(len(rows)), list(chain.from_iterable(rows)))
            return [None] * len(rows)
        begin(conn)
        try:
            for chunk in chunks:
                conn.execute(_insert(len(chunk)), list(chain.from_iterable(chunk)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return [None] * len(rows)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


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
        self._writer = RuleWriter(path)
        self._group: ThreadGroupCommit[tuple[Any, ...], None] = ThreadGroupCommit(
            self._writer.write, name="callhook-uapi", close=self._writer.close
        )

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

    def fresh_cache(self) -> DirectoryCache:
        self._read()
        return self.cache

    def directory_changed(self) -> None:
        """Nothing to do: the change was committed by another connection, which the reading
        connection's ``data_version`` shows."""

    def rules_changed(self, extension_id: int) -> None:
        """As ``directory_changed``."""

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        await self._group.stop()
