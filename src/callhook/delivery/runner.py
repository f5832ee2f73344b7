"""Running a worker next to the API (``serve``) or alone (``callhook worker``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.delivery.worker import Worker
from callhook.ingest import NOTIFY_CHANNEL
from callhook.store import outbox
from callhook.store.database import writing

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def notifications(engine: AsyncEngine, wake: Callable[[], None]) -> AsyncIterator[None]:
    """On PostgreSQL, call ``wake`` whenever another process commits new deliveries."""
    if engine.dialect.name != "postgresql":
        yield
        return
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection

        def listener(*_args: Any) -> None:
            wake()

        await driver.add_listener(NOTIFY_CHANNEL, listener)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await driver.remove_listener(NOTIFY_CHANNEL, listener)


async def run_worker(worker: Worker, stop: asyncio.Event, *, owns_database: bool) -> None:
    """Run until ``stop``. ``owns_database``: no other process works on this database (the
    embedded SQLite case), so leases left by a previous run are taken back at once."""
    if owns_database:
        async with writing(worker.engine) as conn:
            taken = await outbox.release_all(conn)
        if taken:
            log.info("took back %d deliveries leased by a previous run", taken)
    await worker.sender.start()
    try:
        async with notifications(worker.engine, worker.wake):
            log.info("worker started name=%s", worker.name)
            await worker.run(stop)
    finally:
        await worker.sender.close()
        if worker.owns_engine:
            await worker.engine.dispose()
        log.info("worker stopped name=%s", worker.name)
