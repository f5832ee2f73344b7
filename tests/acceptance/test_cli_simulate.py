"""``callhook simulate call`` as a real process, against a recording stand-in of the ingest API."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from callhook import tls
from tests.acceptance.cli_process import CALLHOOK, Result, cli_env

pytestmark = pytest.mark.slow

WAIT = 60.0  # seconds; a limit on waiting for the process, not a claim about its speed
TOKEN = "src_test_token"
ACCEPTED = {"accepted": 1, "duplicates": 0, "deliveries": 0}


@dataclass
class Ingest:
    """Plays ``POST /callhook/v1/call-events``: checks the bearer token, records the events."""

    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            error = {"code": "access_denied", "message": "A valid source token is required."}
            return web.json_response({"error": error}, status=401)
        self.content_types.append(request.content_type)
        self.events.append(await request.json())
        return web.json_response(ACCEPTED, status=202)

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


async def serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Ingest]:
    ingest = Ingest()
    app = web.Application()
    app.router.add_post("/callhook/v1/call-events", ingest.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    ingest.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    try:
        yield ingest
    finally:
        await runner.cleanup()


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    async for server in serve():
        yield server


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


async def simulate(data_dir: Path, *args: str) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *CALLHOOK,
        "simulate",
        "call",
        "--duration",
        "0",
        *args,
        env=cli_env(data_dir),
        cwd=data_dir.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert b"Traceback" not in err, err
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def ok(data_dir: Path, ingest: Ingest, *args: str) -> Result:
    result = await simulate(data_dir, "--url", ingest.url, *args)
    assert result.code == 0, result.err
    assert result.err == ""
    return result


def check_common(events: list[dict[str, Any]]) -> str:
    """Every event has a fresh id, the one call id and an RFC 3339 time; the call id."""
    call_ids = {e["call_id"] for e in events}
    assert len(call_ids) == 1
    assert len({e["event_id"] for e in events}) == len(events)
    for event in events:
        assert re.fullmatch(r"[0-9a-f]{32}", event["event_id"])
        assert datetime.fromisoformat(event["time"]).utcoffset() is not None
    (call_id,) = call_ids
    assert call_id.startswith("sim-")
    return str(call_id)


def without_common(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    check_common(events)
    return [
        {k: v for k, v in e.items() if k not in ("event_id", "call_id", "time")} for e in events
    ]


async def test_direct_answered_call(data_dir: Path, ingest: Ingest) -> None:
    args = ["--from", "0003*201", "--to", "0003*210", "--answer", "--token", TOKEN]
    result = await ok(data_dir, ingest, *args)
    assert without_common(ingest.events) == [
        {
            "type": "call.started",
            "caller": {"extension": "0003*201"},
            "callee": {"extension": "0003*210"},
            "dialled": "210",
        },
        {"type": "call.answered", "extension": "0003*210"},
        {"type": "call.ended", "disposition": "ANSWER"},
    ]
    assert set(ingest.content_types) == {"application/json"}
    call_id = check_common(ingest.events)
    assert result.out.splitlines() == [
        f"call.started   {call_id}  202 accepted, 0 deliveries  0003*201 -> 0003*210",
        f"call.answered  {call_id}  202 accepted, 0 deliveries  0003*210",
        f"call.ended     {call_id}  202 accepted, 0 deliveries  ANSWER",
    ]


async def test_json_document(data_dir: Path, ingest: Ingest) -> None:
    args = ["--from", "0003*201", "--to", "0003*210", "--answer", "--token", TOKEN, "--json"]
    doc = json.loads((await ok(data_dir, ingest, *args)).out)
    assert doc["call_id"] == check_common(ingest.events)
    assert doc["events"] == [
        {
            "type": e["type"],
            "event_id": e["event_id"],
            "status": 202,
            "response": ACCEPTED,
            "event": e,
        }
        for e in ingest.events
    ]


async def test_unanswered_call(data_dir: Path, ingest: Ingest) -> None:
    args = ["--from", "0003*201", "--to", "0003*210", "--status", "busy", "--token", TOKEN]
    await ok(data_dir, ingest, *args)
    assert ingest.types == ["call.started", "call.ended"]
    assert ingest.events[1]["disposition"] == "BUSY"
    ingest.events.clear()
    await ok(data_dir, ingest, "--from", "0003*201", "--to", "0003*210", "--token", TOKEN)
    assert ingest.events[1]["disposition"] == "NOANSWER"


async def test_queue_first_agent_answers(data_dir: Path, ingest: Ingest) -> None:
    agents = "0003*210,0003*211,0003*212"
    args = ["--from", "0003*201", "--via-queue", "0003*300", "--agents", agents, "--answer"]
    await ok(data_dir, ingest, *args, "--token", TOKEN)
    assert without_common(ingest.events) == [
        {
            "type": "call.started",
            "caller": {"extension": "0003*201"},
            "callee": {"extension": "0003*300"},
            "dialled": "300",
        },
        {"type": "leg.ringing", "extension": "0003*210"},
        {"type": "leg.ringing", "extension": "0003*211"},
        {"type": "leg.ringing", "extension": "0003*212"},
        {"type": "call.answered", "extension": "0003*210"},
        {"type": "call.ended", "disposition": "ANSWER"},
    ]


async def test_external_caller_over_https_with_bootstrap_token(data_dir: Path) -> None:
    """With no --token and no --cacert: the token and the development certificate of the data
    directory, as `make serve` leaves them."""
    dev = tls.ensure_dev_certificate(data_dir, datetime.now(UTC))
    (data_dir / "bootstrap-credentials.json").write_text(json.dumps({"source_token": TOKEN}))
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(dev.cert_path, dev.key_path)
    async for ingest in serve(served):
        args = ["--from", "+15551234567", "--to", "0003*210", "--did", "+18005550100"]
        await ok(data_dir, ingest, *args, "--answer")
        assert without_common(ingest.events)[0] == {
            "type": "call.started",
            "caller": {"number": "+15551234567"},
            "callee": {"extension": "0003*210"},
            "did": "+18005550100",
            "dialled": "210",
        }
        assert ingest.types == ["call.started", "call.answered", "call.ended"]
        (dev.cert_path).unlink()  # now nothing vouches for the server
        failed = await simulate(data_dir, "--url", ingest.url, *args)
        assert failed.code == 1
        assert failed.err.startswith(f"error: the TLS certificate of {ingest.url} is not trusted")
        insecure = await simulate(data_dir, "--url", ingest.url, *args, "--insecure")
        assert insecure.code == 0, insecure.err
        assert insecure.err.startswith("warning: --insecure")


async def test_external_callee_answers(data_dir: Path, ingest: Ingest) -> None:
    args = ["--from", "0003*201", "--to", "+15557654321", "--answer", "--token", TOKEN]
    await ok(data_dir, ingest, *args)
    assert without_common(ingest.events) == [
        {
            "type": "call.started",
            "caller": {"extension": "0003*201"},
            "callee": {"number": "+15557654321"},
            "dialled": "+15557654321",
        },
        {"type": "call.answered"},
        {"type": "call.ended", "disposition": "ANSWER"},
    ]


async def test_no_token(data_dir: Path, ingest: Ingest) -> None:
    result = await simulate(data_dir, "--url", ingest.url, "--from", "0003*201", "--to", "210")
    assert result.code == 1
    assert result.err.startswith("error: no source token")
    assert "pass --token TOKEN, or create one with `callhook admin source create NAME`" in (
        result.err
    )
    assert ingest.events == []


async def test_server_down(data_dir: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    result = await simulate(data_dir, "--url", url, "--from", "1*2", "--to", "1*3", "--token", "t")
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith(f"error: cannot reach {url}: is `callhook serve` running?")


async def test_server_refuses_the_token(data_dir: Path, ingest: Ingest) -> None:
    args = ["--from", "0003*201", "--to", "0003*210", "--answer", "--token", "wrong"]
    result = await simulate(data_dir, "--url", ingest.url, *args)
    assert result.code == 1
    assert result.out == ""
    assert result.err == (
        f"error: call.started: {ingest.url}/callhook/v1/call-events answered 401: "
        "A valid source token is required. (access_denied)\n"
    )
    assert "wrong" not in result.err
    assert ingest.events == []


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "0003*201", "--to", "0003*210", "--answer", "--status", "BUSY"],
        ["--from", "0003*201", "--to", "0003*210", "--status", "ANSWER"],
        ["--from", "0003*201", "--via-queue", "0003*300"],
        ["--from", "0003*201"],
        ["--from", "3*", "--to", "0003*210"],
    ],
)
async def test_usage_errors(data_dir: Path, args: list[str]) -> None:
    result = await simulate(data_dir, *args, "--token", TOKEN)
    assert result.code == 2
    assert "Error:" in result.err
