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
from callhook.store.uapi_sqlite import RuleWriter, SqliteUapiStore, _insert
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
    # the gone extension is found by the group's COMMIT (on the commit thread), not its INSERT
    writer._conn.execute("PRAGMA defer_foreign_keys=ON")
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
    assert writer._conn.execute("PRAGMA temp_store").fetchone()[0] == 2
    commit = writer._commit
    committed: list[float] = []

    def slow_commit() -> None:
        time.sleep(0.3)
        commit()
        committed.append(time.monotonic())

    writer._commit = slow_commit  # type: ignore[method-assign]
    event = _event(extension_id, 1)
    row = row_of(event, 1, bulk.sqlite_datetime(event.modified))
    task = asyncio.ensure_future(writer.write([(_insert(1), row)]))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the cancellation came once the COMMIT was done, not while the thread held the connection
    assert len(committed) == 1
    writer._commit = commit  # type: ignore[method-assign]
    after = _event(extension_id, 2)
    await store.insert_event(after, app_id=1)
    found = {e.id for e in await store.find_events(extension_id, None, None)}
    assert {event.id, after.id} <= found
