"""One asyncpg connection of a hot path's own (ingest's commit groups, a worker's cycles), for
work that runs one transaction at a time: made on first use, closed when in doubt, made again
after it is lost; and the two conversions their statements share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from callhook.store.database import asyncpg_connect

T = TypeVar("T")
log = logging.getLogger(__name__)

#: what a lost connection raises
LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    OSError,
)


def moment(value: datetime | None) -> datetime | None:
    """A time as asyncpg takes it for timestamptz: aware, in UTC."""
    return None if value is None else value.astimezone(UTC)


def columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows (at least one) as one list per column: asyncpg takes each as an array."""
    return [list(column) for column in zip(*rows, strict=True)]


class OwnConnection:
    def __init__(self, options: dict[str, Any], *, name: str) -> None:
        self.options = options
        self.name = name
        self._conn: asyncpg.Connection | None = None

    async def transaction(
        self, work: Callable[[asyncpg.Connection], Awaitable[T]], *, again_if_lost: bool = False
    ) -> T:
        """``work`` in one transaction, committed before this returns. A transaction cut
        short (an error, the connection lost, cancelled) is rolled back; a connection in doubt
        is closed and the next transaction makes a new one. With ``again_if_lost``, work found
        on a lost connection (the server restarted, an idle connection cut) is tried once more
        on a new one: only for work that may run twice (a COMMIT lost on its way back may
        have been stored)."""
        for last in (not again_if_lost, True):
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg_connect(self.options)
            conn = self._conn
            try:
                async with conn.transaction():
                    return await work(conn)
            except LOST as exc:
                self._drop()
                if last:
                    raise
                log.warning(
                    "%s: the database connection was lost (%s); connecting again", self.name, exc
                )
            except asyncpg.PostgresError:
                raise  # a statement refused: rolled back, the connection is fine
            except BaseException:
                self._drop()
                raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)
