"""Helpers of the ingest tests that run serves side by side (test_ingest_sqlite.py,
test_ingest_postgres.py): their settings, an ASGI client of one, a batch posted to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from callhook.config import Settings
from callhook.wiring import Components


def settings_for(data_dir: Path, database_url: str) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, allow_networks="127.0.0.1/32")


def asgi_client(components: Components) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=components.app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="https://callhook.test")


async def post_events(client: httpx.AsyncClient, token: str, body: Any) -> dict[str, int]:
    """The call events posted with the source's token; the 202's counts."""
    response = await client.post(
        "/callhook/v1/call-events", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 202, response.text
    answer: dict[str, int] = response.json()
    return answer
