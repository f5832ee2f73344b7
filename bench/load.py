"""Call events offered to callhook's ingest API, and what reached the receiver.

Calls are answered extension-to-extension calls: ``call.started``, ``call.answered`` and
``call.ended``, 6 deliveries each when both extensions have rules for every type. A PBX sends
a call's events as they happen, so the stream interleaves calls: the answer of a call comes
``stagger`` calls after its start, and its end ``stagger`` calls after that.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy import func, select

from bench.deploy import extended
from bench.nginx import Arrival, Nginx
from bench.report import percentile, progress
from callhook.store.database import create_engine
from callhook.store.tables import deliveries

#: which call event made a delivery of each PhoneCallEvent type
EVENT_OF_TYPE = {
    0: "call.started",
    1: "call.started",
    2: "call.ended",
    3: "call.answered",
    4: "call.answered",
}
#: where each event comes in its call (a call's events are sent in this order)
ORDER_IN_CALL = {"call.started": 0, "call.answered": 1, "call.ended": 2}
EVENTS_PER_CALL = 3
DELIVERIES_PER_CALL = 6


def call_stream(calls: int, extensions: int, stagger: int, prefix: str) -> list[dict[str, Any]]:
    """Every event of ``calls`` calls, in the order a PBX would send them."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    timed: list[tuple[int, int, dict[str, Any]]] = []
    for k in range(calls):
        call = f"{prefix}-{k}"
        caller, callee = extended((2 * k) % extensions), extended((2 * k + 1) % extensions)
        base = {"call_id": call, "time": now}
        timed.append(
            (
                k,
                0,
                {
                    **base,
                    "event_id": f"{call}-s",
                    "type": "call.started",
                    "caller": {"extension": caller},
                    "callee": {"extension": callee},
                },
            )
        )
        timed.append(
            (
                k + stagger,
                1,
                {**base, "event_id": f"{call}-a", "type": "call.answered", "extension": callee},
            )
        )
        timed.append(
            (
                k + 2 * stagger,
                2,
                {**base, "event_id": f"{call}-e", "type": "call.ended", "disposition": "ANSWER"},
            )
        )
    timed.sort(key=lambda t: (t[0], t[1]))
    return [event for _, _, event in timed]


@dataclass
class Offered:
    """What the load generator saw: when each event was accepted (a 202 arrived)."""

    started: float = 0.0
    finished: float = 0.0
    accepted: dict[tuple[str, str], float] = field(default_factory=dict)
    errors: int = 0

    @property
    def events_per_s(self) -> float:
        span = self.finished - self.started
        return len(self.accepted) / span if span > 0 else math.nan


