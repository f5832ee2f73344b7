"""The lean HTTP/1.1 client (``delivery/http1.py``) against receivers on 127.0.0.1 whose
answers are written by hand, byte for byte, so the test decides exactly what goes on the wire:
kept-alive connections, receivers closing them, chunked and cut bodies, 1xx answers, garbage,
long bodies, idle expiry, per-host limits and receivers talking out of turn.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from yarl import URL

from callhook import tls
from callhook.delivery import http1
from callhook.delivery.guard import GuardedResolver, parse_networks
from callhook.delivery.sender import AttemptResult, Sender
from callhook.domain.payloads import OutgoingRequest, Timeouts

LOCAL = parse_networks("127.0.0.1, ::1")
QUICK = Timeouts(connect=2.0, total=5.0)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CUT = "reading the response body: the receiver closed the connection before the end of the body"


# --- a receiver that writes its answers by hand ----------------------------------------------


@dataclass
class Wire:
    """What a hand-written receiver saw."""

    port: int = 0
    #: connections accepted so far
    connections: int = 0
    #: every request read, whole (head and body), in order, with its connection's number
    requests: list[tuple[int, bytes]] = field(default_factory=list)
    #: numbers of the connections the client closed (end of file where a request could start)
    ended: list[int] = field(default_factory=list)
    #: set when the test is over: connections ended by the receiver's own teardown are not
    #: counted in ``ended``
    stopping: bool = False


class Peer:
    """One accepted connection, as the handler sees it."""

    def __init__(
        self, wire: Wire, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.wire = wire
        self.number = number
        self.reader = reader
        self.writer = writer

    async def request(self) -> bytes | None:
        """The next whole request, or None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            if not self.wire.stopping:
                self.wire.ended.append(self.number)
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        self.wire.requests.append((self.number, head + body))
        return head + body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_bytewise(self, data: bytes) -> None:
        """``data`` one byte per write, the loop turning between them."""
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await self.writer.drain()
            await asyncio.sleep(0)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


