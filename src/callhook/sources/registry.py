"""Registering sources: each gets a token (shown once, stored hashed) for the ingest API."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from callhook import crypto
from callhook.errors import Conflict, NotFound, RequestInvalid
from callhook.service import utcnow
from callhook.sources.status import link_document
from callhook.store import source_links, sources
from callhook.store.sources import Source

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, slots=True)
class NewSource:
    source: Source
    #: shown once; only its hash is stored
    token: str


@dataclass(frozen=True, slots=True)
class SourceInfo:
    source: Source
    events: int
    last_event: datetime | None


class SourceRegistry:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def create(self, name: str) -> NewSource:
        if not _NAME.fullmatch(name):
            raise RequestInvalid(
                f"Invalid source name {name!r}: use 1 to 100 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit (e.g. asterisk-main)."
            )
        token = "chs_" + crypto.new_token()
        async with self.engine.begin() as conn:
            if await sources.find_by_name(conn, name) is not None:
                raise Conflict(f"A source named {name} already exists.")
            source = await sources.insert_source(conn, name, crypto.hash_token(token), self.clock())
        return NewSource(source, token)

    async def ensure(self, name: str) -> Source:
        """The source named ``name``, created when missing (for a PBX link run by callhook
        itself, which needs no token: its token is made and forgotten)."""
        async with self.engine.connect() as conn:
            found = await sources.find_by_name(conn, name)
        if found is not None:
            return found
        try:
            return (await self.create(name)).source
        except Conflict:  # made meanwhile by another process
            async with self.engine.connect() as conn:
                found = await sources.find_by_name(conn, name)
            assert found is not None
            return found

    async def links(self) -> list[dict[str, Any]]:
        """Every PBX link run by callhook, with its state (sources/status.py)."""
        async with self.engine.connect() as conn:
            rows = await source_links.list_links(conn)
        now = self.clock()
        return [link_document(name, row, now) for name, row in rows]

    async def list(self) -> list[SourceInfo]:
        async with self.engine.connect() as conn:
            rows = await sources.list_sources(conn)
        return [SourceInfo(s, n, last) for s, n, last in rows]

    async def delete(self, name: str) -> Source:
        """Forget a source with its calls, call events and deliveries."""
        async with self.engine.begin() as conn:
            found = await sources.find_by_name(conn, name)
            if found is None:
                raise NotFound(f"There is no source named {name}.")
            await sources.delete_source(conn, found.id)
        return found
