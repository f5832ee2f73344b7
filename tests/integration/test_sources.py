"""Sources beyond the protocols: reconstructed hangups in the delivery log, the sink that never
drops a call event, and /callhook/v1/sources (both engines)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from callhook.domain.calls import CallEvent, Kind, Party
from callhook.sources.registry import SourceRegistry
from callhook.sources.runner import Backoff, IngestSink
from callhook.sources.status import LinkStatus
from callhook.store import source_links
from callhook.store.sources import Source
from callhook.wiring import Components
from tests.conftest import World, error_of
from tests.integration.test_engine import ALICE, BOB, event, ingest, rule

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
async def source(components: Components) -> dict[str, str]:
    made = await SourceRegistry(components.engine).create("pbx")
    return {"Authorization": f"Bearer {made.token}"}


async def test_a_reconstructed_hangup_is_noted_on_its_deliveries(
    world: World, client: httpx.AsyncClient, source: dict[str, str]
) -> None:
    auth = await world.auth("alice")
    await rule(world, "alice", ALICE, 2, "https://crm.example.com/hangup")
    await rule(world, "alice", ALICE, 0, "https://crm.example.com/ring")
    body = [
        event("call.started", "r1", caller={"extension": BOB}, callee={"extension": ALICE}),
        event("call.ended", "r1", reconstructed="the PBX no longer had the call"),
    ]
    assert (await ingest(client, source, body))["deliveries"] == 2
    listed = (await client.get("/callhook/v1/deliveries?call_id=r1", headers=auth)).json()
    notes = {d["type"]: d["note"] for d in listed["deliveries"]}
    assert notes == {"2": "reconstructed: the PBX no longer had the call", "0": None}
    hangup = next(d for d in listed["deliveries"] if d["type"] == "2")
    assert hangup["params"]["CallStatus"] == "UNKNOWN"
    shown = (await client.get(f"/callhook/v1/deliveries/{hangup['id']}", headers=auth)).json()
    assert shown["note"] == "reconstructed: the PBX no longer had the call"


async def test_reconstructed_is_only_for_call_ended_and_must_be_text(
    client: httpx.AsyncClient, source: dict[str, str]
) -> None:
    started = event("call.started", "r2", caller={"number": "1"}, callee={"number": "2"})
    bad = [
        {**started, "reconstructed": "why"},
        event("call.ended", "r2", reconstructed=5),
        event("call.ended", "r2", reconstructed=" "),
    ]
    for body in bad:
        response = await client.post("/callhook/v1/call-events", json=body, headers=source)
        assert error_of(response) == (400, "call_event_invalid"), body
    assert "reconstructed" in response.json()["error"]["message"]


def _start(call_id: str) -> CallEvent:
    return CallEvent(
        f"{call_id}:started",
        call_id,
        Kind.STARTED,
        T0,
        caller=Party(BOB),
        callee=Party(ALICE),
    )


async def test_the_sink_keeps_events_the_database_refused_until_they_are_stored(
    components: Components,
) -> None:
    registry = SourceRegistry(components.engine)
    made = await registry.create("first")
    # the next source's id, before it exists: storing its events fails (foreign key)
    future = Source(made.source.id + 1, "later", T0)
    sink = IngestSink(components.ingest, future, retry=Backoff(0.01, 0.05))
    task = asyncio.create_task(sink.run())
    try:
        sink.put([_start("k1"), _start("k2")])
        await asyncio.sleep(0.3)
        assert sink.pending == 2  # refused, kept, retried
        assert sink.committed == 0
        later = await registry.create("later")
        assert later.source.id == future.id
        await asyncio.wait_for(sink.idle(), 10)
        assert sink.pending == 0
        assert sink.committed == 2
    finally:
        task.cancel()
    listed = {i.source.name: i.events for i in await registry.list()}
    assert listed["later"] == 2


async def test_sources_show_each_link_to_administrators_only(
    world: World, components: Components, client: httpx.AsyncClient
) -> None:
    registry = SourceRegistry(components.engine)
    pbx = await registry.ensure("asterisk")
    assert (await registry.ensure("asterisk")).id == pbx.id
    await registry.create("kamailio")
    now = datetime.now(UTC)
    status = LinkStatus(pbx.id, "ami", "pbx.example.com:5038", runner="host:1")
    status.down(now - timedelta(minutes=2), "cannot reach pbx.example.com:5038: refused")
    status.up(now - timedelta(minutes=1))
    status.down(now - timedelta(seconds=50), "the PBX closed the connection")
    status.up(now - timedelta(seconds=40))
    status.events, status.tracked_calls = 12, 3
    async with components.engine.begin() as conn:
        await source_links.save_link(conn, status.row(now))
        await source_links.save_link(conn, status.row(now))  # replaced, not doubled

    response = await client.get("/callhook/v1/sources", headers=await world.auth("admin"))
    assert response.status_code == 200, response.text
    found = {s["name"]: s for s in response.json()["sources"]}
    assert found["kamailio"]["link"] is None
    link = found["asterisk"]["link"]
    assert link["state"] == "connected"
    assert (link["events_seen"], link["tracked_calls"], link["reconnects"]) == (12, 3, 1)
    assert link["last_error"] == "the PBX closed the connection"
    assert datetime.fromisoformat(link["since"]) == now - timedelta(seconds=40)

    stale = status.row(now - timedelta(minutes=5))
    async with components.engine.begin() as conn:
        await source_links.save_link(conn, stale)
    again = await client.get("/callhook/v1/sources", headers=await world.auth("admin"))
    (shown,) = [s for s in again.json()["sources"] if s["name"] == "asterisk"]
    assert shown["link"]["state"] == "unknown"

    org = await client.get("/callhook/v1/sources", headers=await world.auth("org"))
    assert error_of(org) == (403, "admin_only")
    assert error_of(await client.get("/callhook/v1/sources")) == (401, "access_denied")
