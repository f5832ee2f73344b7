"""Ingest: call events in, deliveries committed, with group commit on the write path.

``accept`` answers only after the call events and every delivery they cause are committed.
Requests that arrive while a commit is running wait and are committed together in the next
transaction (one fsync for many requests; store/group_commit.py).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callhook import crypto
from callhook.domain.accounts import parse_extension
from callhook.domain.calls import CallEvent, CallState, Fired, Trigger, apply
from callhook.domain.payloads import encode_params
from callhook.domain.retry import RetryPolicy, lifetime
from callhook.errors import SourceUnauthenticated
from callhook.store import ingest_postgres, ingest_sqlite, outbox, sources
from callhook.store.database import write_turn, writing
from callhook.store.group_commit import GroupCommit
from callhook.store.pg_connection import OwnConnection
from callhook.store.sources import Source
from callhook.store.sqlite_thread import SqliteThread

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "callhook_deliveries"
_ALPHABET = string.ascii_letters + string.digits


def new_webhook_id() -> str:
    """``msg_`` and 27 letters or digits: 160 random bits from one read of the system's
    random source (``secrets.choice`` per character would read it 27 times)."""
    number = int.from_bytes(secrets.token_bytes(20))
    chars = []
    for _ in range(27):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "msg_" + "".join(chars)


@lru_cache(maxsize=4096)
def receiver_key(url: str) -> str:
    """host:port, the unit of isolation: the concurrency cap and the breaker are per receiver
    (kept for the URLs seen lately: a rule's URL makes many deliveries)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    return f"{parts.hostname or ''}:{port}"[:255]


@dataclass(slots=True)
class Result:
    accepted: int = 0
    duplicates: int = 0
    deliveries: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "deliveries": self.deliveries,
        }


#: a commit group's calls by (source, call id)
_Calls = dict[tuple[int, str], outbox.CallRow]
#: per source of a group: its calls and its known event ids as read (ingest_sqlite)
_Read = tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class _Pending:
    source: Source
    events: Sequence[CallEvent]


@dataclass(slots=True)
class _Plan:
    """What a commit group writes."""

    results: list[Result] = field(default_factory=list)
    events: list[outbox.NewEvent] = field(default_factory=list)
    deliveries: list[outbox.NewDelivery] = field(default_factory=list)


@dataclass(slots=True)
class _Applied:
    """One accepted event of a commit group and the triggers it fired."""

    call: outbox.CallRow
    call_id: str
    fired: list[Fired]
    result: Result
    note: str | None


