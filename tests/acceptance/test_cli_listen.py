"""``callhook listen`` as a real process: it prints the requests it gets, checks signatures."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import signal
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from standardwebhooks import Webhook
from yarl import URL

from tests.acceptance.cli_process import CALLHOOK, cli_env

pytestmark = pytest.mark.slow

WAIT = 60.0  # seconds; a limit on waiting for the process, not a claim about its speed
FORM = "application/x-www-form-urlencoded"
DIAL_IN = [
    ("CallID", "c1"),
    ("CallerIDNum", "0003*201"),
    ("CallerIDName", "Ann Example & Co"),
    ("CalledExtension", "0003*210"),
    ("CallStatus", "CALLING"),
    ("CallFlow", "IN"),
]
HANGUP = [("CallID", "c1"), ("CallStatus", "ANSWER"), ("CallFlow", "IN"), ("Note", "")]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signed(secret: str, msg_id: str, payload: str, seq: int) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, payload),
        "X-Callhook-Seq": str(seq),
    }


class Listen:
    """``callhook listen --port 0 ...`` in a subprocess."""

    def __init__(self, proc: asyncio.subprocess.Process, as_json: bool) -> None:
        self.proc = proc
        self.as_json = as_json
        self.url = ""

    @classmethod
    async def start(cls, tmp_path: Path, *args: str) -> Listen:
        proc = await asyncio.create_subprocess_exec(
            *CALLHOOK,
            "listen",
            "--port",
            "0",
            *args,
            env=cli_env(tmp_path / "data"),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        listen = cls(proc, "--json" in args)
        first = await listen.line(err=listen.as_json)
        found = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+) \(Ctrl-C to stop\)", first)
        assert found, first
        listen.url = found.group(1)
        return listen

    async def line(self, err: bool = False) -> str:
        stream = self.proc.stderr if err else self.proc.stdout
        assert stream is not None
        return (await asyncio.wait_for(stream.readline(), WAIT)).decode().rstrip("\n")

    async def stop(self, sig: signal.Signals = signal.SIGINT) -> tuple[list[str], str]:
        """Stop it with ``sig``; the rest of its stdout (lines) and its stderr."""
        self.proc.send_signal(sig)
        out, err = await asyncio.wait_for(self.proc.communicate(), WAIT)
        assert self.proc.returncode == 0, err
        assert b"Traceback" not in err, err
        return out.decode().splitlines(), err.decode()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    params: list[tuple[str, str]],
    headers: dict[str, str],
) -> int:
    """GET with the parameters in the query string, POST with them as a form; the status."""
    payload = urlencode(params)
    if method == "GET":
        joiner = "&" if "?" in url else "?"
        target, body = URL(f"{url}{joiner}{payload}", encoded=True), None
        headers = dict(headers)
    else:
        target, body = URL(url, encoded=True), payload.encode()
        headers = {**headers, "Content-Type": FORM}
    async with session.request(method, target, data=body, headers=headers) as response:
        assert await response.read() == b""
        return response.status


async def exchange(
    session: aiohttp.ClientSession, base: str, secret: str, listen: Listen | None = None
) -> list[int]:
    """A signed GET, a signed POST, a POST signed with another secret, an unsigned GET."""
    statuses = []
    get = urlencode(DIAL_IN)
    statuses.append(
        await send(session, "GET", f"{base}/hooks/in", DIAL_IN, signed(secret, "msg_1", get, 1))
    )
    if listen is not None and not listen.as_json:
        # printed as it comes, not when the process ends
        assert "GET /hooks/in" in await listen.line()
    post = urlencode(HANGUP)
    statuses.append(
        await send(session, "POST", f"{base}/hooks/end", HANGUP, signed(secret, "msg_2", post, 2))
    )
    other = signed(new_secret(), "msg_3", post, 3)
    statuses.append(await send(session, "POST", f"{base}/hooks/end?k=v", HANGUP, other))
    statuses.append(await send(session, "GET", f"{base}/x", [("CallID", "c2")], {}))
    return statuses


async def test_text_output_with_secret(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    secret = new_secret()
    listen = await Listen.start(tmp_path, "--secret", secret)
    statuses = await exchange(session, listen.url, secret, listen)
    lines, err = await listen.stop()
    assert statuses == [204, 204, 204, 204]
    assert err == ""
    clock = r"\d\d:\d\d:\d\d"
    # the first header line was read already; its parameters follow
    assert lines[: len(DIAL_IN)] == [f"    {k} = {v}" for k, v in DIAL_IN]
    rest = lines[len(DIAL_IN) :]
    assert re.fullmatch(f"{clock}  POST /hooks/end  webhook-id msg_2  seq 2  signature ok", rest[0])
    assert rest[1:5] == [f"    {k} = {v}" for k, v in HANGUP]
    assert re.fullmatch(
        f"{clock}  POST /hooks/end\\?k=v  webhook-id msg_3  seq 3  "
        r"signature BAD \(no matching signature found\)",
        rest[5],
    )
    assert rest[6:10] == [f"    {k} = {v}" for k, v in HANGUP]
    assert re.fullmatch(
        f"{clock}  GET /x  signature BAD \\(missing required headers\\)", rest[10]
    ), rest[10]
    assert rest[11:] == ["    CallID = c2", "stopped (SIGINT)"]


async def test_json_lines(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    secret = new_secret()
    listen = await Listen.start(tmp_path, "--secret", secret, "--status", "200", "--json")
    statuses = await exchange(session, listen.url, secret)
    lines, err = await listen.stop(signal.SIGTERM)
    assert statuses == [200, 200, 200, 200]
    assert err == "stopped (SIGTERM)\n"
    docs: list[dict[str, Any]] = [json.loads(line) for line in lines]
    assert [(d["method"], d["path"], d["webhook_id"], d["seq"], d["signature"]) for d in docs] == [
        ("GET", "/hooks/in", "msg_1", 1, "ok"),
        ("POST", "/hooks/end", "msg_2", 2, "ok"),
        ("POST", "/hooks/end?k=v", "msg_3", 3, "bad"),
        ("GET", "/x", None, None, "bad"),
    ]
    assert list(docs[0]["params"].items()) == DIAL_IN  # in the order sent
    assert list(docs[1]["params"].items()) == HANGUP
    assert docs[3]["params"] == {"CallID": "c2"}
    for doc in docs:
        assert set(doc) == {"time", "method", "path", "params", "webhook_id", "seq", "signature"}
        assert datetime.fromisoformat(doc["time"]).tzinfo is not None


async def test_without_secret_nothing_is_checked(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    for args in ((), ("--json",)):
        listen = await Listen.start(tmp_path, *args)
        statuses = await exchange(session, listen.url, new_secret())
        lines, _err = await listen.stop()
        assert statuses == [204] * 4
        if args:
            assert {json.loads(line)["signature"] for line in lines} == {"unchecked"}
        else:
            headers = [line for line in lines if not line.startswith("    ")][:-1]
            assert len(headers) == 4
            assert all(h.endswith("signature not checked (pass --secret)") for h in headers)


async def test_get_to_a_url_with_its_own_query(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """callhook signs the query it appends, not the query the rule's URL already had."""
    secret = new_secret()
    listen = await Listen.start(tmp_path, "--secret", secret, "--json")
    appended = urlencode(DIAL_IN)
    headers = signed(secret, "msg_q", appended, 1)
    base = f"{listen.url}/hook?own=1&token=a%2Ab"
    assert await send(session, "GET", base, DIAL_IN, headers) == 204
    lines, _err = await listen.stop()
    (doc,) = [json.loads(line) for line in lines]
    assert doc["signature"] == "ok"
    assert list(doc["params"].items()) == [("own", "1"), ("token", "a*b"), *DIAL_IN]


async def test_port_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            *CALLHOOK,
            "listen",
            "--port",
            str(port),
            env=cli_env(tmp_path / "data"),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 2
    assert out == b""
    assert err.decode() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
