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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callhook import crypto
from callhook.domain.accounts import parse_extension
from callhook.domain.calls import CallEvent, CallState, Fired, Trigger, apply
from callhook.domain.payloads import encode_params
from callhook.domain.retry import RetryPolicy, lifetime
from callhook.errors import SourceUnauthenticated
from callhook.store import ingest_sqlite, outbox, sources
from callhook.store.database import write_turn, writing
from callhook.store.group_commit import GroupCommit
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
        #: on a SQLite file, the write transaction goes straight through sqlite3, committed
        #: FULL like the engine's (ingest_sqlite)
        self._direct: SqliteThread | None = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            self._direct = SqliteThread(database, synchronous="FULL", name="callhook-ingest")

    async def close(self) -> None:
        """Close the SQLite connection of the write transactions, if any."""
        if self._direct is not None:
            await self._direct.close()

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

        PostgreSQL: all in one transaction, the calls locked first (FOR UPDATE, in one order,
        so two processes committing the same calls cannot deadlock). SQLite: this committer is
        the only writer of calls and events, so the reading and the work in memory happen
        before the write transaction, which is short: the worker's claims and records (SQLite
        has one writer at a time) wait only for the writing itself.
        """
        now = self.clock()
        by_source: dict[int, set[str]] = {}
        for pending in group:
            by_source.setdefault(pending.source.id, set()).update(e.call_id for e in pending.events)
        calls: dict[tuple[int, str], outbox.CallRow] = {}
        if self.engine.dialect.name == "sqlite":
            async with self.engine.connect() as conn:
                for source_id, call_ids in sorted(by_source.items()):
                    found = await outbox.find_calls(conn, source_id, list(call_ids))
                    calls.update(((source_id, cid), row) for cid, row in found.items())
                plan = await self._plan(conn, group, calls, now)
            changed = [row for row in calls.values() if row.id]  # the new ones are inserted
            new_calls = [
                (source_id, {c: r for (s, c), r in calls.items() if s == source_id and not r.id})
                for source_id in sorted(by_source)
            ]
            if self._direct is not None:
                await self._write_direct(self._direct, new_calls, plan, changed, now)
            else:
                async with writing(self.engine) as conn:
                    for source_id, new in new_calls:
                        await outbox.insert_calls(conn, source_id, new, now)
                    await self._write(conn, plan, changed, now)
        else:
            async with writing(self.engine) as conn:
                for source_id, call_ids in sorted(by_source.items()):
                    locked = await outbox.lock_calls(conn, source_id, list(call_ids), now)
                    calls.update(((source_id, cid), row) for cid, row in locked.items())
                plan = await self._plan(conn, group, calls, now)
                await self._write(conn, plan, list(calls.values()), now)
        if plan.deliveries:
            self.wake()
        return plan.results

    async def _write_direct(
        self,
        direct: SqliteThread,
        new_calls: list[tuple[int, dict[str, outbox.CallRow]]],
        plan: _Plan,
        changed: list[outbox.CallRow],
        now: datetime,
    ) -> None:
        """The write transaction in one hop to its thread (SQLite file). Cancelled meanwhile,
        it still waits for the outcome: a group that committed is answered (its callers'
        events must not be written again as new)."""

        def work(conn: sqlite3.Connection) -> None:
            ingest_sqlite.write(conn, new_calls, plan.events, plan.deliveries, changed, now)

        async with write_turn(self.engine):
            await direct.transaction(work)

    async def _plan(
        self,
        conn: AsyncConnection,
        group: Sequence[_Pending],
        calls: dict[tuple[int, str], outbox.CallRow],
        now: datetime,
    ) -> _Plan:
        """Apply the group's events to their calls (new calls are made here, id 0)."""
        seen: set[tuple[int, str]] = set()
        for source_id in sorted({p.source.id for p in group}):
            ids = [e.event_id for p in group if p.source.id == source_id for e in p.events]
            known = await outbox.known_events(conn, source_id, ids)
            seen.update((source_id, event_id) for event_id in known)
        plan = _Plan()
        applied = []
        for pending in group:
            result = Result()
            plan.results.append(result)
            for event in pending.events:
                key = (pending.source.id, event.event_id)
                if key in seen:
                    result.duplicates += 1
                    continue
                seen.add(key)
                result.accepted += 1
                call = calls.get((pending.source.id, event.call_id))
                if call is None:
                    call = calls[(pending.source.id, event.call_id)] = outbox.CallRow(
                        0, CallState(), 0
                    )
                step = apply(call.state, event)
                call.state = step.state
                plan.events.append(outbox.NewEvent(pending.source.id, call, event, step.ignored))
                if step.fired:
                    note = event.reconstructed and f"reconstructed: {event.reconstructed}"
                    applied.append(_Applied(call, event.call_id, step.fired, result, note))
        plan.deliveries = await self._deliveries(conn, applied, now)
        return plan

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
        if plan.deliveries and conn.dialect.name == "postgresql":
            await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))

    async def _deliveries(
        self, conn: AsyncConnection, applied: Sequence[_Applied], now: datetime
    ) -> list[outbox.NewDelivery]:
        """The deliveries the fired triggers cause, in the order they fired."""
        wanted: dict[tuple[str, Trigger], outbox.RuleKey] = {}
        for item in applied:
            for fired in item.fired:
                if (fired.extension, fired.trigger) not in wanted:
                    ref = parse_extension(fired.extension)
                    assert ref.org_code is not None
                    key = (ref.org_code, ref.short, int(fired.trigger))
                    wanted[(fired.extension, fired.trigger)] = key
        rules = await outbox.rules_for_many(conn, set(wanted.values())) if wanted else {}
        made: list[outbox.NewDelivery] = []
        for item in applied:
            for fired in item.fired:
                for rule in rules[wanted[(fired.extension, fired.trigger)]]:
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
