"""Who may manage which extension's events, and how userId and extension resolve."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import World, error_of

URL = "https://crm.example.com/hook"


async def attempt(
    client: httpx.AsyncClient, world: World, who: str, user: str, ext: str
) -> httpx.Response:
    ids = {k: str(v.id) for k, v in world.accounts.items()}
    path = f"/uapi/extensions/{user.format(**ids)}/{ext}/phoneCallEvents"
    return await client.post(path, json={"type": 0, "url": URL}, headers=await world.auth(who))


@pytest.mark.parametrize(
    ("who", "user", "ext"),
    [
        ("admin", "@me", "0003*210"),
        ("admin", "@me", "0004*210"),
        ("sp", "@me", "0003*211"),
        ("org", "@me", "211"),
        ("org", "@me", "300"),  # a queue takes events
        ("alice", "@me", "210"),
        ("alice", "@viewer", "0003*210"),
        ("alice", "{alice}", "210"),
        ("org4", "@me", "210"),  # resolves to 0004*210
        ("carol", "@owner", "0004*210"),
    ],
)
async def test_allowed(
    client: httpx.AsyncClient, world: World, who: str, user: str, ext: str
) -> None:
    response = await attempt(client, world, who, user, ext)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("who", "user", "ext", "code"),
    [
        ("alice", "@me", "211", "pce_access_denied"),  # bob's extension
        ("alice", "@owner", "0003*211", "pce_access_denied"),
        ("org4", "@me", "0003*210", "pce_access_denied"),
        ("org", "{org4}", "210", "pce_access_denied"),  # a userId outside the subtree
        ("alice", "{org}", "210", "pce_access_denied"),  # above the token's account
        ("org", "{bob}", "0003*210", "extension_invalid"),  # not bob's extension
        ("org", "@me", "0003*999", "extension_invalid"),
        ("org", "@me", "0009*210", "extension_invalid"),
        ("org", "@me", "500", "extension_invalid"),  # voicemail center takes no events
        ("org", "@me", "@self", "extension_invalid"),
        ("org", "@me", "abc", "extension_invalid"),
        ("org", "@me", "0003*", "extension_invalid"),
        ("admin", "@me", "210", "extension_invalid"),  # short number without an organization
        ("sp", "@me", "210", "extension_invalid"),
        ("org", "@someone", "210", "user_invalid"),
        ("org", "abc", "210", "user_invalid"),
        ("org", "987654321", "210", "user_invalid"),
    ],
)
async def test_refused(
    client: httpx.AsyncClient, world: World, who: str, user: str, ext: str, code: str
) -> None:
    assert error_of(await attempt(client, world, who, user, ext)) == (400, code)


async def test_refusals_apply_to_every_operation(client: httpx.AsyncClient, world: World) -> None:
    created = (await attempt(client, world, "bob", "@me", "211")).json()
    headers = await world.auth("alice")
    base = "/uapi/extensions/@me/0003*211/phoneCallEvents"
    for response in (
        await client.get(base, headers=headers),
        await client.get(f"{base}/0/{created['id']}", headers=headers),
        await client.put(f"{base}/0/{created['id']}", json={"url": URL}, headers=headers),
        await client.delete(base, headers=headers),
    ):
        assert error_of(response) == (400, "pce_access_denied")
    # and nothing was deleted
    listed = await client.get(base, headers=await world.auth("bob"))
    assert listed.json()["totalResults"] == 1


async def test_path_errors_come_before_body_errors(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/uapi/extensions/@me/0003*211/phoneCallEvents",
        content=b"not json",
        headers={**await world.auth("alice"), "Content-Type": "application/json"},
    )
    assert error_of(response) == (400, "pce_access_denied")
