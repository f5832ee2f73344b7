"""The queue of pending deliveries (``delivery_queue``, migration 0008) through the worker's
cycle on both engines: a delivery is in it exactly while pending, leased ones are due there
when their lease ends, a call's later deliveries made in the same commit wait parked until the
one before is finished (recorded or expired), and leases given back are due at their time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.service import utcnow
from callhook.sources.registry import SourceRegistry
from callhook.store import delivery_log, outbox
from callhook.store.database import writing
from callhook.store.outbox import ClaimWanted, CycleDone
from callhook.store.outbox_postgres import PostgresCycles
from callhook.store.outbox_sqlite import SqliteCycles
from callhook.store.tables import deliveries, delivery_queue
from callhook.wiring import Components, build
from tests.conftest import World
from tests.integration.ingesting import post_events, settings_for
from tests.integration.test_engine import ALICE, answered_call, rule

URL = "http://127.0.0.1:9/hook"
LEASE = timedelta(seconds=60)


class Cycles(Protocol):
    async def cycle(
        self,
        owner: str,
        finished: list[outbox.Finished],
        returns: list[tuple[int, datetime]],
        claim: ClaimWanted | None,
    ) -> CycleDone: ...


@pytest.fixture
async def components(database_url: str, tmp_path: Path) -> AsyncIterator[Components]:
    built = build(settings_for(tmp_path / "data", database_url))
    yield built
    await built.close()


class EngineCycles:
    """The worker's cycle through the engine (``Worker._transaction``: SQLite in memory), here
    on the test's SQLite file."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def cycle(
        self,
        owner: str,
        finished: list[outbox.Finished],
        returns: list[tuple[int, datetime]],
        claim: ClaimWanted | None,
    ) -> CycleDone:
        done = CycleDone()
        async with writing(self.engine) as conn:
            done.kept = await outbox.finish_attempts(conn, owner, finished)
            for job_id, at in returns:
                await outbox.release(conn, [job_id], owner, at)
            if claim is not None:
                jobs = await outbox.claim(
                    conn, now=claim.now, owner=owner, lease=claim.lease, limit=claim.limit
                )
                done.expired = [job for job in jobs if job.expires_at <= claim.now]
                done.jobs = [job for job in jobs if job.expires_at > claim.now]
                for job in done.expired:
                    await outbox.finish_attempt(
                        conn, job, None, state=outbox.EXPIRED, next_at=None, reason="late"
                    )
        return done

    async def close(self) -> None:
        return None


@pytest.fixture(params=["direct", "engine"])
async def cycles(
    request: pytest.FixtureRequest, components: Components, database_url: str
) -> AsyncIterator[Cycles]:
    """The worker's own cycles for the database under test; on SQLite also through the
    engine."""
    made: SqliteCycles | PostgresCycles | EngineCycles
    if request.param == "engine":
        if components.engine.dialect.name == "postgresql":
            pytest.skip("the engine's path is SQLite's (in memory)")
        made = EngineCycles(components.engine)
    elif components.engine.dialect.name == "postgresql":
        made = PostgresCycles(components.engine)
    else:
        path = make_url(database_url).database
        assert path is not None
        made = SqliteCycles(path)
    yield made
    await made.close()


async def _call(world: World, client: httpx.AsyncClient, components: Components) -> None:
    """One answered call to alice posted in one request (one commit): 3 deliveries to one URL."""
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    await post_events(client, token, answered_call("c-1"))


async def _queue(components: Components) -> list[Any]:
    """(seq, parked, next_at) of each delivery in the queue, in id order."""
    query = (
        select(deliveries.c.seq, delivery_queue.c.parked, delivery_queue.c.next_at)
        .join(deliveries, deliveries.c.id == delivery_queue.c.id)
        .order_by(delivery_queue.c.id)
    )
    async with components.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(query)]


def _done(job: outbox.Job, state: str = outbox.DELIVERED, retry: datetime | None = None) -> Any:
    attempt = outbox.Attempt(utcnow(), job.host, 204, None, None, 3, "", "w")
    return outbox.Finished(job, attempt, state, retry, None)


def _wanted(now: datetime | None = None) -> ClaimWanted:
    return ClaimWanted(now or utcnow(), LEASE, 100, ())


