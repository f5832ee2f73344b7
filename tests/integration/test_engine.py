"""The engine end to end in one process: rules made through the UAPI, call events through the
ingest API, the worker delivering to a real HTTP receiver on 127.0.0.1 (both engines)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from callhook.config import Settings
from callhook.delivery.runner import run_worker
from callhook.sources.registry import SourceRegistry
from callhook.wiring import Components, build, build_worker
from tests.conftest import World, error_of
from tests.receiver import Receiver

ALICE, BOB, QUEUE = "0003*210", "0003*211", "0003*300"
_ids = itertools.count()


@pytest.fixture
async def components(database_url: str, tmp_path: Path) -> AsyncIterator[Components]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        allow_networks="127.0.0.1/32",
        retry_first_delay_ms=50,
        retry_max_delay=1,
        connect_timeout_ms=1000,
        timeout_ms=2000,
        rate_limit=0,
    )
    built = build(settings)
    yield built
    await built.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def worker(components: Components) -> AsyncIterator[None]:
    worker, _ = build_worker(components)
    components.ingest.wake = worker.wake
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(worker, stop, owns_database=False))
    yield
    stop.set()
    await task


@pytest.fixture
async def source(components: Components) -> dict[str, str]:
    made = await SourceRegistry(components.engine).create("pbx")
    return {"Authorization": f"Bearer {made.token}"}


async def rule(
    world: World, who: str, ext: str, etype: int, url: str, method: int = 1
) -> dict[str, Any]:
    assert world.client is not None
    response = await world.client.post(
        f"/uapi/extensions/@me/{ext}/phoneCallEvents",
        json={"type": etype, "url": url, "method": method, "note": "test"},
        headers=await world.auth(who),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def event(kind: str, call: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{next(_ids)}",
        "call_id": call,
        "type": kind,
        "time": "2026-11-27T18:00:00Z",
        **fields,
    }


def answered_call(call: str, caller: str = BOB, callee: str = ALICE) -> list[dict[str, Any]]:
    return [
        event("call.started", call, caller={"extension": caller}, callee={"extension": callee}),
        event("call.answered", call, extension=callee),
        event("call.ended", call, disposition="ANSWER"),
    ]


async def ingest(client: httpx.AsyncClient, source: dict[str, str], body: Any) -> dict[str, Any]:
    response = await client.post("/callhook/v1/call-events", json=body, headers=source)
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


async def settled(client: httpx.AsyncClient, auth: dict[str, str], call_id: str) -> dict[str, Any]:
    """The one delivery of ``call_id`` once it is no longer pending (or after 10 s)."""
    for _ in range(200):
        listed = await client.get(f"/callhook/v1/deliveries?call_id={call_id}", headers=auth)
        (delivery,) = listed.json()["deliveries"]
        if delivery["state"] != "pending":
            break
        await asyncio.sleep(0.05)
    found: dict[str, Any] = delivery
    return found


async def test_an_answered_call_reaches_the_receiver_exactly_as_voipnow_sends_it(
    world: World,
    client: httpx.AsyncClient,
    receiver: Receiver,
    source: dict[str, str],
    worker: None,
) -> None:
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, f"{receiver.url}/alice?crm=1")
    for etype in (1, 2, 4):
        await rule(world, "bob", BOB, etype, f"{receiver.url}/bob", method=0)
    result = await ingest(client, source, answered_call("call-1"))
    assert result == {"accepted": 3, "duplicates": 0, "deliveries": 6}
    got = await receiver.wait_for(6)
    alice = [r for r in got if r.path == "/alice"]
    bob = [r for r in got if r.path == "/bob"]
    assert [r.params["CallStatus"] for r in alice] == ["CALLING", "ANSWER", "ANSWER"]
    assert [r.params["CallStatus"] for r in bob] == ["CALLING", "ANSWER", "ANSWER"]
    assert all(r.method == "POST" for r in alice)
    assert all(r.method == "GET" for r in bob)
    # POST: form body, the URL's own query kept as is
    first = alice[0]
    assert first.query == "crm=1"
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    assert first.params == {
        "CallID": "call-1",
        "CallerIDNum": "211",
        "CalledExtension": ALICE,
        "CallerExtension": BOB,
        "CalledNumber": "210",
        "CallStatus": "CALLING",
        "CallFlow": "IN",
    }
    # GET: parameters in the query string, no body
    assert bob[0].body == ""
    assert bob[0].params["CallFlow"] == "OUT"
    assert bob[2].params["CallStatus"] == "ANSWER"
    # headers: Standard Webhooks signature with the rule's app key, per-call sequence, UA
    secret = (
        await client.get("/callhook/v1/signing-secret", headers=await world.auth("alice"))
    ).json()["secret"]
    for r in alice:
        Webhook(secret).verify(r.body, r.headers, json_parse=False)
        assert r.headers["user-agent"].startswith("callhook/")
    seqs = sorted(int(r.headers["x-callhook-seq"]) for r in got)
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert len({r.webhook_id for r in got}) == 6


async def test_a_resent_event_changes_nothing(
    world: World, client: httpx.AsyncClient, receiver: Receiver, source: dict[str, str]
) -> None:
    await rule(world, "alice", ALICE, 0, f"{receiver.url}/a")
    call = answered_call("call-2")
    assert (await ingest(client, source, call[0]))["deliveries"] == 1
    again = await ingest(client, source, call[0])
    assert again == {"accepted": 0, "duplicates": 1, "deliveries": 0}


async def test_an_end_before_its_start_is_held_then_applied_in_order(
    world: World,
    client: httpx.AsyncClient,
    receiver: Receiver,
    source: dict[str, str],
    worker: None,
) -> None:
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, f"{receiver.url}/a")
    start, answer, end = answered_call("call-3")
    assert (await ingest(client, source, [end, answer]))["deliveries"] == 0
    assert (await ingest(client, source, start))["deliveries"] == 3
    got = await receiver.wait_for(3)
    assert [r.params["CallStatus"] for r in got] == ["CALLING", "ANSWER", "ANSWER"]
    assert [int(r.headers["x-callhook-seq"]) for r in got] == [1, 2, 3]


async def test_retries_then_delivers_and_the_log_shows_every_attempt(
    world: World,
    client: httpx.AsyncClient,
    receiver: Receiver,
    source: dict[str, str],
    worker: None,
) -> None:
    answers = iter([503, 500, 204])
    receiver.answer = lambda _r: next(answers)
    await rule(world, "alice", ALICE, 2, f"{receiver.url}/flaky")
    start, _, end = answered_call("call-4")
    await ingest(client, source, [start, end])
    got = await receiver.wait_for(3)
    assert len({r.webhook_id for r in got}) == 1  # one delivery, the same id on each attempt
    auth = await world.auth("alice")
    delivery = await settled(client, auth, "call-4")
    assert delivery["state"] == "delivered"
    assert delivery["attempts"] == 3
    shown = (await client.get(f"/callhook/v1/deliveries/{delivery['id']}", headers=auth)).json()
    assert [a["status"] for a in shown["attempt_log"]] == [503, 500, 204]
    assert shown["attempt_log"][0]["response"] == "nope"
    assert shown["attempt_log"][0]["host"] == f"127.0.0.1:{receiver.port}"


async def test_a_4xx_is_final_and_replay_sends_it_again(
    world: World,
    client: httpx.AsyncClient,
    receiver: Receiver,
    source: dict[str, str],
    worker: None,
) -> None:
    answers = iter([404, 204])
    receiver.answer = lambda _r: next(answers)
    await rule(world, "alice", ALICE, 2, f"{receiver.url}/gone")
    start, _, end = answered_call("call-5")
    await ingest(client, source, [start, end])
    await receiver.wait_for(1)
    auth = await world.auth("alice")
    delivery = await settled(client, auth, "call-5")
    assert delivery["state"] == "failed"
    assert "404" in delivery["last_error"]
    replayed = await client.post(f"/callhook/v1/deliveries/{delivery['id']}/replay", headers=auth)
    assert replayed.status_code == 202
    assert replayed.json()["replayed"] is True
    got = await receiver.wait_for(2)
    assert got[0].webhook_id == got[1].webhook_id


async def test_each_account_sees_only_its_subtree(
    world: World, client: httpx.AsyncClient, receiver: Receiver, source: dict[str, str]
) -> None:
    await rule(world, "alice", ALICE, 0, f"{receiver.url}/a")
    await ingest(client, source, answered_call("call-6")[0])
    for who, visible in (("alice", 1), ("org", 1), ("sp", 1), ("admin", 1), ("bob", 0)):
        listed = await client.get("/callhook/v1/deliveries", headers=await world.auth(who))
        assert len(listed.json()["deliveries"]) == visible, who
    (delivery,) = (
        await client.get("/callhook/v1/deliveries", headers=await world.auth("alice"))
    ).json()["deliveries"]
    hidden = await client.get(
        f"/callhook/v1/deliveries/{delivery['id']}", headers=await world.auth("carol")
    )
    assert error_of(hidden) == (404, "not_found")


async def test_refused_destinations(world: World, client: httpx.AsyncClient) -> None:
    auth = await world.auth("alice")
    for url in ("http://127.0.0.2/x", "http://169.254.169.254/latest", "http://10.1.2.3/"):
        response = await client.post(
            f"/uapi/extensions/@me/{ALICE}/phoneCallEvents",
            json={"type": 0, "url": url},
            headers=auth,
        )
        assert error_of(response) == (400, "pce_url_invalid"), url


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "call.started"}, "event_id"),
        ([{"type": "nope", "event_id": "1", "call_id": "c", "time": "x"}], "[0].type"),
        ({"type": "call.ended", "event_id": "1", "call_id": "c", "time": "now"}, "time"),
        ([], "body"),
    ],
)
async def test_invalid_events_get_a_400_naming_the_field(
    client: httpx.AsyncClient, source: dict[str, str], body: Any, field: str
) -> None:
    response = await client.post("/callhook/v1/call-events", json=body, headers=source)
    assert error_of(response) == (400, "call_event_invalid")
    assert response.json()["error"]["message"].startswith(field)


async def test_ingest_needs_a_source_token(client: httpx.AsyncClient, world: World) -> None:
    call = answered_call("c")[0]
    missing = await client.post("/callhook/v1/call-events", json=call)
    assert error_of(missing) == (401, "access_denied")
    # an app's UAPI token is not a source token
    wrong = await client.post(
        "/callhook/v1/call-events", json=call, headers=await world.auth("admin")
    )
    assert error_of(wrong) == (401, "access_denied")


async def test_metrics(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    for name in (
        "callhook_queue_depth",
        "callhook_open_breakers",
        "callhook_attempt_latency_seconds_bucket",
    ):
        assert name in response.text


async def test_an_address_refused_at_send_time_fails_with_the_reason_recorded(
    world: World,
    client: httpx.AsyncClient,
    components: Components,
    receiver: Receiver,
    source: dict[str, str],
) -> None:
    # the API allowed 127.0.0.1 when the rule was made; this worker's allow-list no longer does
    await rule(world, "alice", ALICE, 0, f"{receiver.url}/a")
    strict = build(dataclasses.replace(components.settings, allow_networks=""))
    worker, _ = build_worker(strict)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(worker, stop, owns_database=False))
    try:
        await ingest(client, source, answered_call("call-7")[0])
        auth = await world.auth("alice")
        delivery = await settled(client, auth, "call-7")
    finally:
        stop.set()
        await task
        await strict.close()
    assert delivery["state"] == "failed"
    assert "loopback" in delivery["last_error"]
    assert "CALLHOOK_ALLOW_NETWORKS" in delivery["last_error"]
    assert receiver.requests == []
    shown = (await client.get(f"/callhook/v1/deliveries/{delivery['id']}", headers=auth)).json()
    assert shown["attempt_log"][0]["error_class"] == "refused_destination"


async def test_concurrent_requests_each_get_their_own_answer(
    world: World, client: httpx.AsyncClient, receiver: Receiver, source: dict[str, str]
) -> None:
    """Requests that arrive together are committed together (group commit); each still gets
    the counts of its own events, and a re-sent one is a duplicate, whichever group it joins."""
    await rule(world, "alice", ALICE, 0, f"{receiver.url}/a")
    calls = [answered_call(f"group-{i}") for i in range(40)]
    answers = await asyncio.gather(*(ingest(client, source, c) for c in calls))
    assert answers == [{"accepted": 3, "duplicates": 0, "deliveries": 1}] * 40
    again = await asyncio.gather(*(ingest(client, source, c[:1]) for c in calls[:10]))
    assert again == [{"accepted": 0, "duplicates": 1, "deliveries": 0}] * 10
    auth = await world.auth("alice")
    listed = (await client.get("/callhook/v1/deliveries?limit=500", headers=auth)).json()
    assert len(listed["deliveries"]) == 40


@dataclasses.dataclass
class SlowReceiver:
    """Answers 204 after ``delay`` seconds; counts the requests in flight (shared ``load``)."""

    load: dict[str, int]
    name: str
    delay: float = 0.02
    arrived: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)
    runner: Any = None
    url: str = ""

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        self.load[self.name] = self.load.get(self.name, 0) + 1
        self.load["all"] = self.load.get("all", 0) + 1
        for key in (self.name, "all"):
            self.load[f"most {key}"] = max(self.load.get(f"most {key}", 0), self.load[key])
        try:
            await asyncio.sleep(self.delay)
            form = await request.post()
            seq = int(request.headers["X-Callhook-Seq"])
            self.arrived.append((str(form["CallID"]), seq, request.headers["webhook-id"]))
        finally:
            self.load[self.name] -= 1
            self.load["all"] -= 1
        return web.Response(status=204)

    async def start(self) -> SlowReceiver:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self


async def test_senders_keep_the_limits_per_receiver_and_in_all_and_the_order_per_call(
    world: World, client: httpx.AsyncClient, components: Components, source: dict[str, str]
) -> None:
    """Two receivers, 2 requests in flight to each at most and 3 in all: both limits are
    reached and kept, every delivery arrives once, and each call's in order per receiver."""
    load: dict[str, int] = {}
    one, two = await SlowReceiver(load, "one").start(), await SlowReceiver(load, "two").start()
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, f"{one.url}/alice")
    for etype in (1, 2, 4):
        await rule(world, "bob", BOB, etype, f"{two.url}/bob")
    worker, _ = build_worker(components)
    worker.options = dataclasses.replace(worker.options, concurrency=3, per_host=2)
    components.ingest.wake = worker.wake
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(worker, stop, owns_database=False))
    try:
        for n in range(0, 20, 5):
            batch = [e for i in range(n, n + 5) for e in answered_call(f"lanes-{i}")]
            await ingest(client, source, batch)
        for _ in range(500):
            if len(one.arrived) + len(two.arrived) >= 120:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        await one.runner.cleanup()
        await two.runner.cleanup()
    assert len(one.arrived) == len(two.arrived) == 60
    assert len({wid for _, _, wid in one.arrived + two.arrived}) == 120
    assert load["most one"] == load["most two"] == 2
    assert load["most all"] == 3
    for receiver in (one, two):
        for i in range(20):
            seqs = [seq for call, seq, _ in receiver.arrived if call == f"lanes-{i}"]
            assert len(seqs) == 3
            assert seqs == sorted(seqs)