async def offer(
    url: str,
    token: str,
    events: Sequence[dict[str, Any]],
    *,
    rate: float | None,
    batch: int = 100,
    in_flight: int = 4,
    tick: float = 0.01,
) -> Offered:
    """Post ``events`` to the ingest API at ``rate`` events/s (None: as fast as accepted).

    At a fixed rate, the events due in each ``tick`` go in one request (a PBX connector
    batching what happened in the last 10 ms); as fast as possible, ``batch`` events per request
    with ``in_flight`` requests outstanding. Like a PBX connector, it sends a call's event only
    once the previous one is acknowledged (requests in flight together may commit in any
    order); an event that must wait goes with a later request.
    """
    result = Offered()
    headers = {"Authorization": f"Bearer {token}"}
    endpoint = f"{url}/callhook/v1/call-events"
    limit = asyncio.Semaphore(in_flight if rate is None else 64)
    pending: set[asyncio.Task[None]] = set()
    #: per call, how many of its events were acknowledged
    stage: dict[str, int] = {}
    waiting: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(chunk: Sequence[dict[str, Any]]) -> None:
            async with limit:
                for _ in range(100):
                    async with session.post(endpoint, json=list(chunk), headers=headers) as r:
                        await r.read()
                        if r.status == 202:
                            at = time.time()
                            for e in chunk:
                                result.accepted[(e["call_id"], e["type"])] = at
                                stage[e["call_id"]] = stage.get(e["call_id"], 0) + 1
                            return
                        result.errors += 1
                        if r.status < 500 and r.status != 429:
                            raise SystemExit(f"ingest refused a batch: {r.status} {await r.text()}")
                    await asyncio.sleep(0.1)
                raise SystemExit(f"ingest kept failing: {result.errors} errors")

        def ready(candidates: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
            """The candidates that may go now (at most ``most``); the others wait."""
            chunk: list[dict[str, Any]] = []
            in_chunk: dict[str, int] = {}
            held: list[dict[str, Any]] = []
            for e in candidates:
                call = e["call_id"]
                position = stage.get(call, 0) + in_chunk.get(call, 0)
                if len(chunk) < most and position == ORDER_IN_CALL[e["type"]]:
                    chunk.append(e)
                    in_chunk[call] = in_chunk.get(call, 0) + 1
                else:
                    held.append(e)
            waiting[:] = held
            return chunk

        result.started = time.time()
        sent = 0
        last_note = time.monotonic()
        while sent < len(events) or waiting:
            if rate is None:
                await limit.acquire()
                limit.release()
                take = max(0, batch - len(waiting))
                chunk = ready([*waiting, *events[sent : sent + take]], batch)
                sent = min(len(events), sent + take)
            else:
                due = min(len(events), int((time.time() - result.started) * rate) + 1)
                chunk = ready([*waiting, *events[sent:due]], len(events))
                sent = max(sent, due)
            if not chunk:
                await asyncio.sleep(tick)
                continue
            task = asyncio.ensure_future(post(chunk))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if rate is None:
                await asyncio.sleep(0)
            if time.monotonic() - last_note > 5:
                last_note = time.monotonic()
                progress(
                    f"  offered {sent:,}/{len(events):,} events, {len(result.accepted):,} accepted"
                )
        while pending:
            await asyncio.gather(*pending)
        result.finished = time.time()
    return result


@dataclass
class Outcome:
    events: int
    accepted_per_s: float
    delivered: int
    expected: int
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    duplicates: int


async def delivery_keys(database_url: str) -> dict[str, tuple[str, int]]:
    """webhook-id -> (call id, PhoneCallEvent type), read from callhook's database."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries.c.webhook_id, deliveries.c.call_id, deliveries.c.event_type)
            )
            return {r.webhook_id: (r.call_id, r.event_type) for r in rows}
    finally:
        await engine.dispose()


def measure(
    offered: Offered, arrivals: Sequence[Arrival], keys: dict[str, tuple[str, int]], expected: int
) -> Outcome:
    """Latency from the 202 that accepted an event to the arrival of each request it caused."""
    latencies: list[float] = []
    seen: set[str] = set()
    duplicates = 0
    for arrival in arrivals:
        if arrival.webhook_id in seen:
            duplicates += 1
            continue
        seen.add(arrival.webhook_id)
        key = keys.get(arrival.webhook_id)
        if key is None:
            continue
        accepted = offered.accepted.get((key[0], EVENT_OF_TYPE[key[1]]))
        if accepted is not None:
            latencies.append(max(0.0, arrival.at - accepted) * 1000)
    last = max((a.at for a in arrivals), default=math.nan)
    span = last - offered.started
    return Outcome(
        events=len(offered.accepted),
        accepted_per_s=offered.events_per_s,
        delivered=len(seen),
        expected=expected,
        delivered_per_s=len(seen) / span if span > 0 else math.nan,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies, default=math.nan),
        duplicates=duplicates,
    )


def wait_for_arrivals(
    receiver: Nginx, expected: int, drain: float, database_url: str
) -> list[Arrival]:
    """Wait (at most ``drain`` s, or until nothing arrived for 30 s) for ``expected`` requests
    at ``receiver``; when some are missing, print the deliveries by state (why)."""
    deadline = time.monotonic() + drain
    arrivals = receiver.arrivals()
    last, last_change = len(arrivals), time.monotonic()
    while len(arrivals) < expected and time.monotonic() < deadline:
        time.sleep(1)
        arrivals = receiver.arrivals()
        if len(arrivals) != last:
            last, last_change = len(arrivals), time.monotonic()
            progress(f"  received {len(arrivals):,}/{expected:,}")
        elif time.monotonic() - last_change > 30:
            progress("  nothing arrived for 30 s: giving up on the rest")
            break
    if len(arrivals) < expected:
        for line in asyncio.run(delivery_states(database_url)):
            progress(f"    {line}")
    return arrivals


async def delivery_states(database_url: str) -> list[str]:
    """Deliveries by state and receiver, with an error of each group: why some are missing."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(
                    deliveries.c.state,
                    deliveries.c.host,
                    func.count(),
                    func.max(deliveries.c.attempts),
                    func.max(deliveries.c.last_error),
                ).group_by(deliveries.c.state, deliveries.c.host)
            )
            return [
                f"{state} to {host}: {count:,} (attempts up to {attempts}, error {error!r})"
                for state, host, count, attempts, error in rows
            ]
    finally:
        await engine.dispose()
