"""Ingest: call events in, deliveries committed, with group commit on the write path.

``accept`` answers only after the call events and every delivery they cause are committed.
Requests that arrive while a commit is running wait and are committed together in the next
transaction (one fsync for many requests; store/group_commit.py).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callhook import crypto
from callhook.domain.accounts import parse_extension
from callhook.domain.calls import CallEvent, Fired, apply
from callhook.domain.payloads import encode_params
from callhook.domain.retry import RetryPolicy, lifetime
from callhook.errors import SourceUnauthenticated
from callhook.store import outbox, sources
from callhook.store.group_commit import GroupCommit
from callhook.store.sources import Source

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "callhook_deliveries"
_ALPHABET = string.ascii_letters + string.digits


def new_webhook_id() -> str:
    return "msg_" + "".join(secrets.choice(_ALPHABET) for _ in range(27))


def order_key(url: str, call_ref: int) -> str:
    return hashlib.sha256(f"{call_ref}\n{url}".encode()).hexdigest()


def receiver_key(url: str) -> str:
    """host:port, the unit of isolation: the concurrency cap and the breaker are per receiver."""
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
class _Transaction:
    """What one commit group has looked up so far."""

    calls: dict[tuple[int, str], outbox.CallRow] = field(default_factory=dict)
    rules: dict[tuple[str, int], list[outbox.Rule]] = field(default_factory=dict)
    made: int = 0


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
        """One transaction for a whole group of requests."""
        now = self.clock()
        tx = _Transaction()
        results = []
        async with self.engine.begin() as conn:
            # lock every call of the group first, in one order: two processes committing
            # groups with the same calls cannot deadlock
            keys = sorted({(p.source.id, e.call_id) for p in group for e in p.events})
            for source_id, call_id in keys:
                tx.calls[(source_id, call_id)] = await outbox.lock_call(
                    conn, source_id, call_id, now
                )
            for pending in group:
                result = Result()
                for event in pending.events:
                    await self._one(conn, tx, pending.source, event, now, result)
                results.append(result)
            for call in tx.calls.values():
                await outbox.save_call(conn, call, now)
            if tx.made and conn.dialect.name == "postgresql":
                await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        if tx.made:
            self.wake()
        return results

    async def _one(
        self,
        conn: AsyncConnection,
        tx: _Transaction,
        source: Source,
        event: CallEvent,
        now: datetime,
        result: Result,
    ) -> None:
        key = (source.id, event.call_id)
        call = tx.calls.get(key)
        if call is None:
            call = tx.calls[key] = await outbox.lock_call(conn, source.id, event.call_id, now)
        applied = apply(call.state, event)
        if not await outbox.record_event(conn, source.id, call, event, applied.ignored, now):
            result.duplicates += 1
            return
        result.accepted += 1
        call.state = applied.state
        made: list[outbox.NewDelivery] = []
        for fired in applied.fired:
            for rule in await self._rules(conn, tx, fired):
                call.seq += 1
                made.append(self._delivery(call, event.call_id, fired, rule, now))
        await outbox.insert_deliveries(conn, made, now)
        result.deliveries += len(made)
        tx.made += len(made)

    async def _rules(
        self, conn: AsyncConnection, tx: _Transaction, fired: Fired
    ) -> list[outbox.Rule]:
        key = (fired.extension, int(fired.trigger))
        if key not in tx.rules:
            ref = parse_extension(fired.extension)
            assert ref.org_code is not None
            tx.rules[key] = await outbox.rules_for(conn, ref.org_code, ref.short, key[1])
        return tx.rules[key]

    def _delivery(
        self, call: outbox.CallRow, call_id: str, fired: Fired, rule: outbox.Rule, now: datetime
    ) -> outbox.NewDelivery:
        event_type = int(fired.trigger)
        return outbox.NewDelivery(
            webhook_id=new_webhook_id(),
            call_ref=call.id,
            call_id=call_id,
            seq=call.seq,
            event_type=event_type,
            extension=fired.extension,
            owner_path=rule.owner_path,
            rule_id=rule.id,
            app_id=rule.app_id,
            method=rule.method,
            url=rule.url,
            host=receiver_key(rule.url),
            order_key=order_key(rule.url.split("#", 1)[0], call.id),
            payload=encode_params(fired.params),
            expires_at=now + timedelta(seconds=lifetime(self.policy, event_type)),
        )