class Ingest:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        policy: RetryPolicy,
        clock: Callable[[], datetime],
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock
        self.wake = wake
        self._group: GroupCommit[_Pending, Result] = GroupCommit(self._commit)
        #: transactions committed so far (one per commit group; benchmarks read it)
        self.commits = 0
        #: on a SQLite file, the write transaction goes straight through sqlite3, committed
        #: FULL like the engine's (ingest_sqlite)
        self._direct: SqliteThread | None = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            self._direct = SqliteThread(database, synchronous="FULL", name="callhook-ingest")
        #: on PostgreSQL, the transaction goes straight through asyncpg (ingest_postgres)
        self._postgres: OwnConnection | None = None
        if engine.dialect.name == "postgresql":
            self._postgres = ingest_postgres.connection(engine)

    async def close(self) -> None:
        """Close the connection of the write transactions (SQLite file, PostgreSQL), if any."""
        if self._direct is not None:
            await self._direct.close()
        if self._postgres is not None:
            await self._postgres.close()

    async def authenticate(self, token: str | None) -> Source:
        if not token:
            raise SourceUnauthenticated(
                "A source token is required: send 'Authorization: Bearer TOKEN' "
                "(create one with `callhook admin source create NAME`)."
            )
        async with self.engine.connect() as conn:
            found = await sources.find_by_token(conn, crypto.hash_token(token))
        if found is None:
            raise SourceUnauthenticated("The source token is unknown.")
        return found

    async def accept(self, source: Source, events: Sequence[CallEvent]) -> Result:
        return await self._group.submit(_Pending(source, events))

    async def _commit(self, group: Sequence[_Pending]) -> list[Result]:
        """One transaction for a whole group of requests, in a fixed number of statements:
        the calls, the known event ids, every rule the group needs (one query each); the events
        applied in memory; then the events, deliveries and calls written.

        PostgreSQL: all in one transaction straight through asyncpg (``ingest_postgres``), the
        calls locked first (FOR UPDATE, in one order, so two processes committing the same
        calls cannot deadlock). A SQLite file: reads,
        work in memory and writes in one hop to ingest's thread, what was read checked again
        under the write lock (``_commit_direct``). In-memory SQLite (tests): this committer is
        the only writer of calls and events, so the reading happens before the write
        transaction.
        """
        now = self.clock()
        if self._direct is not None:
            plan = await self._commit_direct(self._direct, group, now)
        elif self._postgres is not None:
            plan = await self._postgres.transaction(
                lambda conn: self._commit_postgres(conn, group, now), again_if_lost=True
            )
        else:
            plan = await self._commit_engine_sqlite(group, now)
        self.commits += 1
        if plan.deliveries:
            self.wake()
        return plan.results

    async def _commit_postgres(
        self, conn: asyncpg.Connection, group: Sequence[_Pending], now: datetime
    ) -> _Plan:
        calls: _Calls = {}
        seen: set[tuple[int, str]] = set()
        for source_id, call_ids in sorted(_calls_by_source(group).items()):
            locked = await ingest_postgres.lock_calls(conn, source_id, call_ids, now)
            calls.update(((source_id, cid), row) for cid, row in locked.items())
            event_ids = [e.event_id for p in group if p.source.id == source_id for e in p.events]
            known = await ingest_postgres.known_events(conn, source_id, event_ids)
            seen.update((source_id, event_id) for event_id in known)
        plan, applied = _apply(group, calls, seen)
        rules = await ingest_postgres.rules_for_many(conn, set(_wanted(applied).values()))
        plan.deliveries = self._deliveries(applied, rules, now)
        changed = list(calls.values())
        await ingest_postgres.write(
            conn, plan.events, plan.deliveries, changed, now, channel=NOTIFY_CHANNEL
        )
        return plan

    async def _commit_engine_sqlite(self, group: Sequence[_Pending], now: datetime) -> _Plan:
        by_source = _calls_by_source(group)
        calls: dict[tuple[int, str], outbox.CallRow] = {}
        async with self.engine.connect() as conn:
            for source_id, call_ids in sorted(by_source.items()):
                found = await outbox.find_calls(conn, source_id, list(call_ids))
                calls.update(((source_id, cid), row) for cid, row in found.items())
            seen = await _known(conn, group)
            plan, applied = _apply(group, calls, seen)
            wanted = _wanted(applied)
            rules = await outbox.rules_for_many(conn, set(wanted.values())) if wanted else {}
            plan.deliveries = self._deliveries(applied, rules, now)
        changed, new_calls = _split_calls(calls, by_source)
        async with writing(self.engine) as conn:
            for source_id, new in new_calls:
                await outbox.insert_calls(conn, source_id, new, now)
            await self._write(conn, plan, changed, now)
        return plan

    async def _commit_direct(
        self, direct: SqliteThread, group: Sequence[_Pending], now: datetime
    ) -> _Plan:
        """A SQLite file, in one hop to ingest's thread: the group's calls and known event ids
        read, the events applied and the deliveries made (with the rules they need) before the
        write lock is taken; then, in the write transaction (begun IMMEDIATE), the calls and
        known ids read again and, if another writer of the file (another serve) changed them
        meanwhile, the plan made again from what is now stored, before it is written. The
        worker writes only deliveries and attempts. Cancelled meanwhile, it still waits for
        the outcome: a group that committed is answered (its callers' events must not be
        written again as new)."""
        sources = sorted(_calls_by_source(group).items())
        event_ids = {
            source_id: [e.event_id for p in group if p.source.id == source_id for e in p.events]
            for source_id, _ in sources
        }
        rules: dict[outbox.RuleKey, list[outbox.Rule]] = {}

        def read(conn: sqlite3.Connection) -> _Read:
            return tuple(
                (
                    ingest_sqlite.calls_text(conn, source_id, call_ids),
                    ingest_sqlite.known_text(conn, source_id, event_ids[source_id]),
                )
                for source_id, call_ids in sources
            )

        def plan(conn: sqlite3.Connection, texts: _Read) -> tuple[_Plan, _Calls]:
            calls: _Calls = {}
            seen: set[tuple[int, str]] = set()
            for (source_id, _), (calls_text, known_text) in zip(sources, texts, strict=True):
                found = ingest_sqlite.parse_calls(calls_text)
                calls.update(((source_id, cid), row) for cid, row in found.items())
                seen.update((source_id, e) for e in ingest_sqlite.parse_known(known_text))
            made, applied = _apply(group, calls, seen)
            missing = set(_wanted(applied).values()) - rules.keys()
            if missing:
                rules.update(ingest_sqlite.rules_for_many(conn, missing))
            made.deliveries = self._deliveries(applied, rules, now)
            return made, calls

        def prepare(conn: sqlite3.Connection) -> tuple[_Read, _Plan, _Calls]:
            texts = read(conn)
            return (texts, *plan(conn, texts))

        def work(conn: sqlite3.Connection, prepared: tuple[_Read, _Plan, _Calls]) -> _Plan:
            texts, made, calls = prepared
            stored = read(conn)
            if stored != texts:
                made, calls = plan(conn, stored)
            changed, new_calls = _split_calls(calls, dict(sources))
            ingest_sqlite.write(conn, new_calls, made.events, made.deliveries, changed, now)
            return made

        async with write_turn(self.engine):
            return await direct.prepared_transaction(prepare, work)

    async def _write(
        self,
        conn: AsyncConnection,
        plan: _Plan,
        changed: list[outbox.CallRow],
        now: datetime,
    ) -> None:
        await outbox.insert_events(conn, plan.events, now)
        await outbox.insert_deliveries(conn, plan.deliveries, now)
        await outbox.save_calls(conn, changed, now)

    def _deliveries(
        self,
        applied: Sequence[_Applied],
        rules: dict[outbox.RuleKey, list[outbox.Rule]],
        now: datetime,
    ) -> list[outbox.NewDelivery]:
        """The deliveries the fired triggers cause, in the order they fired."""
        made: list[outbox.NewDelivery] = []
        for item in applied:
            for fired in item.fired:
                for rule in rules[_rule_key(fired)]:
                    item.call.seq += 1
                    made.append(self._delivery(item, fired, rule, now))
                    item.result.deliveries += 1
        return made

    def _delivery(
        self, item: _Applied, fired: Fired, rule: outbox.Rule, now: datetime
    ) -> outbox.NewDelivery:
        event_type = int(fired.trigger)
        return outbox.NewDelivery(
            webhook_id=new_webhook_id(),
            call=item.call,
            call_id=item.call_id,
            seq=item.call.seq,
            event_type=event_type,
            extension=fired.extension,
            owner_path=rule.owner_path,
            rule_id=rule.id,
            app_id=rule.app_id,
            method=rule.method,
            url=rule.url,
            host=receiver_key(rule.url),
            payload=encode_params(fired.params),
            expires_at=now + timedelta(seconds=lifetime(self.policy, event_type)),
            note=item.note,
        )


