"""Use cases of /callhook/v1/deliveries: list, show, replay one, recover many.

Each account sees only the deliveries of extensions in its own subtree (as in the UAPI).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.domain.accounts import AccountKind, parse_extension
from callhook.domain.retry import RetryPolicy, lifetime
from callhook.errors import NotFound, RequestInvalid
from callhook.service import Principal
from callhook.store import delivery_log
from callhook.store.delivery_log import Filters
from callhook.store.outbox import DELIVERED, EXPIRED, FAILED, PENDING

STATES = (PENDING, DELIVERED, FAILED, EXPIRED)
METHODS = {0: "GET", 1: "POST"}
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
_WEBHOOK_ID = re.compile(r"msg_[A-Za-z0-9]{27}")
FILTERS = ("extension", "call_id", "type", "state", "since", "until")


def _time(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise RequestInvalid(
            f"{name} must be an RFC 3339 date-time such as 2026-11-27T18:00:00Z, not {raw!r}."
        ) from None
    if value.tzinfo is None:
        raise RequestInvalid(f"{name} needs a UTC offset (add Z or +HH:MM): {raw!r}.")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise RequestInvalid(f"{name} is out of range: {raw!r}.") from None


def parse_filters(who: Principal, params: Mapping[str, str]) -> Filters:
    for name, value in params.items():
        if len(value) > 200 or not value.isprintable():
            raise RequestInvalid(f"{name} must be at most 200 printable characters.")
    unknown = sorted(set(params) - {*FILTERS, "limit", "after"})
    if unknown:
        raise RequestInvalid(
            f"Unknown query parameter {unknown[0]!r}; use {', '.join(FILTERS)}, limit, after."
        )
    ext = params.get("extension")
    if ext is not None:
        ref = parse_extension(ext)
        if ref.org_code is None:
            org = who.account.organization_id()
            raise RequestInvalid(
                "extension must be in the extended form ORG*NUMBER, e.g. 0003*210"
                + ("." if org is None else f" (not the short {ext}).")
            )
        ext = f"{ref.org_code:04d}*{ref.short}"
    etype: int | None = None
    if "type" in params:
        if params["type"] not in {"0", "1", "2", "3", "4"}:
            raise RequestInvalid("type must be 0, 1, 2, 3 or 4.")
        etype = int(params["type"])
    state = params.get("state")
    if state is not None and state not in STATES:
        raise RequestInvalid(f"state must be one of {', '.join(STATES)}.")
    subtree = None if who.account.kind is AccountKind.ADMIN else who.account.path
    return Filters(
        subtree=subtree,
        extension=ext,
        call_id=params.get("call_id"),
        event_type=etype,
        state=state,
        since=_time("since", params["since"]) if "since" in params else None,
        until=_time("until", params["until"]) if "until" in params else None,
    )


def _limit(params: Mapping[str, str]) -> tuple[int, int | None]:
    raw = params.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise RequestInvalid(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    after = params.get("after")
    if after is not None and not (after.isdigit() and len(after) <= 18):
        raise RequestInvalid("after must be the cursor given in a previous page's 'next' link.")
    return int(raw), int(after) if after is not None else None


def render(row: Any) -> dict[str, Any]:
    doc = {
        "id": row.webhook_id,
        "call_id": row.call_id,
        "seq": row.seq,
        "type": str(row.event_type),
        "extension": row.extension,
        "rule_id": row.rule_id,
        "method": METHODS.get(row.method, str(row.method)),
        "url": row.url,
        "params": dict(parse_qsl(row.payload, keep_blank_values=True)),
        "state": row.state,
        "attempts": row.attempts,
        "created": row.created.isoformat(),
        "expires": row.expires_at.isoformat(),
        "next_attempt": row.next_at.isoformat() if row.state == PENDING else None,
        "finished": row.finished.isoformat() if row.finished else None,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "note": row.note,
    }
    return doc


def render_attempt(row: Any) -> dict[str, Any]:
    return {
        "at": row.at.isoformat(),
        "host": row.host,
        "status": row.status,
        "error_class": row.error_class,
        "error": row.error,
        "latency_ms": row.latency_ms,
        "response": row.snippet,
        "worker": row.worker,
    }


class DeliveryLog:
    def __init__(
        self, engine: AsyncEngine, *, policy: RetryPolicy, clock: Callable[[], datetime]
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock

    async def list(self, who: Principal, params: Mapping[str, str], base: str) -> dict[str, Any]:
        filters = parse_filters(who, params)
        limit, after = _limit(params)
        async with self.engine.connect() as conn:
            rows = await delivery_log.list_deliveries(conn, filters, before=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_link = None
        if more:
            query = {k: v for k, v in params.items() if k != "after"}
            query["after"] = str(rows[-1].id)
            next_link = f"{base}?{urlencode(query)}"
        return {"deliveries": [render(r) for r in rows], "next": next_link}

    async def _visible(self, who: Principal, webhook_id: str) -> Any:
        if not _WEBHOOK_ID.fullmatch(webhook_id):
            raise NotFound(f"There is no delivery {webhook_id[:40]!r}: ids look like msg_...")
        async with self.engine.connect() as conn:
            row = await delivery_log.get_delivery(conn, webhook_id)
        if row is None or not _sees(who, row.owner_path):
            raise NotFound(f"There is no delivery {webhook_id} that you may see.")
        return row

    async def show(self, who: Principal, webhook_id: str) -> dict[str, Any]:
        row = await self._visible(who, webhook_id)
        async with self.engine.connect() as conn:
            attempts = await delivery_log.attempts_of(conn, row.id)
        return {**render(row), "attempt_log": [render_attempt(a) for a in attempts]}

    async def replay(self, who: Principal, webhook_id: str) -> tuple[dict[str, Any], bool]:
        """Send it again (same webhook-id); False when it was still pending anyway."""
        row = await self._visible(who, webhook_id)
        now = self.clock()
        expires = {row.id: now + timedelta(seconds=lifetime(self.policy, row.event_type))}
        async with self.engine.begin() as conn:
            changed = await delivery_log.requeue(conn, [row.id], now, expires)
            fresh = await delivery_log.get_delivery(conn, webhook_id)
        return render(fresh), bool(changed)

    async def recover(self, who: Principal, since_text: Any, until_text: Any) -> int:
        if not isinstance(since_text, str):
            raise RequestInvalid('Send {"since": "2026-11-27T18:00:00Z"}: recover needs since.')
        since = _time("since", since_text)
        until = _time("until", until_text) if isinstance(until_text, str) else None
        filters = Filters(
            subtree=None if who.account.kind is AccountKind.ADMIN else who.account.path,
            since=since,
            until=until,
        )
        now = self.clock()
        async with self.engine.begin() as conn:
            found = await delivery_log.failed_since(conn, filters)
            expires = {i: now + timedelta(seconds=lifetime(self.policy, t)) for i, t in found}
            return await delivery_log.requeue(conn, [i for i, _ in found], now, expires)


def _sees(who: Principal, owner_path: str) -> bool:
    account = who.account
    return account.kind is AccountKind.ADMIN or account.contains(owner_path)
