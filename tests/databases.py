"""Real test databases: a migrated SQLite template copied per test, and PostgreSQL databases
cloned per test from a migrated template (CREATE DATABASE ... TEMPLATE)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from callhook.config import _normalise_db_url
from callhook.store import migrate
from callhook.store.database import create_engine

POSTGRES_ENV = "CALLHOOK_TEST_POSTGRES_URL"


def postgres_admin_url() -> str | None:
    """The PostgreSQL URL tests may use, or None (skip) unless CALLHOOK_REQUIRE_POSTGRES=1."""
    raw = os.environ.get(POSTGRES_ENV, "")
    if raw:
        return _normalise_db_url(raw)
    if os.environ.get("CALLHOOK_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"CALLHOOK_REQUIRE_POSTGRES=1 but {POSTGRES_ENV} is not set")
    return None


def require_postgres() -> str:
    url = postgres_admin_url()
    if url is None:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1/test)"
        )
    return url


async def _admin(url: str, *statements: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


class PostgresTemplates:
    """Creates one migrated template per session, then a fresh clone per test."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = f"callhook_tpl_{uuid.uuid4().hex[:10]}"
        self.created: list[str] = []

    def setup(self) -> None:
        async def run() -> None:
            await _admin(self.admin_url, f'CREATE DATABASE "{self.template}"')
            engine = create_engine(with_database(self.admin_url, self.template))
            try:
                await migrate.upgrade(engine)
            finally:
                await engine.dispose()

        asyncio.run(run())

    def empty(self) -> str:
        name = f"callhook_t_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(self.admin_url, f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return with_database(self.admin_url, name)

    def clone(self, source_url: str | None = None) -> str:
        """A new database copied from the migrated template (or from ``source_url``)."""
        source = make_url(source_url).database if source_url else self.template
        name = f"callhook_t_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(self.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
        self.created.append(name)
        return with_database(self.admin_url, name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        asyncio.run(_admin(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def teardown(self) -> None:
        statements = [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in self.created]
        statements.append(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        asyncio.run(_admin(self.admin_url, *statements))


class SqliteTemplates:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.template = root / "template.db"

    def setup(self) -> None:
        async def run() -> None:
            engine = create_engine(f"sqlite+aiosqlite:///{self.template}")
            try:
                await migrate.upgrade(engine)
            finally:
                await engine.dispose()

        asyncio.run(run())

    def clone(self, source_url: str | None = None) -> str:
        """A new database file copied from the migrated template (or from ``source_url``)."""
        source = Path(make_url(source_url).database or "") if source_url else self.template
        target = self.root / f"{uuid.uuid4().hex[:12]}.db"
        shutil.copyfile(source, target)
        return f"sqlite+aiosqlite:///{target}"

    def empty(self) -> str:
        return f"sqlite+aiosqlite:///{self.root / (uuid.uuid4().hex[:12] + '-empty.db')}"


def plan_nodes(plan: Any) -> list[tuple[str, str]]:
    """(node type, relation) of every node of a PostgreSQL EXPLAIN (FORMAT JSON) plan."""
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", ()):
        found.extend(plan_nodes(child))
    return found
