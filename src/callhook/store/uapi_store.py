"""What the UnifiedAPI's hot path reads and writes: the token, the extension, the rules.

Every List and Create of PhoneCallEvents authenticates a bearer token, resolves an extension
(and, with a numeric userId, an account) and reads or inserts rules. Through SQLAlchemy each
of those was a round trip of its own, with its statement compiled and its rows processed in
Python: ~4 ms a request. The stores here do the same lookups at the driver level:

- ``uapi_sqlite.SqliteUapiStore`` (a SQLite file): reads on a sqlite3 connection of their own,
  synchronously (each is an indexed lookup of a few µs; nothing is cached, so a change made by
  any process is seen by the next request); Creates group-committed on a thread of their own.
- ``uapi_postgres.PostgresUapiStore``: statements prepared once on asyncpg connections of their
  own; tokens, accounts and extensions cached in the process and flushed on NOTIFY.
- ``EngineUapiStore``: through the engine (an in-memory SQLite database, which no other
  connection can see).

``for_engine`` picks one. Every store answers with the same domain objects, so the service's
decisions (and the UAPI's error codes) do not depend on the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callhook.domain.accounts import Account, AccountKind, Extension, ExtensionType
from callhook.domain.phone_call_events import TYPES_BY_NUMBER, EventType, PhoneCallEvent
from callhook.store import credentials, directory, events
from callhook.store.credentials import TokenRecord
from callhook.store.directory_cache import DirectoryCache


class ExtensionGone(Exception):
    """A rule's extension was deleted between its lookup and the rule's insert."""


class Lookup(Protocol):
    """Accounts and extensions by what a UAPI path names."""

    async def get_account(self, account_id: int) -> Account | None: ...

    async def find_extension(self, org_code: int, number: str) -> Extension | None: ...

    async def find_extension_in_org(self, org_id: int, number: str) -> Extension | None: ...


class UapiStore(Lookup, Protocol):
    async def find_token(self, token_hash: str) -> tuple[TokenRecord, Account] | None:
        """An access token (by its hash) and the account it acts as."""
        ...

    async def find_events(
        self, extension_id: int, etype: EventType | None, event_id: str | None
    ) -> list[PhoneCallEvent]:
        """The extension's rules (of a type, or one by id), ordered by url, then id."""
        ...

    async def insert_event(self, event: PhoneCallEvent, app_id: int) -> None:
        """Insert a rule, committed (durably) before it returns; ``ExtensionGone`` if its
        extension was deleted meanwhile."""
        ...

    def directory_changed(self) -> None:
        """This process changed tokens, accounts, extensions or apps through the engine."""
        ...

    def fresh_cache(self) -> DirectoryCache | None:
        """The store's cache as its lookups would find it now (made fresh first where that is
        a look at the database), for values derived from the directory that its flushes must
        drop too; None if the store keeps nothing."""
        ...

    def rules_changed(self, extension_id: int) -> None:
        """This process changed the extension's rules (through the engine): a List that comes
        next must see it, even before any notice of it arrives."""
        ...

    async def close(self) -> None: ...


