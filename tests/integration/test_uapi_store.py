"""The UnifiedAPI's store (store.uapi_store) on every engine: Creates that arrive together are
committed together, and one whose extension is gone fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from callhook.domain.phone_call_events import EventType, PhoneCallEvent, new_event_id
from callhook.store import bulk
from callhook.store.uapi_sqlite import RuleWriter, SqliteUapiStore
from callhook.store.uapi_store import ExtensionGone, row_of
from callhook.wiring import Components

pytestmark = pytest.mark.usefixtures("world")

GONE = 999_999


def _event(extension_id: int, n: int) -> PhoneCallEvent:
    return PhoneCallEvent(
        id=new_event_id(),
        extension_id=extension_id,
        type=EventType(n % 5),
        method=n % 2,
        url=f"https://crm.example.com/hook/{n}",
        status=1,
        note=f"note {n}",
        modified=datetime(2026, 11, 28, 6, 0, n, tzinfo=UTC),
    )


async def test_creates_together_are_committed_and_a_gone_extension_fails_alone(
    components: Components,
) -> None:
    async with components.engine.connect() as conn:
        extension_id = (await conn.execute(text("SELECT min(id) FROM extensions"))).scalar_one()
    store = components.service.store
    events = [_event(GONE if n == 3 else extension_id, n) for n in range(8)]
    # submitted in one turn of the event loop: one group on the engines that group them
    results = await asyncio.gather(
        *(store.insert_event(e, app_id=1) for e in events), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["ExtensionGone"] + [
        "NoneType"
    ] * 4
    assert isinstance(results[3], ExtensionGone)
    kept = [e for e in events if e.extension_id == extension_id]
    found = await store.find_events(extension_id, None, None)
    assert sorted(found, key=lambda e: e.id) == sorted(kept, key=lambda e: e.id)


async def test_sqlite_a_create_waits_for_another_writer_of_the_file(
    components: Components,
) -> None:
    store = components.service.store
    if not isinstance(store, SqliteUapiStore):
        pytest.skip("the file's write lock is SQLite's")
    async with components.engine.connect() as conn:
        extension_id = (await conn.execute(text("SELECT min(id) FROM extensions"))).scalar_one()
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.2, other.execute, "ROLLBACK")
        event = _event(extension_id, 1)
        started = time.monotonic()
        await store.insert_event(event, app_id=1)
        assert time.monotonic() - started >= 0.2
    finally:
        other.close()
    assert event in await store.find_events(extension_id, None, None)


async def _sqlite_writer(
    components: Components, skip_why: str
) -> tuple[SqliteUapiStore, RuleWriter, int]:
    """The SQLite store, its rule writer (started by a first Create) and an extension's id;
    the test is skipped on other engines."""
    store = components.service.store
    if not isinstance(store, SqliteUapiStore):
        pytest.skip(skip_why)
    async with components.engine.connect() as conn:
        extension_id = (await conn.execute(text("SELECT min(id) FROM extensions"))).scalar_one()
    await store.insert_event(_event(extension_id, 0), app_id=1)
    writer = store._writer
    assert writer is not None
    return store, writer, extension_id


async def test_sqlite_a_failed_commit_fails_only_the_bad_creates_of_its_group(
    components: Components,
) -> None:
    store, writer, extension_id = await _sqlite_writer(components, "SQLite's deferred foreign keys")
    # the gone extension is found when the group's statement commits, not as it inserts
    writer.connection().execute("PRAGMA defer_foreign_keys=ON")
    events = [_event(GONE if n == 2 else extension_id, n) for n in range(1, 5)]
    results = await asyncio.gather(
        *(store.insert_event(e, app_id=1) for e in events), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "ExtensionGone",
        "NoneType",
        "NoneType",
    ]
    found = {e.id for e in await store.find_events(extension_id, None, None)}
    assert {e.id for e in events if e.extension_id == extension_id} <= found
    assert events[1].id not in found


async def test_sqlite_a_write_cancelled_during_its_commit_is_cancelled_once_it_is_done(
    components: Components,
) -> None:
    store, writer, extension_id = await _sqlite_writer(components, "SQLite's commit thread")
    # a group's statement journal stays in memory (no temporary file written page by page)
    assert writer.connection().execute("PRAGMA temp_store").fetchone()[0] == 2
    # another connection holds the write lock: the group's INSERT waits on the commit thread
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        event = _event(extension_id, 1)
        task = asyncio.ensure_future(store.insert_event(event, app_id=1))
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.sleep(0.1)
        # the cancellation waits for the commit, which waits for the lock
        assert not task.done()
        other.execute("ROLLBACK")
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        other.close()
    # the cancelled caller's rule was committed all the same: a 201 it never sent, not a loss
    assert event in await store.find_events(extension_id, None, None)


async def test_sqlite_a_group_larger_than_one_statement_is_one_transaction(
    components: Components,
) -> None:
    store, writer, extension_id = await _sqlite_writer(components, "SQLite's rule writer")

    def rows(extension: int, first: int, count: int) -> list[tuple[object, ...]]:
        made = [_event(extension, n % 60) for n in range(first, first + count)]
        return [row_of(e, 1, bulk.sqlite_datetime(e.modified)) for e in made]

    group = rows(extension_id, 0, 600)  # 500 rows to a statement: two statements
    assert writer.write(group) == [None] * 600
    stored = {e.id for e in await store.find_events(extension_id, None, None)}
    assert {row[0] for row in group} <= stored
    # a bad row in the second statement undoes the first one too
    bad = rows(extension_id, 0, 520) + rows(GONE, 0, 1)
    with pytest.raises(sqlite3.IntegrityError):
        writer.write(bad)
    stored = {e.id for e in await store.find_events(extension_id, None, None)}
    assert not {row[0] for row in bad} & stored
