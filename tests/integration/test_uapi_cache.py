"""What the UnifiedAPI keeps in a process (tokens, accounts, extensions, rules: store.uapi_sqlite,
store.uapi_postgres) never outlives a change made elsewhere: by the ``callhook admin`` CLI in
another process, or by another connection. On SQLite the next request sees it; on PostgreSQL
it is seen once the NOTIFY arrives (waited for here, at most ``PROMPT`` seconds)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from callhook.config import Settings
from callhook.domain.accounts import AccountKind
from callhook.store.database import create_engine
from callhook.store.uapi_postgres import PostgresUapiStore
from callhook.wiring import Components, build
from tests.acceptance.cli_process import Cli, cli_env
from tests.conftest import World, error_of

pytestmark = pytest.mark.usefixtures("world")

#: seconds a change may take to reach a PostgreSQL process (its NOTIFY's way)
PROMPT = 5.0
LIST = "/uapi/extensions/@me/0003*210/phoneCallEvents"


async def seen(engine_name: str, check: Callable[[], Awaitable[bool]]) -> None:
    """``check`` holds at once on SQLite, within PROMPT seconds on PostgreSQL."""
    if engine_name == "sqlite":
        assert await check()
        return
    deadline = time.monotonic() + PROMPT
    while not await check():
        assert time.monotonic() < deadline, "the change did not reach the cache in time"
        await asyncio.sleep(0.02)


async def status_of(client: httpx.AsyncClient, world: World, who: str, path: str = LIST) -> int:
    return (await client.get(path, headers=await world.auth(who))).status_code


async def warm(
    client: httpx.AsyncClient, world: World, who: str = "alice", path: str = LIST
) -> None:
    """Requests that fill the cache (twice: the second is answered from it)."""
    for _ in range(2):
        assert await status_of(client, world, who, path) == 200


def execute(database_url: str, *statements: str) -> None:
    """Write through a connection of its own, as another process would."""

    async def run() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()

    # on a thread: the test's event loop is running
    with_loop = asyncio.new_event_loop()
    try:
        with_loop.run_until_complete(run())
    finally:
        with_loop.close()


async def write(database_url: str, *statements: str) -> None:
    await asyncio.to_thread(execute, database_url, *statements)


async def test_a_secret_rotated_by_the_cli_in_another_process_revokes_the_cached_token(
    client: httpx.AsyncClient, world: World, engine_name: str, database_url: str, tmp_path: Path
) -> None:
    await warm(client, world)
    cli = Cli(cli_env(tmp_path / "cli", database_url), tmp_path)
    client_id = world.apps["alice"].app.client_id
    await asyncio.to_thread(cli.ok, "admin", "app", "rotate-secret", client_id)

    async def refused() -> bool:
        response = await client.get(LIST, headers=await world.auth("alice"))
        return response.status_code == 401 and error_of(response) == (401, "access_denied")

    await seen(engine_name, refused)
    # the other apps' tokens still work
    assert await status_of(client, world, "org") == 200


async def test_an_extension_deleted_by_the_cli_is_gone_for_the_next_request(
    client: httpx.AsyncClient, world: World, engine_name: str, database_url: str, tmp_path: Path
) -> None:
    await warm(client, world)
    cli = Cli(cli_env(tmp_path / "cli", database_url), tmp_path)
    await asyncio.to_thread(cli.ok, "admin", "extension", "delete", "0003*210")

    async def gone() -> bool:
        response = await client.get(LIST, headers=await world.auth("alice"))
        return response.status_code == 400 and error_of(response)[1] == "extension_invalid"

    await seen(engine_name, gone)


async def test_a_revocation_by_another_connection_is_seen(
    client: httpx.AsyncClient, world: World, engine_name: str, database_url: str
) -> None:
    bobs = "/uapi/extensions/@me/0003*211/phoneCallEvents"
    await warm(client, world, "bob", bobs)
    await write(database_url, "UPDATE tokens SET revoked = true")

    async def refused() -> bool:
        return await status_of(client, world, "bob", bobs) == 401

    await seen(engine_name, refused)


async def test_an_extension_moved_out_of_the_subtree_is_refused(
    client: httpx.AsyncClient, world: World, engine_name: str, database_url: str
) -> None:
    """The extension's owner changed elsewhere: alice's app may no longer manage it."""
    await warm(client, world)
    bob = world.accounts["bob"].id
    await write(database_url, f"UPDATE extensions SET owner_id = {bob} WHERE number = '210'")

    async def denied() -> bool:
        response = await client.get(LIST, headers=await world.auth("alice"))
        return response.status_code == 400 and error_of(response)[1] == "pce_access_denied"

    await seen(engine_name, denied)
    # and bob's app now may
    assert await status_of(client, world, "bob") == 200


async def test_an_extension_made_a_voicemail_elsewhere_takes_no_events(
    client: httpx.AsyncClient, world: World, engine_name: str, database_url: str
) -> None:
    await warm(client, world)
    await write(database_url, "UPDATE extensions SET type = 'voicemail-center'")

    async def refused() -> bool:
        response = await client.get(LIST, headers=await world.auth("alice"))
        return response.status_code == 400 and error_of(response)[1] == "extension_invalid"

    await seen(engine_name, refused)


async def test_rules_written_by_another_process_are_listed(
    client: httpx.AsyncClient, world: World, engine_name: str, database_url: str, tmp_path: Path
) -> None:
    """Another ``serve`` (its own Components on the same database) creates, updates and
    deletes rules; the List of this one follows."""
    headers = await world.auth("alice")

    async def listed() -> list[tuple[str, str]]:
        response = await client.get(LIST, headers=headers)
        assert response.status_code == 200, response.text
        return [(e["url"], e["status"]) for e in response.json()["entry"]]

    assert await listed() == []
    other = build(Settings(data_dir=tmp_path / "other", database_url=database_url))
    try:
        transport = httpx.ASGITransport(app=other.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://other.test") as peer:
            made = await peer.post(
                LIST, headers=headers, json={"type": 0, "url": "https://crm.example.com/a"}
            )
            assert made.status_code == 201, made.text

            async def created() -> bool:
                return await listed() == [("https://crm.example.com/a", "1")]

            await seen(engine_name, created)
            link = made.json()["links"]["self"].removeprefix("https://other.test")
            changed = await peer.put(link, headers=headers, json={"status": 0})
            assert changed.status_code == 200, changed.text

            async def updated() -> bool:
                return await listed() == [("https://crm.example.com/a", "0")]

            await seen(engine_name, updated)
            assert (await peer.delete(link, headers=headers)).status_code == 200

            async def deleted() -> bool:
                return await listed() == []

            await seen(engine_name, deleted)
    finally:
        await other.close()


async def test_a_new_account_does_not_hide_the_old_ones(
    client: httpx.AsyncClient, world: World, components: Components
) -> None:
    """A flush drops everything; what is looked up again is still right."""
    await warm(client, world)
    await components.provisioning.create_account(AccountKind.USER, "Dave", world.accounts["org"].id)
    assert await status_of(client, world, "alice") == 200
    org = world.accounts["org"].id
    by_id = f"/uapi/extensions/{org}/210/phoneCallEvents"
    assert await status_of(client, world, "alice", by_id) == 400  # org is above alice
    assert await status_of(client, world, "org", by_id) == 200


# --- PostgreSQL: the listening connection ----------------------------------------------------


async def test_postgres_cache_is_dropped_and_off_while_not_listening(
    client: httpx.AsyncClient,
    world: World,
    engine_name: str,
    database_url: str,
    components: Components,
) -> None:
    """The listening connection killed: what was kept is dropped (a notice may have been
    missed), nothing is kept until LISTEN is back, and then the cache works again."""
    if engine_name != "postgres":
        pytest.skip("the listening connection is PostgreSQL's")
    await warm(client, world)
    store = components.service.store
    assert isinstance(store, PostgresUapiStore)
    await asyncio.wait_for(store.listening.wait(), PROMPT)
    await warm(client, world)
    assert len(store.cache) > 0
    flushes = store.cache.flushes
    await write(
        database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE query LIKE 'LISTEN%' AND datname = current_database()",
    )
    deadline = time.monotonic() + PROMPT
    while store.cache.flushes == flushes:
        assert time.monotonic() < deadline, "the lost connection was not noticed"
        await asyncio.sleep(0.01)
    # a change made while nobody listened is seen all the same
    await write(database_url, "UPDATE tokens SET revoked = true")

    async def refused() -> bool:
        return await status_of(client, world, "alice") == 401

    await seen(engine_name, refused)
    await asyncio.wait_for(store.listening.wait(), PROMPT)
    assert store.cache.enabled


async def test_this_process_sees_its_own_rule_changes_before_any_notice(
    client: httpx.AsyncClient,
    world: World,
    engine_name: str,
    components: Components,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client that creates, updates or deletes a rule and lists next sees the change, even
    if the change's NOTIFY has not arrived yet (here: never does)."""
    store = components.service.store
    if isinstance(store, PostgresUapiStore):
        await warm(client, world)
        await asyncio.wait_for(store.listening.wait(), PROMPT)
        monkeypatch.setattr(store, "_rules_notified", lambda *_a: None)
        monkeypatch.setattr(store, "_notified", lambda *_a: None)
    headers = await world.auth("alice")

    async def urls() -> list[tuple[str, str]]:
        response = await client.get(LIST, headers=headers)
        assert response.status_code == 200, response.text
        return [(e["url"], e["status"]) for e in response.json()["entry"]]

    assert await urls() == []
    made = await client.post(LIST, headers=headers, json={"type": 0, "url": "https://a.example"})
    assert made.status_code == 201, made.text
    assert await urls() == [("https://a.example", "1")]
    link = made.json()["links"]["self"].removeprefix("https://callhook.test")
    assert (await client.put(link, headers=headers, json={"status": 0})).status_code == 200
    assert await urls() == [("https://a.example", "0")]
    assert (await client.delete(link, headers=headers)).status_code == 200
    assert await urls() == []


async def test_a_token_revoked_through_this_process_fails_its_next_request(
    client: httpx.AsyncClient,
    world: World,
    components: Components,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/oauth/revoke, then the token at once: refused, even with the NOTIFY held back."""
    store = components.service.store
    if isinstance(store, PostgresUapiStore):
        await warm(client, world)
        await asyncio.wait_for(store.listening.wait(), PROMPT)
        monkeypatch.setattr(store, "_notified", lambda *_a: None)
    await warm(client, world)
    app = world.apps["alice"]
    revoked = await client.post(
        "/oauth/revoke",
        data={
            "token": await world.token("alice"),
            "client_id": app.app.client_id,
            "client_secret": app.client_secret,
        },
    )
    assert revoked.status_code == 200
    assert await status_of(client, world, "alice") == 401
