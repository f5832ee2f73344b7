"""The authorization-code and refresh-token grants (contract section 6)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from callhook import crypto
from callhook.provisioning import NewApp
from callhook.store import credentials
from callhook.wiring import Components
from tests.conftest import World, error_of

CALLBACK = "https://client.example.com/cb?keep=1"
ALICE_LIST = "/uapi/extensions/@me/210/phoneCallEvents"
BOB_LIST = "/uapi/extensions/@me/0003*211/phoneCallEvents"


@pytest.fixture
async def web_app(components: Components, world: World) -> NewApp:
    async with components.engine.begin() as conn:
        for who in ("alice", "carol"):
            await credentials.set_sign_in(
                conn, world.accounts[who].id, who, crypto.hash_secret(f"{who} password 123")
            )
    return await components.provisioning.create_app(world.accounts["org"].id, "Web CRM", CALLBACK)


def authorize_params(app: NewApp, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": app.app.client_id,
        "redirect_uri": CALLBACK,
        "state": "xyz",
        **extra,
    }


async def sign_in(client: httpx.AsyncClient, app: NewApp, who: str, **extra: str) -> httpx.Response:
    return await client.post(
        "/oauth/authorize.php",
        data={**authorize_params(app, **extra), "login": who, "password": f"{who} password 123"},
    )


def redirected(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "client.example.com",
        "/cb",
    )
    return parse_qs(location.query)


def token_form(app: NewApp, **fields: str) -> dict[str, str]:
    return {"client_id": app.app.client_id, "client_secret": app.client_secret, **fields}


async def test_code_flow_end_to_end(client: httpx.AsyncClient, web_app: NewApp) -> None:
    page = await client.get("/oauth/authorize.php", params=authorize_params(web_app))
    assert page.status_code == 200
    assert "Web CRM" in page.text
    assert "<form method=post>" in page.text
    assert page.headers["x-frame-options"] == "DENY"

    query = redirected(await sign_in(client, web_app, "alice"))
    assert query["state"] == ["xyz"]
    assert query["keep"] == ["1"]
    code = query["code"][0]

    response = await client.post(
        "/oauth/token.php",
        data=token_form(web_app, grant_type="authorization_code", code=code, redirect_uri=CALLBACK),
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    # the token acts as alice, not as the organization that owns the app
    assert (await client.get(ALICE_LIST, headers=headers)).status_code == 200
    assert error_of(await client.get(BOB_LIST, headers=headers)) == (400, "pce_access_denied")

    again = await client.post(
        "/oauth/token.php", data=token_form(web_app, grant_type="authorization_code", code=code)
    )
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")

    refreshed = await client.post(
        "/oauth/token.php",
        data=token_form(web_app, grant_type="refresh_token", refresh_token=tokens["refresh_token"]),
    )
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    new_headers = {"Authorization": f"Bearer {new['access_token']}"}
    assert (await client.get(ALICE_LIST, headers=new_headers)).status_code == 200
    reused = await client.post(
        "/oauth/token.php",
        data=token_form(web_app, grant_type="refresh_token", refresh_token=tokens["refresh_token"]),
    )
    assert reused.json()["error"] == "invalid_grant"
    # a refresh token is not an access token
    refresh_as_bearer = {"Authorization": f"Bearer {new['refresh_token']}"}
    assert error_of(await client.get(ALICE_LIST, headers=refresh_as_bearer))[0] == 401


async def test_wrong_password_shows_the_form_again(
    client: httpx.AsyncClient, web_app: NewApp
) -> None:
    response = await client.post(
        "/oauth/authorize.php",
        data={**authorize_params(web_app), "login": "alice", "password": "nope"},
    )
    assert response.status_code == 401
    assert "Wrong login or password" in response.text
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "change",
    [{"client_id": "ch_unknown_client"}, {"redirect_uri": "https://evil.example.com/cb"}],
)
async def test_bad_client_or_redirect_never_redirects(
    client: httpx.AsyncClient, web_app: NewApp, change: dict[str, str]
) -> None:
    response = await client.get(
        "/oauth/authorize.php", params={**authorize_params(web_app), **change}
    )
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_account_outside_the_apps_subtree_is_denied(
    client: httpx.AsyncClient, web_app: NewApp
) -> None:
    query = redirected(await sign_in(client, web_app, "carol"))
    assert query["error"] == ["access_denied"]
    assert "code" not in query


async def test_only_the_code_response_type(client: httpx.AsyncClient, web_app: NewApp) -> None:
    query = redirected(await sign_in(client, web_app, "alice", response_type="token"))
    assert query["error"] == ["unsupported_response_type"]


async def test_codes_expire_and_belong_to_their_app(
    client: httpx.AsyncClient, web_app: NewApp, world: World, components: Components
) -> None:
    code = redirected(await sign_in(client, web_app, "alice"))["code"][0]
    other = world.apps["org"]
    stolen = await client.post(
        "/oauth/token.php", data=token_form(other, grant_type="authorization_code", code=code)
    )
    assert stolen.json()["error"] == "invalid_grant"

    code = redirected(await sign_in(client, web_app, "alice"))["code"][0]
    later = components.oauth.clock() + timedelta(minutes=11)
    components.oauth.clock = lambda: later
    expired = await client.post(
        "/oauth/token.php", data=token_form(web_app, grant_type="authorization_code", code=code)
    )
    assert expired.json()["error"] == "invalid_grant"
    assert "expired" in expired.json()["error_description"]
