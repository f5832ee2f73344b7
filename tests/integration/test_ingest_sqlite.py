"""Ingest on a SQLite file (store/ingest_sqlite.py): a commit group's reads go straight through
sqlite3 in the transaction of its write, so they see what another writer of the file committed
before it, and read what the engine's queries read."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from callhook.sources.registry import SourceRegistry
from callhook.store import ingest_sqlite, outbox
from callhook.wiring import Components, build
from tests.conftest import World
from tests.integration.ingesting import asgi_client, post_events, settings_for
from tests.integration.test_engine import ALICE, BOB, answered_call, rule

pytestmark = pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)

URL = "http://127.0.0.1:9/hook"


@pytest.fixture
async def components(database_url: str, tmp_path: Path) -> AsyncIterator[Components]:
    built = build(settings_for(tmp_path / "data", database_url))
    yield built
    await built.close()


@pytest.fixture
async def other(database_url: str, tmp_path: Path) -> AsyncIterator[Components]:
    """Another serve on the same file: its path spelt otherwise, so it has its own write turns
    and its own ingest thread, as another process has (only SQLite's lock is shared)."""
    path = Path(database_url.removeprefix("sqlite+aiosqlite:///"))
    url = f"sqlite+aiosqlite:///{path.parent}/./{path.name}"
    built = build(settings_for(tmp_path / "other", url))
    yield built
    await built.close()


def _deliveries(path: str) -> list[tuple[str, int, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT call_id, seq, extension FROM deliveries ORDER BY seq")
        return [(str(c), int(s), str(e)) for c, s, e in rows]
    finally:
        conn.close()


async def test_two_serves_on_one_file_accept_each_event_once(
    world: World, client: httpx.AsyncClient, components: Components, other: Components
) -> None:
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    async with asgi_client(other) as second:
        call = answered_call("both")
        answers = await asyncio.gather(
            post_events(client, token, call),
            post_events(second, token, call),
            post_events(client, token, call),
        )
    assert sorted(answers, key=lambda a: a["accepted"]) == [
        {"accepted": 0, "duplicates": 3, "deliveries": 0},
        {"accepted": 0, "duplicates": 3, "deliveries": 0},
        {"accepted": 3, "duplicates": 0, "deliveries": 3},
    ]
    path = str(components.engine.url.database)
    assert [seq for _, seq, _ in _deliveries(path)] == [1, 2, 3]


async def test_a_calls_events_split_between_two_serves_see_each_others_state(
    world: World, client: httpx.AsyncClient, components: Components, other: Components
) -> None:
    """The answer and the end through one serve (held if the start is not stored yet), the start
    through the other at the same time: whichever commits second reads the call the first
    wrote (not a second new call), and the three deliveries follow one another."""
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    path = str(components.engine.url.database)
    async with asgi_client(other) as second:
        for n in range(5):
            start, answer, end = answered_call(f"split-{n}")
            answers = await asyncio.gather(
                post_events(client, token, [answer, end]), post_events(second, token, start)
            )
            assert sum(a["accepted"] for a in answers) == 3
            assert sum(a["deliveries"] for a in answers) == 3
            made = [d for d in _deliveries(path) if d[0] == f"split-{n}"]
            assert [seq for _, seq, _ in made] == [1, 2, 3]
    conn = sqlite3.connect(path)
    try:
        (calls,) = conn.execute("SELECT count(*) FROM calls").fetchone()
    finally:
        conn.close()
    assert calls == 5


async def test_the_reads_through_sqlite3_are_the_engines(
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
    call_ids = ["r-0", "r-1", "r-2", "nope"]
    event_ids = [e["event_id"] for e in events] + ["unknown"]
    org = world.accounts["org"].org_code
    assert org is not None
    wanted = {(org, "210", 0), (org, "210", 2), (org, "211", 1), (org, "300", 0), (4, "210", 0)}
    async with components.engine.connect() as conn:
        calls = await outbox.find_calls(conn, source_id, call_ids)
        known = await outbox.known_events(conn, source_id, event_ids)
        rules = await outbox.rules_for_many(conn, wanted)
    direct = sqlite3.connect(str(components.engine.url.database))
    try:
        got_calls = ingest_sqlite.find_calls(direct, source_id, call_ids)
        assert got_calls == calls
        assert set(got_calls) == {"r-0", "r-1", "r-2"}
        assert not got_calls["r-2"].state.ended
        assert got_calls["r-1"].state.ended
        assert ingest_sqlite.known_events(direct, source_id, event_ids) == known
        assert len(known) == len(events) - 1
        assert ingest_sqlite.rules_for_many(direct, wanted) == rules
        assert len(rules[(org, "210", 0)]) == 2
        assert len(rules[(org, "211", 1)]) == 1
        assert ingest_sqlite.find_calls(direct, source_id, []) == {}
        assert ingest_sqlite.rules_for_many(direct, set()) == {}
    finally:
        direct.close()


async def test_a_group_read_before_another_serves_commit_is_planned_again(
    world: World,
    client: httpx.AsyncClient,
    components: Components,
    other: Components,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other serve commits the same events between this group's first read (before the
    write lock) and its write: read again under the lock, they are duplicates, not a second
    insert (which the unique key would refuse)."""
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    call = answered_call("raced")
    loop = asyncio.get_running_loop()
    read = ingest_sqlite.known_text
    armed = [True]
    between: list[dict[str, int]] = []

    def known_text(conn: sqlite3.Connection, source_id: int, event_ids: Any) -> tuple[str, ...]:
        found = read(conn, source_id, event_ids)
        if armed.pop() if armed else False:
            # on this serve's ingest thread: the other serve commits meanwhile
            done = asyncio.run_coroutine_threadsafe(post_events(second, token, call), loop)
            between.append(done.result(timeout=30))
        return found

    monkeypatch.setattr(ingest_sqlite, "known_text", known_text)
    async with asgi_client(other) as second:
        answer = await post_events(client, token, call)
    assert between == [{"accepted": 3, "duplicates": 0, "deliveries": 3}]
    assert answer == {"accepted": 0, "duplicates": 3, "deliveries": 0}
    path = str(components.engine.url.database)
    assert [seq for _, seq, _ in _deliveries(path)] == [1, 2, 3]
