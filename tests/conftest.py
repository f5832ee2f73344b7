"""Shared fixtures: real databases (SQLite and PostgreSQL), the app over ASGI, a directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from callhook.config import Settings
from callhook.domain.accounts import Account, AccountKind, ExtensionType
from callhook.provisioning import NewApp, Provisioning
from callhook.wiring import Components, build
from tests.databases import PostgresTemplates, SqliteTemplates, postgres_admin_url

ENGINES = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplates:
    templates = SqliteTemplates(tmp_path_factory.mktemp("sqlite"))
    templates.setup()
    return templates


@pytest.fixture(scope="session")
def postgres_templates() -> Iterator[PostgresTemplates | None]:
    url = postgres_admin_url()
    if url is None:
        yield None
        return
    templates = PostgresTemplates(url)
    templates.setup()
    yield templates
    templates.teardown()


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def world_templates() -> dict[str, tuple[str, World]]:
    """Per engine: a database holding the test World (built once), and the World itself."""
    return {}


def _world_template(
    engine_name: str,
    templates: SqliteTemplates | PostgresTemplates,
    cache: dict[str, tuple[str, World]],
) -> tuple[str, World]:
    if engine_name not in cache:
        url = templates.clone()

        async def seed() -> World:
            built = build(Settings(database_url=url))
            try:
                seeded = await build_world(built.provisioning)
                for who, new in seeded.apps.items():
                    issued = await built.oauth.issue_token(
                        {"grant_type": "client_credentials"},
                        (new.app.client_id, new.client_secret),
                    )
                    seeded._tokens[who] = issued["access_token"]
                return seeded
            finally:
                await built.engine.dispose()

        cache[engine_name] = (url, asyncio.run(seed()))
    return cache[engine_name]


@pytest.fixture
def database_url(
    request: pytest.FixtureRequest,
    engine_name: str,
    sqlite_templates: SqliteTemplates,
    postgres_templates: PostgresTemplates | None,
    world_templates: dict[str, tuple[str, World]],
) -> Iterator[str]:
    """A freshly migrated database on the engine under test: empty, or holding the World when
    the test also asks for the ``world`` fixture (cloned from a template, so it is cheap)."""
    templates: SqliteTemplates | PostgresTemplates
    if engine_name == "sqlite":
        templates = sqlite_templates
    elif postgres_templates is None:
        pytest.skip("PostgreSQL tests need CALLHOOK_TEST_POSTGRES_URL")
    else:
        templates = postgres_templates
    if "world" in request.fixturenames:
        source, _ = _world_template(engine_name, templates, world_templates)
        url = templates.clone(source)
    else:
        url = templates.clone()
    yield url
    if isinstance(templates, PostgresTemplates):
        templates.drop(url)


@pytest.fixture
async def components(database_url: str, tmp_path: Path) -> AsyncIterator[Components]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    built = build(settings)
    yield built
    await built.close()


@pytest.fixture
async def client(components: Components) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=components.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://callhook.test") as c:
        yield c


@dataclass
class World:
    """A small directory: admin > sp > org 0003 (alice 210, bob 211, queue 300, voicemail 500)
    and org 0004 (carol 210), with an app on every account."""

    accounts: dict[str, Account] = field(default_factory=dict)
    apps: dict[str, NewApp] = field(default_factory=dict)
    client: httpx.AsyncClient | None = None
    _tokens: dict[str, str] = field(default_factory=dict)

    async def token(self, who: str) -> str:
        if who not in self._tokens:
            assert self.client is not None
            app = self.apps[who]
            response = await self.client.post(
                "/oauth/token.php",
                data={
                    "grant_type": "client_credentials",
                    "client_id": app.app.client_id,
                    "client_secret": app.client_secret,
                    "type": "unifiedapi",
                },
            )
            assert response.status_code == 200, response.text
            self._tokens[who] = response.json()["access_token"]
        return self._tokens[who]

    async def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(who)}"}


async def build_world(prov: Provisioning) -> World:
    world = World()
    acc = world.accounts
    boot = await prov.bootstrap()
    assert boot is not None
    acc["admin"] = (await prov.list_accounts(AccountKind.ADMIN))[0]
    world.apps["admin"] = boot
    acc["sp"] = await prov.create_account(AccountKind.SERVICE_PROVIDER, "Acme Telecom")
    acc["org"] = await prov.create_account(
        AccountKind.ORGANIZATION, "Example Corp", acc["sp"].id, 3
    )
    acc["alice"] = await prov.create_account(AccountKind.USER, "Alice", acc["org"].id)
    acc["bob"] = await prov.create_account(AccountKind.USER, "Bob", acc["org"].id)
    acc["org4"] = await prov.create_account(AccountKind.ORGANIZATION, "Other Corp", acc["sp"].id, 4)
    acc["carol"] = await prov.create_account(AccountKind.USER, "Carol", acc["org4"].id)
    await prov.create_extension(acc["alice"].id, "210", ExtensionType.PHONE_TERMINAL, "Alice desk")
    await prov.create_extension(acc["bob"].id, "211", ExtensionType.PHONE_TERMINAL)
    await prov.create_extension(acc["alice"].id, "300", ExtensionType.QUEUE, "Sales queue")
    await prov.create_extension(acc["bob"].id, "500", ExtensionType.VOICEMAIL_CENTER)
    await prov.create_extension(acc["carol"].id, "210", ExtensionType.PHONE_TERMINAL)
    for who in ("sp", "org", "alice", "bob", "org4", "carol"):
        world.apps[who] = await prov.create_app(acc[who].id, f"{who} app")
    return world


@pytest.fixture
def world(
    engine_name: str, world_templates: dict[str, tuple[str, World]], client: httpx.AsyncClient
) -> World:
    """The World of tests/conftest.py, already in the test's database (see ``database_url``)."""
    _, template = world_templates[engine_name]
    return World(
        accounts=dict(template.accounts),
        apps=dict(template.apps),
        client=client,
        _tokens=dict(template._tokens),
    )


def error_of(response: httpx.Response) -> tuple[int, str]:
    """(status, UAPI error code) of an error response; fails if the body is not the UAPI shape."""
    body: Any = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"], body
    return response.status_code, body["error"]["code"]