async def test_later_deliveries_wait_parked_until_the_one_before_is_finished(
    world: World, client: httpx.AsyncClient, components: Components, cycles: Cycles
) -> None:
    before = utcnow()
    await _call(world, client, components)
    queued = await _queue(components)
    assert [(seq, parked) for seq, parked, _ in queued] == [(1, False), (2, True), (3, True)]
    first_due, *parked_until = [at for *_, at in queued]
    assert first_due <= utcnow()
    # parked for outbox.PARKED at most
    for at in parked_until:
        assert before + outbox.PARKED <= at <= utcnow() + outbox.PARKED
    (first,) = (await cycles.cycle("w", [], [], _wanted())).jobs
    assert first.seq == 1
    # leased: due in the queue when the lease ends; nothing else is claimable
    leased = (await _queue(components))[0]
    assert leased[2] >= utcnow() + LEASE - timedelta(seconds=5)
    assert (await cycles.cycle("w2", [], [], _wanted())).jobs == []
    # its record wakes the next at once, which is claimed in the same cycle
    done = await cycles.cycle("w", [_done(first)], [], _wanted())
    assert done.kept == [True]
    assert [job.seq for job in done.jobs] == [2]
    assert [(seq, parked) for seq, parked, _ in await _queue(components)] == [
        (2, False),
        (3, True),
    ]
    # a retry keeps the rest parked; the retried one is due at its next attempt
    retry_at = utcnow() + timedelta(minutes=5)
    second = done.jobs[0]
    again = await cycles.cycle("w", [_done(second, outbox.PENDING, retry_at)], [], _wanted())
    assert again.kept == [True]
    assert again.jobs == []
    (row2, row3) = await _queue(components)
    assert row2 == (2, False, retry_at)
    assert row3[:2] == (3, True)
    # expired when claimed at last: it leaves the queue and wakes the third
    late = retry_at + timedelta(days=2)
    expired = await cycles.cycle("w", [], [], _wanted(late))
    assert [job.seq for job in expired.expired] == [2]
    assert [(seq, parked) for seq, parked, _ in await _queue(components)] == [(3, False)]


async def test_leases_given_back_are_due_in_the_queue_at_their_time(
    world: World, client: httpx.AsyncClient, components: Components, cycles: Cycles
) -> None:
    await _call(world, client, components)
    (first,) = (await cycles.cycle("w", [], [], _wanted())).jobs
    later = utcnow() + timedelta(seconds=30)  # before the ring expires (60 s)
    await cycles.cycle("w", [], [(first.id, later)], None)
    assert (await _queue(components))[0] == (1, False, later)
    assert (await cycles.cycle("w", [], [], _wanted())).jobs == []
    assert [job.id for job in (await cycles.cycle("w", [], [], _wanted(later))).jobs] == [first.id]
    # release_all (one process owns the database): due again at the delivery's own time
    async with components.engine.begin() as conn:
        assert await outbox.release_all(conn) == 1
    async with components.engine.connect() as conn:
        own = (
            await conn.execute(select(deliveries.c.next_at).where(deliveries.c.id == first.id))
        ).scalar_one()
    assert (await _queue(components))[0] == (1, False, own)


async def test_a_replayed_delivery_is_back_in_the_queue(
    world: World, client: httpx.AsyncClient, components: Components, cycles: Cycles
) -> None:
    await _call(world, client, components)
    jobs: list[outbox.Job] = []
    for _ in range(3):
        done = await cycles.cycle("w", [_done(job) for job in jobs], [], _wanted())
        jobs = done.jobs
    await cycles.cycle("w", [_done(job) for job in jobs], [], None)
    assert await _queue(components) == []
    now = utcnow()
    async with components.engine.begin() as conn:
        ids = [job.id for job in jobs]
        assert await delivery_log.requeue(conn, ids, now, {ids[0]: now + LEASE}) == 1
        # pending already: not queued twice
        assert await delivery_log.requeue(conn, ids, now, {ids[0]: now + LEASE}) == 0
    assert await _queue(components) == [(3, False, now)]
    (replayed,) = (await cycles.cycle("w", [], [], _wanted())).jobs
    assert replayed.id == jobs[0].id


async def test_a_parked_delivery_claimed_late_is_never_woken_while_leased(
    world: World, client: httpx.AsyncClient, components: Components, cycles: Cycles
) -> None:
    """Parked at most ``outbox.PARKED``: then claimable once nothing before it is pending, and
    its claim clears ``parked``, so a finish before it (a replay) cannot make it due again
    while its lease runs."""
    await _call(world, client, components)
    (first,) = (await cycles.cycle("w", [], [], _wanted())).jobs
    (second,) = (await cycles.cycle("w", [_done(first)], [], _wanted())).jobs
    # the second leaves the queue without waking the third (as if it were gone)
    async with components.engine.begin() as conn:
        await conn.execute(delete(delivery_queue).where(delivery_queue.c.id == second.id))
    assert (await cycles.cycle("w", [], [], _wanted())).jobs == []  # still parked
    late = utcnow() + outbox.PARKED + timedelta(seconds=1)
    (third,) = (await cycles.cycle("w", [], [], _wanted(late))).jobs
    assert third.seq == 3
    now = utcnow()
    async with components.engine.begin() as conn:
        assert await delivery_log.requeue(conn, [first.id], now, {first.id: now + LEASE}) == 1
    (replayed,) = (await cycles.cycle("w", [], [], _wanted())).jobs
    assert replayed.id == first.id
    await cycles.cycle("w", [_done(replayed)], [], None)
    # the third is still leased: nobody else can claim it
    assert (await cycles.cycle("w2", [], [], _wanted())).jobs == []
