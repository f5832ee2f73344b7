"""The UnifiedAPI's hot path on PostgreSQL, straight through asyncpg.

Its statements run on a small asyncpg pool of its own, prepared once per connection (asyncpg's
statement cache): a List is one round trip for the rules, with no pool pre-ping and no row
processing by SQLAlchemy. Creates are group-committed: the rules of the Creates that arrive
while one INSERT commits go in the next, one statement (arrays, ``unnest``) committed
``synchronous_commit=on`` for them all; each Create is answered once its rule is committed.

Tokens (by hash), accounts, extensions and each extension's rules are cached in the process
(``DirectoryCache``). Migration 0005 makes every change to accounts, extensions, apps and to
tokens (other than a new token) send ``NOTIFY callhook_directory``, and every change to a rule
``NOTIFY callhook_rules`` with its extension's id; a connection of this process LISTENs and
flushes the cache (or that extension's rules) on each notice, so a change made by any process
(``callhook admin``, an import, another ``serve``) is seen as soon as its notice arrives. The
cache keeps nothing until LISTEN is in place, and is emptied and off whenever the listening
connection is lost or stops answering the ping sent every ``PING_SECONDS``; it comes back on
once listening again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.domain.accounts import Account, Extension
from callhook.domain.phone_call_events import EventType, PhoneCallEvent
from callhook.store.credentials import TokenRecord
from callhook.store.database import asyncpg_connect, asyncpg_options
from callhook.store.directory_cache import DirectoryCache
from callhook.store.group_commit import GroupCommit
from callhook.store.uapi_store import (
    FIND_ACCESS,
    FIND_EXTENSION,
    FIND_EXTENSION_IN_ORG,
    GET_ACCOUNT,
    INSERT_EVENT,
    MAX_KEPT_RULES,
    ExtensionGone,
    account_of,
    event_of,
    events_params,
    extension_of,
    row_of,
    token_of,
)

log = logging.getLogger(__name__)

CHANNEL = "callhook_directory"
RULES_CHANNEL = "callhook_rules"
PING_SECONDS = 5.0
POOL_SIZE = 10
#: between two tries to listen again
RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
#: several Creates' rules in one INSERT, one array per column (``INSERT_EVENT``'s columns)
INSERT_EVENTS = (
    "INSERT INTO phone_call_events "
    "(id, extension_id, type, method, url, status, note, modified, app_id) "
    "SELECT * FROM unnest($1::varchar[], $2::bigint[], $3::smallint[], $4::smallint[], "
    "$5::text[], $6::smallint[], $7::text[], $8::timestamptz[], $9::bigint[])"
)


@lru_cache(maxsize=64)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (the SQL here has no other ``?``)."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


def moment(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _conn: event.set()


class PostgresUapiStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.options = asyncpg_options(engine)
        self.cache = DirectoryCache()
        self._pool: asyncpg.Pool | None = None
        self._starting = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None
        #: set while LISTEN is in place (for tests and the status)
        self.listening = asyncio.Event()
        #: Creates that arrive while a commit runs are inserted together by the next one
        self._group: GroupCommit[tuple[Any, ...], None] = GroupCommit(self._commit)

    async def _ready(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._starting:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    **self.options, min_size=1, max_size=POOL_SIZE
                )
                self._listener = asyncio.create_task(self._listen(), name="callhook-uapi-listen")
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        pool = await self._ready()
        async with pool.acquire() as conn:
            rows: list[Any] = await conn.fetch(numbered(sql), *args)
        return rows

    async def _cached(self, kind: Any, key: Any, load: Callable[[], Any]) -> Any:
        found = self.cache.get(kind, key)
        if found is not None:
            return found
        generation = self.cache.generation
        value = await load()
        self.cache.put(kind, key, value, generation)
        return value

    async def find_token(self, token_hash: str) -> tuple[TokenRecord, Account] | None:
        async def load() -> tuple[TokenRecord, Account] | None:
            rows = await self._fetch(FIND_ACCESS, token_hash)
            return token_of(rows[0], moment) if rows else None

        found: tuple[TokenRecord, Account] | None = await self._cached("token", token_hash, load)
        return found

    async def get_account(self, account_id: int) -> Account | None:
        async def load() -> Account | None:
            rows = await self._fetch(GET_ACCOUNT, account_id)
            return account_of(rows[0]) if rows else None

        found: Account | None = await self._cached("account", account_id, load)
        return found

    async def find_extension(self, org_code: int, number: str) -> Extension | None:
        async def load() -> Extension | None:
            rows = await self._fetch(FIND_EXTENSION, org_code, number)
            return extension_of(rows[0]) if rows else None

        found: Extension | None = await self._cached("extension", (org_code, number), load)
        return found

    async def find_extension_in_org(self, org_id: int, number: str) -> Extension | None:
        async def load() -> Extension | None:
            rows = await self._fetch(FIND_EXTENSION_IN_ORG, org_id, number)
            return extension_of(rows[0]) if rows else None

        found: Extension | None = await self._cached("org extension", (org_id, number), load)
        return found

    async def find_events(
        self, extension_id: int, etype: EventType | None, event_id: str | None
    ) -> list[PhoneCallEvent]:
        kind, key = ("rules", extension_id), (etype, event_id)
        found: tuple[PhoneCallEvent, ...] | None = self.cache.get(kind, key)
        if found is None:
            generation = self.cache.generation
            sql, params = events_params(extension_id, etype, event_id)
            found = tuple(event_of(row, moment) for row in await self._fetch(sql, *params))
            if len(found) <= MAX_KEPT_RULES:
                self.cache.put(kind, key, found, generation)
        return list(found)

    async def insert_event(self, event: PhoneCallEvent, app_id: int) -> None:
        row = row_of(event, app_id, event.modified)
        try:
            await self._group.submit(row)
        except asyncpg.ForeignKeyViolationError:
            raise ExtensionGone(event.extension_id) from None
        # the 201 that follows must be seen by this process's next List, notice or not
        self.rules_changed(event.extension_id)

    async def _commit(self, rows: Sequence[tuple[Any, ...]]) -> list[None]:
        """The rules of the Creates waiting, in one statement and one commit (a group that
        fails is retried rule by rule by ``GroupCommit``, so one rule whose extension is gone
        fails only its own Create)."""
        pool = await self._ready()
        async with pool.acquire() as conn:
            if len(rows) == 1:
                await conn.execute(numbered(INSERT_EVENT), *rows[0])
            else:
                columns = [list(column) for column in zip(*rows, strict=True)]
                await conn.execute(INSERT_EVENTS, *columns)
        return [None] * len(rows)

    def rules_changed(self, extension_id: int) -> None:
        self.cache.drop(("rules", extension_id))

    def fresh_cache(self) -> DirectoryCache | None:
        """The cache while notices of changes can arrive (``put`` keeps nothing otherwise)."""
        return self.cache if self.cache.enabled else None

    def directory_changed(self) -> None:
        self.cache.flush()

    # --- the listening connection -------------------------------------------------------

    def _notified(self, *_args: Any) -> None:
        self.cache.flush()

    def _rules_notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.isdigit():
            self.cache.drop(("rules", int(payload)))
        else:  # TRUNCATE
            self.cache.flush()

    async def _listen(self) -> None:
        failures = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg_connect(self.options)
                lost = asyncio.Event()
                conn.add_termination_listener(_setter(lost))
                # through a lambda: the method is looked up on each notice (tests replace it)
                await conn.add_listener(CHANNEL, lambda *a: self._notified(*a))
                await conn.add_listener(RULES_CHANNEL, lambda *a: self._rules_notified(*a))
                # whatever was read before LISTEN was in place may be stale already
                self.cache.set_enabled(True)
                self.listening.set()
                failures = 0
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), PING_SECONDS)
                        break
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), PING_SECONDS)
                log.warning("directory cache off: the listening connection was lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: the cache goes off until listening again
                log.warning("directory cache off: %s", type(exc).__name__)
            finally:
                self.listening.clear()
                self.cache.set_enabled(False)
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
            failures += 1

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