def _calls_by_source(group: Sequence[_Pending]) -> dict[int, set[str]]:
    by_source: dict[int, set[str]] = {}
    for pending in group:
        by_source.setdefault(pending.source.id, set()).update(e.call_id for e in pending.events)
    return by_source


async def _known(conn: AsyncConnection, group: Sequence[_Pending]) -> set[tuple[int, str]]:
    """(source, event id) of the group's events already stored."""
    seen: set[tuple[int, str]] = set()
    for source_id in sorted({p.source.id for p in group}):
        ids = [e.event_id for p in group if p.source.id == source_id for e in p.events]
        known = await outbox.known_events(conn, source_id, ids)
        seen.update((source_id, event_id) for event_id in known)
    return seen


def _apply(
    group: Sequence[_Pending],
    calls: dict[tuple[int, str], outbox.CallRow],
    seen: set[tuple[int, str]],
) -> tuple[_Plan, list[_Applied]]:
    """Apply the group's events to their calls (new calls are made here, id 0); ``seen``, the
    known (source, event id), gets the group's accepted ones."""
    plan = _Plan()
    applied = []
    for pending in group:
        result = Result()
        plan.results.append(result)
        source_id = pending.source.id
        for event in pending.events:
            key = (source_id, event.event_id)
            if key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
            result.accepted += 1
            call = calls.get((source_id, event.call_id))
            if call is None:
                call = calls[(source_id, event.call_id)] = outbox.CallRow(0, CallState(), 0)
            step = apply(call.state, event)
            call.state = step.state
            plan.events.append(outbox.NewEvent(source_id, call, event, step.ignored))
            if step.fired:
                note = event.reconstructed and f"reconstructed: {event.reconstructed}"
                applied.append(_Applied(call, event.call_id, step.fired, result, note))
    return plan, applied


@lru_cache(maxsize=4096)
def _extension_key(extension: str) -> tuple[int, str]:
    ref = parse_extension(extension)
    assert ref.org_code is not None
    return ref.org_code, ref.short


def _rule_key(fired: Fired) -> outbox.RuleKey:
    org, short = _extension_key(fired.extension)
    return org, short, int(fired.trigger)


def _wanted(applied: Sequence[_Applied]) -> dict[tuple[str, Trigger], outbox.RuleKey]:
    """The rules the fired triggers need: (organization, extension, type) of each."""
    wanted: dict[tuple[str, Trigger], outbox.RuleKey] = {}
    for item in applied:
        for fired in item.fired:
            if (fired.extension, fired.trigger) not in wanted:
                wanted[(fired.extension, fired.trigger)] = _rule_key(fired)
    return wanted


def _split_calls(
    calls: dict[tuple[int, str], outbox.CallRow], by_source: dict[int, set[str]]
) -> tuple[list[outbox.CallRow], list[tuple[int, dict[str, outbox.CallRow]]]]:
    """The calls changed (stored before) and the new ones per source (id 0, to insert)."""
    changed = [row for row in calls.values() if row.id]
    new_calls = [
        (source_id, {c: r for (s, c), r in calls.items() if s == source_id and not r.id})
        for source_id in sorted(by_source)
    ]
    return changed, new_calls
