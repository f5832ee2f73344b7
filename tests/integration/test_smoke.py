from __future__ import annotations

import httpx

from tests.conftest import World


async def test_create_and_list(client: httpx.AsyncClient, world: World) -> None:
    headers = await world.auth("org")
    created = await client.post(
        "/uapi/extensions/@me/0003*210/phoneCallEvents",
        json={"type": 0, "url": "https://crm.example.com/hook"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    listed = await client.get("/uapi/extensions/@me/0003*210/phoneCallEvents", headers=headers)
    assert listed.json()["totalResults"] == 1