Handler = Callable[[Peer], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(
    handler: Handler, host: str = "127.0.0.1", tls_context: ssl.SSLContext | None = None
) -> AsyncIterator[Wire]:
    """A receiver running ``handler`` for each connection; everything closed on exit."""
    wire = Wire()
    peers: list[Peer] = []
    tasks: list[asyncio.Task[None]] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        wire.connections += 1
        peer = Peer(wire, wire.connections, reader, writer)
        peers.append(peer)
        try:
            await handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-answer: its business
        finally:
            writer.close()

    server = await asyncio.start_server(accept, host, 0, ssl=tls_context)
    wire.port = server.sockets[0].getsockname()[1]
    try:
        yield wire
    finally:
        wire.stopping = True
        server.close()
        for peer in peers:
            peer.writer.close()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:
                task.cancel()
        await server.wait_closed()


def keep_answering(*answers: bytes) -> Handler:
    """Answers each request on a connection with the next of ``answers`` (the last repeats)."""

    async def handler(peer: Peer) -> None:
        turn = 0
        while await peer.request() is not None:
            await peer.send(answers[min(turn, len(answers) - 1)])
            turn += 1

    return handler


# --- the client side ------------------------------------------------------------------------


@pytest.fixture
async def sender() -> AsyncIterator[Sender]:
    async with Sender(LOCAL, "callhook/test") as running:
        yield running


def url(wire: Wire, path: str = "/hook") -> str:
    return f"http://127.0.0.1:{wire.port}{path}"


async def get(sender: Sender, wire: Wire, path: str = "/hook") -> AttemptResult:
    request = OutgoingRequest("GET", url(wire, path), None, (("User-Agent", "callhook/test"),))
    return await sender.send(request, QUICK)


@contextlib.asynccontextmanager
async def client(*, limit: int = 10, limit_per_host: int = 0) -> AsyncIterator[http1.Client]:
    resolver = GuardedResolver(LOCAL)
    running = http1.Client(
        resolver, ssl.create_default_context(), limit=limit, limit_per_host=limit_per_host
    )
    try:
        yield running
    finally:
        await running.close()
        await resolver.close()


def where(wire: Wire, path: str = "/hook") -> http1.Target:
    return http1.target(URL(url(wire, path), encoded=True))


async def settle() -> None:
    """Time for the client's loop to notice what the receiver did (a FIN, stray bytes)."""
    await asyncio.sleep(0.05)


# --- 1. keep-alive ----------------------------------------------------------------------------


async def test_two_requests_share_one_connection(sender: Sender) -> None:
    async with serve(keep_answering(OK)) as wire:
        first = await get(sender, wire, "/one")
        second = await get(sender, wire, "/two")
    assert (first.status, first.error, first.snippet) == (200, None, "ok")
    assert (second.status, second.error, second.snippet) == (200, None, "ok")
    assert wire.connections == 1
    assert [(number, raw.split(b" ")[1]) for number, raw in wire.requests] == [
        (1, b"/one"),
        (1, b"/two"),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_an_answer_that_does_not_keep_alive_gets_a_new_connection(
    sender: Sender, answer: bytes
) -> None:
    # the receiver says so but leaves its end open: the client must honour the header itself
    async with serve(keep_answering(answer)) as wire:
        first = await get(sender, wire)
        second = await get(sender, wire)
        await settle()
    assert (first.status, second.status) == (200, 200)
    assert wire.connections == 2
    assert [number for number, _ in wire.requests] == [1, 2]
    assert 1 in wire.ended  # the client closed the first connection


async def test_an_http_1_0_answer_with_keep_alive_keeps_the_connection(sender: Sender) -> None:
    answer = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    async with serve(keep_answering(answer)) as wire:
        results = [await get(sender, wire) for _ in range(3)]
    assert [result.status for result in results] == [200, 200, 200]
    assert wire.connections == 1


async def test_a_tls_connection_is_kept_alive(tmp_path: Path) -> None:
    dev = tls.ensure_dev_certificate(tmp_path, datetime.now(UTC))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(dev.cert_path, dev.key_path)
    trusting = ssl.create_default_context(cafile=str(dev.cert_path))
    async with (
        serve(keep_answering(OK), tls_context=server_ctx) as wire,
        Sender(LOCAL, "callhook/test", ssl_context=trusting) as tls_sender,
    ):
        target = f"https://localhost:{wire.port}/hook"
        results = [
            await tls_sender.send(OutgoingRequest("GET", target, None, ()), QUICK) for _ in range(2)
        ]
    assert [(result.status, result.error) for result in results] == [(200, None), (200, None)]
    assert wire.connections == 1


# --- 2. kept connections the receiver closes ------------------------------------------------


async def test_a_kept_connection_closed_while_idle_is_replaced(sender: Sender) -> None:
    async def answer_once_then_close(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(OK)  # keep-alive by default, then gone anyway
            await peer.close()

    async with serve(answer_once_then_close) as wire:
        first = await get(sender, wire)
        await settle()
        second = await get(sender, wire)
    assert (first.status, second.status) == (200, 200)
    assert wire.connections == 2
    assert [number for number, _ in wire.requests] == [1, 2]


async def test_a_kept_connection_closed_as_the_answer_went_out_is_replaced(
    sender: Sender,
) -> None:
    # no pause: the next request may go out on the connection the receiver is closing
    async def answer_once_then_close(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(OK)
            await peer.close()

    async with serve(answer_once_then_close) as wire:
        results = [await get(sender, wire) for _ in range(3)]
    assert [(result.status, result.error_class) for result in results] == [(200, None)] * 3
    assert wire.connections == 3


async def test_a_reused_connection_closed_without_an_answer_is_retried_once(
    sender: Sender,
) -> None:
    async def handler(peer: Peer) -> None:
        if peer.number == 1:
            await peer.request()
            await peer.send(OK)
            await peer.request()  # reads the second request, then hangs up without answering
            await peer.close()
        else:
            await keep_answering(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nagain")(peer)

    async with serve(handler) as wire:
        first = await get(sender, wire, "/one")
        second = await get(sender, wire, "/two")
        third = await get(sender, wire, "/three")
    assert (first.status, first.snippet) == (200, "ok")
    assert (second.status, second.error_class, second.snippet) == (201, None, "again")
    assert (third.status, third.snippet) == (201, "again")  # the new connection is kept
    assert wire.connections == 2
    assert [(number, raw.split(b" ")[1]) for number, raw in wire.requests] == [
        (1, b"/one"),
        (1, b"/two"),
        (2, b"/two"),
        (2, b"/three"),
    ]
    # the retry sends the same bytes again
    assert wire.requests[1][1] == wire.requests[2][1]


async def test_the_retry_is_made_once_only(sender: Sender) -> None:
    async def handler(peer: Peer) -> None:
        if peer.number == 1:
            await peer.request()
            await peer.send(OK)
        await peer.request()
        await peer.close()

    async with serve(handler) as wire:
        first = await get(sender, wire)
        second = await get(sender, wire)
    assert first.status == 200
    assert (second.status, second.error_class) == (None, "protocol_error")
    assert second.error == "the receiver closed the connection without answering"
    assert wire.connections == 2
    assert [number for number, _ in wire.requests] == [1, 1, 2]


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried(
    sender: Sender,
) -> None:
    async def hang_up(peer: Peer) -> None:
        await peer.request()
        await peer.close()

    async with serve(hang_up) as wire:
        result = await get(sender, wire)
    assert (result.status, result.error_class) == (None, "protocol_error")
    assert result.error == "the receiver closed the connection without answering"
    assert wire.connections == 1
    assert len(wire.requests) == 1


async def test_a_reused_connection_cut_inside_the_answer_head_is_not_retried(
    sender: Sender,
) -> None:
    async def handler(peer: Peer) -> None:
        if peer.number == 1:
            await peer.request()
            await peer.send(OK)
            await peer.request()
            await peer.send(b"HTTP/1.1 500 Internal Server Error\r\nContent-Le")
            await peer.close()
        else:
            await keep_answering(OK)(peer)

    async with serve(handler) as wire:
        await get(sender, wire)
        second = await get(sender, wire)
    assert (second.status, second.error_class) == (None, "protocol_error")
    assert len(wire.requests) == 2  # the receiver got the second request once


# --- 3. bodies: chunked, cut, close-delimited ----------------------------------------------


CHUNKED = (
    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\nRetry-After: 30\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "byte-by-byte"])
async def test_a_chunked_answer_is_read_and_the_connection_kept(
    sender: Sender, bytewise: bool
) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await (peer.send_bytewise if bytewise else peer.send)(CHUNKED)

    async with serve(handler) as wire:
        first = await get(sender, wire)
        second = await get(sender, wire)
    for result in (first, second):
        assert (result.status, result.error, result.snippet) == (202, None, "hello world")
        assert result.retry_after == "30"
    assert wire.connections == 1


@pytest.mark.parametrize(
    ("answer", "snippet"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "hello"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "hel"),
        (b"HTTP/1.1 503 Busy\r\nContent-Length: 100\r\nRetry-After: 9\r\n\r\npartial", "partial"),
    ],
    ids=["chunked-between-chunks", "chunked-inside-a-chunk", "content-length"],
)
async def test_a_body_cut_short_keeps_the_status_and_says_so(
    sender: Sender, answer: bytes, snippet: str
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await peer.close()

    async with serve(handler) as wire:
        result = await get(sender, wire)
        again = await get(sender, wire)  # a new connection; the cut one is not kept
    assert result.status == int(answer.split(b" ")[1])
    assert result.error_class is None
    assert result.error == CUT
    assert result.snippet == snippet
    assert again.error == CUT
    assert wire.connections == 2


async def test_a_close_delimited_body_is_whole_at_the_close(sender: Sender) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await peer.close()

    async with serve(handler) as wire:
        result = await get(sender, wire)
        again = await get(sender, wire)
    assert (result.status, result.error, result.snippet) == (200, None, "until the end")
    assert again.status == 200
    assert wire.connections == 2


async def test_a_body_less_answer_keeps_the_connection(sender: Sender) -> None:
    answers = (
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )
    async with serve(keep_answering(*answers)) as wire:
        results = [await get(sender, wire) for _ in answers]
    assert [(result.status, result.snippet, result.error) for result in results] == [
        (204, "", None),
        (304, "", None),
        (200, "", None),
    ]
    assert wire.connections == 1


async def test_a_body_that_stalls_keeps_the_status(sender: Sender) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await peer.request()  # then nothing, until the client goes

    async with serve(handler) as wire:
        request = OutgoingRequest("GET", url(wire), None, ())
        result = await sender.send(request, Timeouts(connect=1.0, total=0.3))
    assert result.status == 200
    assert result.error is not None
    assert result.error.startswith("reading the response body:")
    assert result.snippet == "partial"


# --- 4. 1xx answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
    ],
    ids=["100", "103", "100-then-102"],
)
@pytest.mark.parametrize("apart", [False, True], ids=["one-write", "two-writes"])
async def test_interim_answers_are_skipped(sender: Sender, interim: bytes, apart: bool) -> None:
    final = b"HTTP/1.1 200 OK\r\nRetry-After: 5\r\nContent-Length: 4\r\n\r\ndone"

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            if apart:
                await peer.send(interim)
                await asyncio.sleep(0.01)
                await peer.send(final)
            else:
                await peer.send(interim + final)

    async with serve(handler) as wire:
        first = await get(sender, wire)
        second = await get(sender, wire)
    for result in (first, second):
        assert (result.status, result.error, result.snippet) == (200, None, "done")
        assert result.retry_after == "5"
    assert wire.connections == 1


async def test_a_close_after_an_interim_answer_is_a_protocol_error(sender: Sender) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await peer.close()

    async with serve(handler) as wire:
        result = await get(sender, wire)
    assert (result.status, result.error_class) == (None, "protocol_error")
    assert len(wire.requests) == 1


# --- 5. answers that are not HTTP -------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"hello\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 abc Nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
    ],
    ids=["text", "ssh", "bad-status", "length-and-chunked", "bad-length"],
)
async def test_garbage_is_a_protocol_error_in_one_line(sender: Sender, answer: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await peer.request()  # holds the connection open: the client must give up by itself

    async with serve(handler) as wire:
        result = await get(sender, wire)
        again = await get(sender, wire)
        await settle()
    assert (result.status, result.error_class) == (None, "protocol_error")
    assert result.error is not None
    assert result.error.startswith("the receiver's answer is not HTTP (")
    assert "Traceback" not in result.error
    assert "\n" not in result.error
    assert again.error_class == "protocol_error"
    assert wire.connections == 2  # a connection that spoke garbage is not used again
    assert 1 in wire.ended


@pytest.mark.parametrize(
    "headers",
    [
        b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
        b"Upgrade: websocket\r\n",
    ],
    ids=["connection-upgrade", "bare-101"],
)
async def test_switching_protocols_is_a_protocol_error(sender: Sender, headers: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 101 Switching Protocols\r\n" + headers + b"\r\n")
        await peer.request()

    async with serve(handler) as wire:
        result = await get(sender, wire)
        assert (result.status, result.error_class) == (None, "protocol_error")
    assert result.error == "the receiver switched protocols"


# --- 6. long bodies -------------------------------------------------------------------------


def sized(length: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length + b"y" * length


async def test_a_huge_body_gives_the_snippet_and_closes_the_connection(sender: Sender) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(sized(4 << 20))

    async with serve(handler) as wire:
        first = await get(sender, wire)
        second = await get(sender, wire)
        await settle()
    for result in (first, second):
        assert (result.status, result.error_class, result.error) == (200, None, None)
        assert result.snippet == "y" * http1.SNIPPET_BYTES
    assert wire.connections == 2
    assert [number for number, _ in wire.requests] == [1, 2]


@pytest.mark.parametrize(
    ("length", "connections"),
    [
        (100_000, 1),
        (http1.SNIPPET_BYTES + http1.DRAIN_BYTES, 1),
        (http1.SNIPPET_BYTES + http1.DRAIN_BYTES + 1, 2),
    ],
    ids=["drained", "drained-to-the-limit", "one-byte-over"],
)
async def test_bodies_up_to_the_drain_limit_keep_the_connection(
    sender: Sender, length: int, connections: int
) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(sized(length))

    async with serve(handler) as wire:
        results = [await get(sender, wire) for _ in range(2)]
    for result in results:
        assert (result.status, result.error) == (200, None)
        assert len(result.snippet) == http1.SNIPPET_BYTES
    assert wire.connections == connections


async def test_a_huge_chunked_body_closes_the_connection(sender: Sender) -> None:
    chunk = b"%x\r\n" % 65536 + b"z" * 65536 + b"\r\n"

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(40):  # 2.5 MiB
                await peer.send(chunk)
            await peer.send(b"0\r\n\r\n")

    async with serve(handler) as wire:
        first = await get(sender, wire)
        second = await get(sender, wire)
    for result in (first, second):
        assert (result.status, result.error) == (200, None)
        assert result.snippet == "z" * http1.SNIPPET_BYTES
    assert wire.connections == 2


# --- 7. the request's bytes (no network) ---------------------------------------------------


def bytes_of(raw_url: str, method: str = "GET", body: bytes | None = None) -> bytes:
    headers = [("User-Agent", "callhook/test")]
    return http1.request_bytes(method, http1.target(URL(raw_url, encoded=True)), headers, body)


def head_lines(data: bytes) -> list[bytes]:
    head, sep, _ = data.partition(b"\r\n\r\n")
    assert sep
    return head.split(b"\r\n")


@pytest.mark.parametrize(
    ("raw_url", "host"),
    [
        ("http://example.com/hook", b"example.com"),
        ("http://example.com:80/hook", b"example.com"),
        ("http://example.com:8080/hook", b"example.com:8080"),
        ("https://example.com:443/hook", b"example.com"),
        ("https://example.com/hook", b"example.com"),
        ("https://example.com:8443/hook", b"example.com:8443"),
        ("https://example.com:80/hook", b"example.com:80"),
        ("http://example.com:443/hook", b"example.com:443"),
        ("http://127.0.0.1:9000/hook", b"127.0.0.1:9000"),
        ("http://[::1]/hook", b"[::1]"),
        ("http://[::1]:80/hook", b"[::1]"),
        ("http://[2001:db8::7]:8080/hook", b"[2001:db8::7]:8080"),
        ("http://b\u00fccher.example/hook", b"xn--bcher-kva.example"),
    ],
)
def test_the_host_header(raw_url: str, host: bytes) -> None:
    lines = head_lines(bytes_of(raw_url))
    assert lines[0] == b"GET /hook HTTP/1.1"
    assert lines[1] == b"Host: " + host
    assert [line for line in lines if line.lower().startswith(b"host:")] == [lines[1]]


def test_the_target_of_a_url() -> None:
    plain = http1.target(URL("http://example.com/a/b?x=1&y=%2F#frag", encoded=True))
    assert (plain.host, plain.port, plain.tls, plain.literal) == ("example.com", 80, False, False)
    assert plain.path == "/a/b?x=1&y=%2F"  # the query as given, the fragment never sent
    assert plain.key == ("http", "example.com", 80)
    v6 = http1.target(URL("https://[::1]:8443/", encoded=True))
    assert (v6.host, v6.port, v6.tls, v6.literal) == ("::1", 8443, True, True)
    assert v6.authority == "[::1]:8443"
    assert http1.target(URL("http://example.com", encoded=True)).path == "/"
    assert http1.target(URL("http://example.com?q=1", encoded=True)).path == "/?q=1"


def test_the_get_request_exactly() -> None:
    assert bytes_of("http://example.com:8080/hook?a=1") == (
        b"GET /hook?a=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: callhook/test\r\n\r\n"
    )


def test_a_get_has_no_content_length_and_a_post_has_its_body_length() -> None:
    get_lines = head_lines(bytes_of("http://example.com/hook"))
    assert not any(line.lower().startswith(b"content-length") for line in get_lines)
    body = "CallID=1&Name=Ana Mar\u00eda".encode()  # bytes, not characters, are counted
    post = bytes_of("http://example.com/hook", "POST", body)
    assert post.startswith(b"POST /hook HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 24\r\n" in post
    assert post.endswith(b"\r\n\r\n" + body)
    empty = bytes_of("http://example.com/hook", "POST", b"")
    assert empty.endswith(b"\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize(
    ("raw_url", "pair"),
    [
        ("http://alice:s3cret@example.com/hook", b"alice:s3cret"),
        ("http://alice@example.com/hook", b"alice:"),
        ("http://al%40ice:p%3Ass%20w@example.com/hook", b"al@ice:p:ss w"),
        ("https://alice:pw@[::1]:8443/hook", b"alice:pw"),
    ],
)
def test_userinfo_becomes_basic_authorization(raw_url: str, pair: bytes) -> None:
    data = bytes_of(raw_url)
    lines = head_lines(data)
    assert lines[0] == b"GET /hook HTTP/1.1"
    assert b"Authorization: Basic " + base64.b64encode(pair) in lines
    assert b"@" not in lines[1]  # nor in the Host header
    assert b"alice" not in data.replace(base64.b64encode(pair), b"")


def test_userinfo_with_an_empty_user_still_authorizes() -> None:
    lines = head_lines(bytes_of("http://:pw@example.com/hook"))
    assert b"Authorization: Basic " + base64.b64encode(b":pw") in lines


async def test_the_receiver_gets_the_bytes_as_built(sender: Sender) -> None:
    async with serve(keep_answering(OK)) as wire:
        body = b"CallID=1&x=%2F"
        request = OutgoingRequest(
            "POST",
            f"http://u:p@127.0.0.1:{wire.port}/hook?k=1",
            body,
            (("Content-Type", "application/x-www-form-urlencoded"),),
        )
        result = await sender.send(request, QUICK)
    assert result.status == 200
    [(_, raw)] = wire.requests
    assert raw == (
        b"POST /hook?k=1 HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Authorization: Basic dTpw\r\n"
        b"Content-Length: 14\r\n\r\nCallID=1&x=%%2F" % wire.port
    )


async def test_an_ipv6_receiver_gets_the_bracketed_host(sender: Sender) -> None:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            pass
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with serve(keep_answering(OK), host="::1") as wire:
        request = OutgoingRequest("GET", f"http://[::1]:{wire.port}/hook", None, ())
        result = await sender.send(request, QUICK)
    assert result.status == 200
    [(_, raw)] = wire.requests
    assert head_lines(raw)[:2] == [b"GET /hook HTTP/1.1", b"Host: [::1]:%d" % wire.port]


@pytest.mark.parametrize(
    "raw_url",
    ["http://127.0.0.1:9/\u20ac", "http://" + "\u00fc" * 64 + ".example/hook"],
    ids=["path", "idna-host"],
)
async def test_urls_the_client_cannot_write_are_invalid_urls(sender: Sender, raw_url: str) -> None:
    result = await sender.send(OutgoingRequest("GET", raw_url, None, ()), QUICK)
    assert (result.status, result.error_class) == (None, "invalid_url")


async def test_a_kept_connection_that_goes_silent_times_out_and_is_not_reused(
    sender: Sender,
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        if peer.number == 1:
            await peer.request()  # read, never answered
            await peer.request()

    async with serve(handler) as wire:
        first = await get(sender, wire)
        request = OutgoingRequest("GET", url(wire), None, ())
        silent = await sender.send(request, Timeouts(connect=1.0, total=0.3))
        third = await get(sender, wire)
        await settle()
    assert first.status == 200
    assert (silent.status, silent.error_class) == (None, "timeout")
    assert third.status == 200
    assert wire.connections == 2
    assert [number for number, _ in wire.requests] == [1, 1, 2]
    assert 1 in wire.ended  # the timed-out connection was closed


# --- 8. idle expiry -------------------------------------------------------------------------


class Clock:
    """``time`` as http1 sees it, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


async def test_an_idle_connection_older_than_the_limit_is_not_reused(
    sender: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(http1, "time", clock)
    async with serve(keep_answering(OK)) as wire:
        await get(sender, wire)
        clock.now += http1.IDLE_SECONDS - 1
        await get(sender, wire)  # idle for less than the limit: the same connection
        assert wire.connections == 1
        clock.now += http1.IDLE_SECONDS + 1
        result = await get(sender, wire)
        await settle()
    assert result.status == 200
    assert wire.connections == 2
    assert [number for number, _ in wire.requests] == [1, 1, 2]
    assert 1 in wire.ended  # the stale connection was closed, not left open


# --- 9. limits ------------------------------------------------------------------------------


def slow(log: list[str], both: asyncio.Event, seconds: float) -> Handler:
    """Answers once two requests arrived (on any connection), or after ``seconds``."""

    async def handler(peer: Peer) -> None:
        while (raw := await peer.request()) is not None:
            name = raw.split(b" ")[1].decode()
            log.append(f"got {name}")
            if sum(entry.startswith("got") for entry in log) >= 2:
                both.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(both.wait(), seconds)
            log.append(f"answered {name}")
            await peer.send(OK)

    return handler


async def test_limit_per_host_sends_one_request_at_a_time() -> None:
    log: list[str] = []
    async with serve(slow(log, asyncio.Event(), 0.1)) as wire, client(limit_per_host=1) as one:
        answers = await asyncio.gather(
            one.request("GET", where(wire, "/a"), [], None, (2.0, 5.0)),
            one.request("GET", where(wire, "/b"), [], None, (2.0, 5.0)),
        )
    assert [answer.status for answer in answers] == [200, 200]
    assert log == ["got /a", "answered /a", "got /b", "answered /b"]
    assert wire.connections == 1  # the second waited and took the kept connection


async def test_without_a_per_host_limit_requests_go_in_parallel() -> None:
    log: list[str] = []
    async with serve(slow(log, asyncio.Event(), 2.0)) as wire, client() as many:
        answers = await asyncio.gather(
            many.request("GET", where(wire, "/a"), [], None, (2.0, 5.0)),
            many.request("GET", where(wire, "/b"), [], None, (2.0, 5.0)),
        )
    assert [answer.status for answer in answers] == [200, 200]
    assert sorted(log[:2]) == ["got /a", "got /b"]
    assert wire.connections == 2


async def test_the_per_host_limit_is_per_origin() -> None:
    log: list[str] = []
    both = asyncio.Event()
    async with (
        serve(slow(log, both, 2.0)) as first,
        serve(slow(log, both, 2.0)) as second,
        client(limit_per_host=1) as per_host,
    ):
        await asyncio.gather(
            per_host.request("GET", where(first, "/a"), [], None, (2.0, 5.0)),
            per_host.request("GET", where(second, "/b"), [], None, (2.0, 5.0)),
        )
    assert sorted(log[:2]) == ["got /a", "got /b"]


async def test_the_overall_limit_spans_origins() -> None:
    log: list[str] = []
    both = asyncio.Event()
    async with (
        serve(slow(log, both, 0.1)) as first,
        serve(slow(log, both, 0.1)) as second,
        client(limit=1) as single,
    ):
        await asyncio.gather(
            single.request("GET", where(first, "/a"), [], None, (2.0, 5.0)),
            single.request("GET", where(second, "/b"), [], None, (2.0, 5.0)),
        )
    assert log == ["got /a", "answered /a", "got /b", "answered /b"]


# --- 10. a receiver talking out of turn -----------------------------------------------------


@pytest.mark.parametrize(
    "stray",
    [b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n", b"x"],
    ids=["408", "one-byte"],
)
async def test_stray_bytes_on_an_idle_connection_drop_it(sender: Sender, stray: bytes) -> None:
    async def handler(peer: Peer) -> None:
        first = peer.number == 1
        while await peer.request() is not None:
            await peer.send(OK)
            if first:
                await asyncio.sleep(0.02)  # the client has its answer and the connection is idle
                await peer.send(stray)
                first = False

    async with serve(handler) as wire:
        first = await get(sender, wire)
        await settle()
        second = await get(sender, wire)
        third = await get(sender, wire)
        await settle()
    assert [result.status for result in (first, second, third)] == [200, 200, 200]
    assert [result.error for result in (first, second, third)] == [None, None, None]
    assert wire.connections == 2
    assert [number for number, _ in wire.requests] == [1, 2, 2]
    assert 1 in wire.ended


@pytest.mark.parametrize(
    "stray",
    [
        b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
    ],
    ids=["408-to-the-close", "partial-answer"],
)
async def test_an_answer_after_the_answer_in_the_same_write_drops_the_connection(
    sender: Sender, stray: bytes
) -> None:
    async def handler(peer: Peer) -> None:
        first = peer.number == 1
        while await peer.request() is not None:
            await peer.send(OK + stray if first else OK)
            first = False

    async with serve(handler) as wire:
        results = []
        for _ in range(3):
            request = OutgoingRequest("GET", url(wire), None, ())
            results.append(await sender.send(request, Timeouts(connect=1.0, total=0.5)))
    assert [(result.status, result.error_class) for result in results] == [(200, None)] * 3
    assert wire.connections == 2
    assert [number for number, _ in wire.requests] == [1, 2, 2]


async def test_bytes_after_the_answer_in_the_same_write_drop_the_connection(
    sender: Sender,
) -> None:
    # more body than Content-Length said: the connection's framing can no longer be trusted
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")

    async with serve(handler) as wire:
        first = await get(sender, wire)
        second = await get(sender, wire)
    assert [(result.status, result.snippet) for result in (first, second)] == [(200, "ok")] * 2
    assert wire.connections == 2
