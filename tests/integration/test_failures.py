"""Rate limits and unexpected failures answer with their documented codes, never a trace."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from callhook.config import Settings
from callhook.wiring import Components, build
from tests.conftest import World, error_of

LIST = "/uapi/extensions/@me/0003*210/phoneCallEvents"


async def test_rate_limit_answers_429_with_retry_after(
    world: World, database_url: str, tmp_path: Path
) -> None:
    limited = build(Settings(data_dir=tmp_path, database_url=database_url, rate_limit=1))
    transport = httpx.ASGITransport(app=limited.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://h") as client:
            headers = await world.auth("org")
            statuses = [(await client.get(LIST, headers=headers)).status_code for _ in range(11)]
            assert statuses[:10] == [200] * 10  # a burst of ten
            response = await client.get(LIST, headers=headers)
            assert error_of(response) == (429, "rate_limited")
            assert int(response.headers["retry-after"]) >= 1
            # another app has its own allowance
            other = await client.get(LIST, headers=await world.auth("alice"))
            assert other.status_code == 200
    finally:
        await limited.close()


async def test_unexpected_errors_are_500_without_details(
    client: httpx.AsyncClient, world: World, components: Components
) -> None:
    headers = await world.auth("org")
    async with components.engine.begin() as conn:
        await conn.execute(text("DROP TABLE phone_call_events"))
    response = await client.get(LIST, headers=headers)
    assert error_of(response) == (500, "internal_server_error")
    message = response.json()["error"]["message"]
    assert "request id" in message
    assert "phone_call_events" not in response.text
    assert "Traceback" not in response.text


async def test_an_unexpected_error_on_the_uapi_is_logged_once_with_its_request_id(
    client: httpx.AsyncClient,
    world: World,
    components: Components,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PhoneCallEvents requests go around Starlette's middleware (api.app.HotRoutes): what
    they cannot handle is still answered and logged as ``CatchAll`` does it."""
    headers = await world.auth("org")
    async with components.engine.begin() as conn:
        await conn.execute(text("DROP TABLE phone_call_events"))
    with caplog.at_level(logging.ERROR):
        response = await client.post(
            LIST, headers=headers, json={"type": 0, "url": "https://crm.example.com/hook"}
        )
    assert error_of(response) == (500, "internal_server_error")
    logged = [r for r in caplog.records if r.getMessage().startswith("unhandled error")]
    assert len(logged) == 1
    request_id = response.json()["error"]["message"].split("request id ")[1].rstrip(").")
    assert f"request_id={request_id}" in logged[0].getMessage()
