"""The sender against real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from callhook import tls
from callhook.delivery.guard import parse_networks
from callhook.delivery.sender import SNIPPET_BYTES, Sender
from callhook.domain.payloads import (
    OutgoingRequest,
    Timeouts,
    build_request,
    encode_params,
    new_secret,
    sign_all,
)

LOCAL = parse_networks("127.0.0.1, ::1")
QUICK = Timeouts(connect=2.0, total=5.0)
SECRET = new_secret()
PARAMS = {
    "CallID": "1712.42-a/b",
    "CallerIDNum": "+40 721 000 111",
    "CallerIDName": "Ana Maria & Co",
    "CalledExtension": "0003*210",
    "CallStatus": "CALLING",
    "CallFlow": "IN",
}


@dataclass
class Seen:
    method: str
    raw_path: str
    body: bytes
    headers: dict[str, list[str]]


@dataclass
class Receiver:
    base: str
    seen: list[Seen] = field(default_factory=list)


async def _record(request: web.Request, receiver: Receiver) -> None:
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    receiver.seen.append(Seen(request.method, request.raw_path, await request.read(), headers))


def _app(receiver: Receiver) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        await _record(request, receiver)
        return web.Response(status=200, text="thanks")

    async def status(request: web.Request) -> web.Response:
        await _record(request, receiver)
        code = int(request.match_info["code"])
        headers = {"Retry-After": "7"} if code in (429, 503) else {}
        return web.Response(status=code, text=f"answer {code}", headers=headers)

    async def big(request: web.Request) -> web.Response:
        await _record(request, receiver)
        return web.Response(status=200, body=b"x" * 100_000)

    async def redirect(request: web.Request) -> web.Response:
        await _record(request, receiver)
        raise web.HTTPFound("/ok")

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/big", big)
    app.router.add_route("*", "/redirect", redirect)
    return app


@contextlib.asynccontextmanager
async def _serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(base="")
    runner = web.AppRunner(_app(receiver))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    receiver.base = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with _serve() as running:
        yield running


@pytest.fixture
async def sender() -> AsyncIterator[Sender]:
    async with Sender(LOCAL, "callhook/test") as running:
        yield running


def _request(method: int, url: str, seq: int = 1) -> tuple[OutgoingRequest, str, int]:
    payload = encode_params(PARAMS)
    now = int(time.time())
    signatures = sign_all([SECRET], f"msg_{seq}", now, payload)
    request = build_request(
        method,
        url,
        payload,
        webhook_id=f"msg_{seq}",
        timestamp=now,
        signatures=signatures,
        seq=seq,
        user_agent="callhook/0.1.0",
    )
    return request, payload, now


def _verify(seen: Seen, payload: str) -> None:
    headers = {name: values[0] for name, values in seen.headers.items()}
    Webhook(SECRET).verify(payload, headers, json_parse=False)


async def test_get_arrives_byte_exact_after_the_existing_query(
    receiver: Receiver, sender: Sender
) -> None:
    request, payload, now = _request(0, f"{receiver.base}/ok?token=a%2Fb&x=", seq=4)
    result = await sender.send(request, QUICK)
    assert (result.status, result.error_class, result.error) == (200, None, None)
    assert result.snippet == "thanks"
    assert result.latency_ms > 0
    [seen] = receiver.seen
    assert seen.method == "GET"
    assert seen.raw_path == f"/ok?token=a%2Fb&x=&{payload}"
    assert "CalledExtension=0003%2A210" in seen.raw_path
    assert "CallerIDName=Ana+Maria+%26+Co" in seen.raw_path
    assert seen.body == b""
    assert seen.headers["webhook-id"] == ["msg_4"]
    assert seen.headers["webhook-timestamp"] == [str(now)]
    assert seen.headers["x-callhook-seq"] == ["4"]
    assert seen.headers["user-agent"] == ["callhook/0.1.0"]
    assert "content-type" not in seen.headers
    _verify(seen, payload)


async def test_post_arrives_as_the_exact_form_body(receiver: Receiver, sender: Sender) -> None:
    request, payload, _ = _request(1, f"{receiver.base}/ok?keep=1")
    result = await sender.send(request, QUICK)
    assert result.status == 200
    [seen] = receiver.seen
    assert seen.method == "POST"
    assert seen.raw_path == "/ok?keep=1"
    assert seen.body == payload.encode()
    assert seen.headers["content-type"] == ["application/x-www-form-urlencoded"]
    assert seen.headers["content-length"] == [str(len(payload))]
    assert seen.headers["user-agent"] == ["callhook/0.1.0"]
    _verify(seen, payload)


@pytest.mark.parametrize(
    ("code", "retry_after"), [(204, None), (404, None), (500, None), (503, "7"), (429, "7")]
)
async def test_statuses_and_retry_after_are_reported(
    receiver: Receiver, sender: Sender, code: int, retry_after: str | None
) -> None:
    request, _, _ = _request(1, f"{receiver.base}/status/{code}")
    result = await sender.send(request, QUICK)
    assert (result.status, result.error_class, result.retry_after) == (code, None, retry_after)
    assert result.snippet == ("" if code == 204 else f"answer {code}")


async def test_redirects_are_not_followed(receiver: Receiver, sender: Sender) -> None:
    request, _, _ = _request(0, f"{receiver.base}/redirect")
    result = await sender.send(request, QUICK)
    assert result.status == 302
    assert [seen.raw_path.partition("?")[0] for seen in receiver.seen] == ["/redirect"]


async def test_snippet_is_capped_at_one_kib(receiver: Receiver, sender: Sender) -> None:
    request, _, _ = _request(0, f"{receiver.base}/big")
    result = await sender.send(request, QUICK)
    assert result.status == 200
    assert result.snippet == "x" * SNIPPET_BYTES
    # the connection was released: the next request works
    again = await sender.send(_request(0, f"{receiver.base}/ok")[0], QUICK)
    assert again.status == 200


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose connections are accepted by the kernel and never answered."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


async def test_a_silent_receiver_times_out(sender: Sender, black_hole: int) -> None:
    request, _, _ = _request(1, f"http://127.0.0.1:{black_hole}/hook")
    started = time.perf_counter()
    result = await sender.send(request, Timeouts(connect=0.5, total=0.5))
    assert time.perf_counter() - started < 5
    assert (result.status, result.error_class) == (None, "timeout")
    assert result.error is not None
    assert result.error.startswith("timed out after")


async def test_a_closed_port_is_a_connect_error(sender: Sender) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    result = await sender.send(_request(0, f"http://127.0.0.1:{port}/x")[0], QUICK)
    assert (result.status, result.error_class) == (None, "connect_error")
    assert result.error is not None
    assert str(port) in result.error


async def test_a_receiver_hanging_up_without_an_answer_is_a_protocol_error(sender: Sender) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await sender.send(_request(0, f"http://127.0.0.1:{port}/x")[0], QUICK)
    assert (result.status, result.error_class) == (None, "protocol_error")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_loopback_is_refused_unless_allowed(receiver: Receiver, host: str) -> None:
    port = receiver.base.rpartition(":")[2]
    async with Sender((), "callhook/test") as guarded:
        result = await guarded.send(_request(0, f"http://{host}:{port}/ok")[0], QUICK)
    assert (result.status, result.error_class) == (None, "refused_destination")
    assert result.error is not None
    assert "is a loopback address" in result.error
    assert "CALLHOOK_ALLOW_NETWORKS" in result.error
    assert receiver.seen == []


async def test_a_host_name_of_an_allowed_address_is_delivered(
    receiver: Receiver, sender: Sender
) -> None:
    port = receiver.base.rpartition(":")[2]
    result = await sender.send(_request(0, f"http://localhost:{port}/ok")[0], QUICK)
    assert result.status == 200


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/x", "http:///x", "http://[::1/x", "http://127.1/x", "http://2130706433/"],
)
async def test_invalid_urls(sender: Sender, url: str) -> None:
    result = await sender.send(_request(0, url)[0], QUICK)
    assert (result.status, result.error_class) == (None, "invalid_url")
    assert result.error is not None
    assert "CallID" not in result.error  # the message does not repeat the URL


async def test_tls_is_verified(tmp_path: Path) -> None:
    dev = tls.ensure_dev_certificate(tmp_path, datetime.now(UTC))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(dev.cert_path, dev.key_path)
    trusting = ssl.create_default_context(cafile=str(dev.cert_path))
    async with _serve(server_ctx) as receiver:
        request = _request(1, f"{receiver.base}/ok")[0]
        async with Sender(LOCAL, "callhook/test") as default:
            refused = await default.send(request, QUICK)
        async with Sender(LOCAL, "callhook/test", ssl_context=trusting) as custom:
            accepted = await custom.send(request, QUICK)
    assert (refused.status, refused.error_class) == (None, "tls_error")
    assert accepted.status == 200
    assert len(receiver.seen) == 1


async def test_send_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        await Sender().send(_request(0, "http://example.com/")[0], QUICK)