class ConnLookup:
    """``Lookup`` on an open SQLAlchemy connection (inside a transaction that writes)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get_account(self, account_id: int) -> Account | None:
        return await directory.get_account(self.conn, account_id)

    async def find_extension(self, org_code: int, number: str) -> Extension | None:
        return await directory.find_extension(self.conn, org_code, number)

    async def find_extension_in_org(self, org_id: int, number: str) -> Extension | None:
        return await directory.find_extension_in_org(self.conn, org_id, number)


class EngineUapiStore:
    """Every lookup on a connection of the engine's pool."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def find_token(self, token_hash: str) -> tuple[TokenRecord, Account] | None:
        async with self.engine.connect() as conn:
            return await credentials.find_token(conn, token_hash)

    async def get_account(self, account_id: int) -> Account | None:
        async with self.engine.connect() as conn:
            return await directory.get_account(conn, account_id)

    async def find_extension(self, org_code: int, number: str) -> Extension | None:
        async with self.engine.connect() as conn:
            return await directory.find_extension(conn, org_code, number)

    async def find_extension_in_org(self, org_id: int, number: str) -> Extension | None:
        async with self.engine.connect() as conn:
            return await directory.find_extension_in_org(conn, org_id, number)

    async def find_events(
        self, extension_id: int, etype: EventType | None, event_id: str | None
    ) -> list[PhoneCallEvent]:
        async with self.engine.connect() as conn:
            return await events.find_events(conn, extension_id, etype, event_id)

    async def insert_event(self, event: PhoneCallEvent, app_id: int) -> None:
        try:
            async with self.engine.begin() as conn:
                await events.insert_event(conn, event, app_id=app_id)
        except IntegrityError:
            raise ExtensionGone(event.extension_id) from None

    def directory_changed(self) -> None:
        return None

    def fresh_cache(self) -> DirectoryCache | None:
        return None

    def rules_changed(self, extension_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


def for_engine(engine: AsyncEngine) -> UapiStore:
    """The store for ``engine``'s database (see the module's docstring)."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        from callhook.store.uapi_sqlite import SqliteUapiStore

        return SqliteUapiStore(engine, database)
    if engine.dialect.name == "postgresql":
        from callhook.store.uapi_postgres import PostgresUapiStore

        return PostgresUapiStore(engine)
    return EngineUapiStore(engine)


# --- the statements, at the driver level (``?`` placeholders; PostgreSQL numbers them) -----

ACCOUNT_COLUMNS = "id, kind, name, parent_id, path, org_code"
FIND_ACCESS = (
    "SELECT t.app_id, t.scope, t.expires_at, t.revoked, "
    "a.id, a.kind, a.name, a.parent_id, a.path, a.org_code "
    "FROM tokens t JOIN accounts a ON a.id = t.account_id "
    "WHERE t.token_hash = ? AND t.kind = 'access'"
)
GET_ACCOUNT = f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?"  # noqa: S608
_EXTENSION = (
    "SELECT e.id, e.number, e.type, e.name, "
    "a.id, a.kind, a.name, a.parent_id, a.path, o.org_code "
    "FROM extensions e JOIN accounts a ON a.id = e.owner_id JOIN accounts o ON o.id = e.org_id "
)
FIND_EXTENSION = _EXTENSION + "WHERE o.org_code = ? AND e.number = ?"
FIND_EXTENSION_IN_ORG = _EXTENSION + "WHERE e.org_id = ? AND e.number = ?"
_EVENTS = (
    "SELECT id, extension_id, type, method, url, status, note, modified "
    "FROM phone_call_events WHERE extension_id = ?"
)
#: by (type given, id given)
FIND_EVENTS = {
    (t, i): _EVENTS
    + (" AND type = ?" if t else "")
    + (" AND id = ?" if i else "")
    + " ORDER BY url, id"
    for t in (False, True)
    for i in (False, True)
}
INSERT_EVENT = (
    "INSERT INTO phone_call_events "
    "(id, extension_id, type, method, url, status, note, modified, app_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


#: a List's rules are kept only when an extension has this many at most (more are read each
#: time: the memory they would take is not worth it)
MAX_KEPT_RULES = 100
#: rules lists kept at most (SQLite: one per extension, type and id asked for)
MAX_RULE_LISTS = 2_000


def events_params(
    extension_id: int, etype: EventType | None, event_id: str | None
) -> tuple[str, tuple[object, ...]]:
    """The statement and its values for ``find_events``."""
    params: tuple[object, ...] = (extension_id,)
    if etype is not None:
        params += (int(etype),)
    if event_id is not None:
        params += (event_id,)
    return FIND_EVENTS[etype is not None, event_id is not None], params


def account_of(row: Sequence[Any], at: int = 0) -> Account:
    """An Account from the six columns of ``ACCOUNT_COLUMNS`` starting at ``row[at]``."""
    return Account(
        id=row[at],
        kind=AccountKind(row[at + 1]),
        name=row[at + 2],
        parent_id=row[at + 3],
        path=row[at + 4],
        org_code=row[at + 5],
    )


def token_of(row: Sequence[Any], moment: Callable[[Any], datetime]) -> tuple[TokenRecord, Account]:
    account = account_of(row, 4)
    record = TokenRecord(row[0], account.id, row[1], moment(row[2]), bool(row[3]))
    return record, account


def extension_of(row: Sequence[Any]) -> Extension:
    owner = Account(id=row[4], kind=AccountKind(row[5]), name=row[6], parent_id=row[7], path=row[8])
    return Extension(
        id=row[0],
        number=row[1],
        type=ExtensionType(row[2]),
        name=row[3],
        owner=owner,
        org_code=row[9],
    )


def event_of(row: Sequence[Any], moment: Callable[[Any], datetime]) -> PhoneCallEvent:
    return PhoneCallEvent(
        id=row[0],
        extension_id=row[1],
        type=TYPES_BY_NUMBER[row[2]],
        method=row[3],
        url=row[4],
        status=row[5],
        note=row[6],
        modified=moment(row[7]),
    )


def row_of(event: PhoneCallEvent, app_id: int, modified: Any) -> tuple[Any, ...]:
    """A new rule's row in the order of the stores' INSERT (``modified`` as the engine keeps
    times); ``event_of`` reads it back."""
    return (
        event.id,
        event.extension_id,
        int(event.type),
        event.method,
        event.url,
        event.status,
        event.note,
        modified,
        app_id,
    )
