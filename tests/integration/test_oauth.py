"""OAuth 2.0 (contract section 6; RFC 6749 and RFC 7009)."""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from callhook import crypto
from callhook.store.tables import apps, tokens
from callhook.wiring import Components
from tests.conftest import World, error_of

LIST = "/uapi/extensions/@me/0003*210/phoneCallEvents"


def form(world: World, who: str = "org", **extra: str) -> dict[str, str]:
    app = world.apps[who]
    return {
        "grant_type": "client_credentials",
        "client_id": app.app.client_id,
        "client_secret": app.client_secret,
        **extra,
    }


def basic(world: World, who: str = "org") -> str:
    app = world.apps[who]
    raw = f"{app.app.client_id}:{app.client_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize("path", ["/oauth/token.php", "/oauth/token", "/oauth/token.php/"])
async def test_client_credentials_in_the_form(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    extra = {
        "type": "unifiedapi",
        "redirect_uri": "https://client.example.com/cb",
        "redirect_url": "x",
    }
    response = await client.post(path, data=form(world, **extra))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
    listed = await client.get(LIST, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert listed.status_code == 200


async def test_client_credentials_in_http_basic(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        "/oauth/token.php",
        data={"grant_type": "client_credentials", "type": "systemapi"},
        headers={"Authorization": basic(world)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "systemapi"


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"client_secret": "wrong-secret-wrong-secret"}, 401, "invalid_client"),
        ({"client_id": "ch_unknown_client"}, 401, "invalid_client"),
        ({"client_secret": ""}, 401, "invalid_client"),
        ({"grant_type": ""}, 400, "invalid_request"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"type": "soap"}, 400, "invalid_request"),
    ],
)
async def test_token_errors(
    client: httpx.AsyncClient, world: World, change: dict[str, str], status: int, error: str
) -> None:
    response = await client.post("/oauth/token.php", data={**form(world), **change})
    assert response.status_code == status
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")


async def test_conflicting_client_authentication_is_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post(
        "/oauth/token.php",
        data=form(world, "alice"),
        headers={"Authorization": basic(world, "org")},
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


async def test_bearer_header_and_query_forms(client: httpx.AsyncClient, world: World) -> None:
    token = await world.token("org")
    for params in ({"accessRequestToken": f"Bearer {token}"}, {"accessRequestToken": token}):
        response = await client.get(LIST, params=params)
        assert response.status_code == 200, response.text
    response = await client.get(LIST, headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ],
)
async def test_missing_or_bad_tokens(
    client: httpx.AsyncClient, world: World, headers: dict[str, str]
) -> None:
    response = await client.get(LIST, headers=headers)
    assert error_of(response) == (401, "access_denied")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_revocation(client: httpx.AsyncClient, world: World) -> None:
    token = await world.token("org")
    headers = {"Authorization": f"Bearer {token}"}
    # another client cannot revoke it (RFC 7009 answers 200 all the same)
    other = await client.post("/oauth/revoke", data={"token": token, **form(world, "alice")})
    assert other.status_code == 200
    assert (await client.get(LIST, headers=headers)).status_code == 200
    response = await client.post("/oauth/revoke", data={"token": token, **form(world)})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert error_of(await client.get(LIST, headers=headers)) == (401, "access_denied")
    unknown = await client.post("/oauth/revoke", data={"token": "never-issued", **form(world)})
    assert unknown.status_code == 200
    anonymous = await client.post("/oauth/revoke", data={"token": token})
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_client")


async def test_tokens_expire(
    client: httpx.AsyncClient, world: World, components: Components
) -> None:
    token = await world.token("org")
    later = components.service.clock() + timedelta(seconds=3601)
    components.service.clock = lambda: later
    response = await client.get(LIST, headers={"Authorization": f"Bearer {token}"})
    assert error_of(response) == (401, "access_denied")
    assert "expired" in response.json()["error"]["message"]


async def test_rotating_a_secret_revokes_tokens(
    client: httpx.AsyncClient, world: World, components: Components
) -> None:
    token = await world.token("org")
    rotated = await components.provisioning.rotate_secret(world.apps["org"].app.client_id)
    response = await client.get(LIST, headers={"Authorization": f"Bearer {token}"})
    assert error_of(response) == (401, "access_denied")
    old = await client.post("/oauth/token.php", data=form(world))
    assert old.status_code == 401
    new = await client.post(
        "/oauth/token.php", data={**form(world), "client_secret": rotated.client_secret}
    )
    assert new.status_code == 200


async def test_secrets_and_tokens_are_stored_only_hashed(
    client: httpx.AsyncClient, world: World, components: Components
) -> None:
    token = await world.token("org")
    async with components.engine.connect() as conn:
        stored_tokens = [r.token_hash for r in await conn.execute(select(tokens.c.token_hash))]
        stored_secrets = [r.secret_hash for r in await conn.execute(select(apps.c.secret_hash))]
    assert token not in stored_tokens
    assert all(len(h) == 64 for h in stored_tokens)
    for new in world.apps.values():
        assert new.client_secret not in " ".join(stored_secrets)
    assert all(h.startswith("$argon2id$") for h in stored_secrets)


async def test_expired_tokens_are_forgotten_on_the_next_issuance(
    client: httpx.AsyncClient, world: World, components: Components
) -> None:
    old = await world.token("org")
    later = components.oauth.clock() + timedelta(days=2)
    components.oauth.clock = lambda: later
    response = await client.post("/oauth/token.php", data=form(world))
    assert response.status_code == 200
    async with components.engine.connect() as conn:
        stored = {r.token_hash for r in await conn.execute(select(tokens.c.token_hash))}
    assert crypto.hash_token(old) not in stored
    assert crypto.hash_token(response.json()["access_token"]) in stored
    assert crypto.hash_token(await world.token("alice")) in stored  # other apps untouched
