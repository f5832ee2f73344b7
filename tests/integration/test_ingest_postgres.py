"""Ingest on PostgreSQL (store/ingest_postgres.py): a commit group's transaction straight
through asyncpg on ingest's own connection. Two serves on one database lock the calls they
share; the reads are the engine's; the lookups probe the unique index whatever the planner's
statistics say; a lost connection is made again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from callhook.service import utcnow
from callhook.sources.registry import SourceRegistry
from callhook.store import ingest_postgres, outbox
from callhook.store.database import asyncpg_options
from callhook.wiring import Components, build
from tests.conftest import World
from tests.databases import plan_nodes
from tests.integration.ingesting import asgi_client, post_events, settings_for
from tests.integration.test_engine import ALICE, BOB, answered_call, rule

pytestmark = pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)

URL = "http://127.0.0.1:9/hook"


@pytest.fixture
async def components(database_url: str, tmp_path: Path) -> AsyncIterator[Components]:
    built = build(settings_for(tmp_path / "data", database_url))
    yield built
    await built.close()


@pytest.fixture
async def other(database_url: str, tmp_path: Path) -> AsyncIterator[Components]:
    """Another serve on the same database, with its own connections."""
    built = build(settings_for(tmp_path / "other", database_url))
    yield built
    await built.close()


async def _connect(components: Components) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_options(components.engine))


async def _deliveries(components: Components) -> list[tuple[str, int]]:
    conn = await _connect(components)
    try:
        rows = await conn.fetch("SELECT call_id, seq FROM deliveries ORDER BY id")
        return [(row["call_id"], row["seq"]) for row in rows]
    finally:
        await conn.close()


async def test_two_serves_accept_each_event_once(
    world: World, client: httpx.AsyncClient, components: Components, other: Components
) -> None:
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    async with asgi_client(other) as second:
        for n in range(5):
            call = answered_call(f"both-{n}")
            answers = await asyncio.gather(
                post_events(client, token, call),
                post_events(second, token, call),
                post_events(client, token, call),
            )
            assert sorted(a["accepted"] for a in answers) == [0, 0, 3]
            assert sum(a["duplicates"] for a in answers) == 6
    made = await _deliveries(components)
    for n in range(5):
        assert [seq for call_id, seq in made if call_id == f"both-{n}"] == [1, 2, 3]


async def test_a_calls_events_split_between_two_serves_make_one_call(
    world: World, client: httpx.AsyncClient, components: Components, other: Components
) -> None:
    """The start through one serve, the answer and the end through the other at the same time:
    the call's row is locked by whichever commits first; the second reads what the first wrote
    (one call, deliveries numbered on from the first's)."""
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    async with asgi_client(other) as second:
        for n in range(5):
            start, answer, end = answered_call(f"split-{n}")
            answers = await asyncio.gather(
                post_events(client, token, [answer, end]), post_events(second, token, start)
            )
            assert sum(a["accepted"] for a in answers) == 3
            assert sum(a["deliveries"] for a in answers) == 3
    made = await _deliveries(components)
    for n in range(5):
        assert sorted(seq for call_id, seq in made if call_id == f"split-{n}") == [1, 2, 3]
    conn = await _connect(components)
    try:
        assert await conn.fetchval("SELECT count(*) FROM calls") == 5
    finally:
        await conn.close()


async def test_the_reads_through_asyncpg_are_the_engines(
    world: World, client: httpx.AsyncClient, components: Components
) -> None:
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    await rule(world, "alice", ALICE, 0, URL + "?second")
    await rule(world, "bob", BOB, 1, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    events = [e for n in range(3) for e in answered_call(f"r-{n}")]
    await post_events(client, token, events[:-1])  # the last call not ended
    source_id = (await components.ingest.authenticate(token)).id
    call_ids = ["r-0", "r-1", "r-2"]
    event_ids = [e["event_id"] for e in events] + ["unknown"]
    org = world.accounts["org"].org_code
    assert org is not None
    wanted = {(org, "210", 0), (org, "210", 2), (org, "211", 1), (org, "300", 0), (4, "210", 0)}
    async with components.engine.connect() as conn:
        calls = await outbox.find_calls(conn, source_id, call_ids)
        known = await outbox.known_events(conn, source_id, event_ids)
        rules = await outbox.rules_for_many(conn, wanted)
    direct = await _connect(components)
    try:
        async with direct.transaction():
            locked = await ingest_postgres.lock_calls(direct, source_id, call_ids, utcnow())
        assert locked == calls
        assert not locked["r-2"].state.ended
        assert locked["r-1"].state.ended
        assert await ingest_postgres.known_events(direct, source_id, event_ids) == known
        assert len(known) == len(events) - 1
        assert await ingest_postgres.rules_for_many(direct, wanted) == rules
        assert len(rules[(org, "210", 0)]) == 2
        assert len(rules[(org, "211", 1)]) == 1
        assert await ingest_postgres.rules_for_many(direct, set()) == {}
        # a call not seen before is made, empty, by lock_calls
        async with direct.transaction():
            made = await ingest_postgres.lock_calls(direct, source_id, ["new"], utcnow())
        assert made["new"].seq == 0
        assert made["new"].id > 0
    finally:
        await direct.close()


async def test_lookups_probe_the_unique_index_on_a_table_never_analyzed(
    components: Components,
) -> None:
    """A fresh database that grew under load has no statistics yet: the planner took the
    source's rows as a handful and read them all for every key (bench/RESULTS.md). The
    lookups by key must probe the unique index whatever the statistics say."""
    token = (await SourceRegistry(components.engine).create("pbx")).token
    source_id = (await components.ingest.authenticate(token)).id
    conn = await _connect(components)
    try:
        await conn.execute(
            "INSERT INTO calls (source_id, call_id, state, seq, created, updated) "
            "SELECT $1, 'c' || n, '{}', 0, now(), now() FROM generate_series(1, 20000) AS n",
            source_id,
        )
        await conn.execute(
            "INSERT INTO call_events (source_id, event_id, call_ref, kind, time, body, received) "
            "SELECT $1, 'e' || n, (SELECT min(id) FROM calls), 'start', now(), '{}', now() "
            "FROM generate_series(1, 20000) AS n",
            source_id,
        )
        keys = [f"e{n}" for n in range(1, 400)]
        for sql, relation in (
            (ingest_postgres._KNOWN, "call_events"),
            (ingest_postgres._LOCK_CALLS, "calls"),
        ):
            (raw,) = await conn.fetchrow("EXPLAIN (FORMAT JSON) " + sql, source_id, keys)
            scans = plan_nodes(json.loads(raw)[0]["Plan"])
            assert ("Seq Scan", relation) not in scans, scans
            assert any(node.startswith("Index") and rel == relation for node, rel in scans)
        assert await ingest_postgres.known_events(conn, source_id, keys) == set(keys)
    finally:
        await conn.close()


async def test_a_lost_connection_is_made_again(
    world: World, client: httpx.AsyncClient, components: Components
) -> None:
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    first, *rest = answered_call("lost")
    assert await post_events(client, token, [first]) == {
        "accepted": 1,
        "duplicates": 0,
        "deliveries": 1,
    }
    admin = await _connect(components)
    try:
        # every other connection to this database, ingest's among them, cut by the server
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert await post_events(client, token, rest) == {
        "accepted": 2,
        "duplicates": 0,
        "deliveries": 2,
    }
    assert [seq for _, seq in await _deliveries(components)] == [1, 2, 3]


async def test_a_connection_lost_inside_a_group_is_tried_again_on_a_new_one(
    world: World,
    client: httpx.AsyncClient,
    components: Components,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server cuts ingest's connection while a group's transaction runs (after its calls
    were locked): the transaction is rolled back with it and the group tried again on a new
    connection, so the request is answered 202 with everything stored once."""
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    read = ingest_postgres.known_events
    cut: list[int] = []

    async def known_events(conn: asyncpg.Connection, source_id: int, event_ids: Any) -> set[str]:
        if not cut:
            cut.append(conn.get_server_pid())
            admin = await _connect(components)
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", cut[0])
            finally:
                await admin.close()
        return await read(conn, source_id, event_ids)

    monkeypatch.setattr(ingest_postgres, "known_events", known_events)
    answer = await post_events(client, token, answered_call("cut"))
    assert cut
    assert answer == {"accepted": 3, "duplicates": 0, "deliveries": 3}
    assert [seq for _, seq in await _deliveries(components)] == [1, 2, 3]
