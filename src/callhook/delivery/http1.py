"""A lean HTTP/1.1 client for webhook attempts: one request at a time per connection, kept
alive per origin, answers parsed by llhttp (``httptools``, the parser uvicorn uses).

An attempt needs little of a general client: send a request whose bytes are all known, read
the status, ``Retry-After`` and the first KiB of the body, keep the connection for the next
one. aiohttp's ``ClientSession`` did that in 138 us of CPU per request on the benchmark machine
(request and response objects, header multidicts, a writer task, timers, a stream reader);
this does it in about 15 (bench/RESULTS.md item 17, decision 0014). What it leaves out on
purpose: redirects (never followed), cookies, proxies, compression (no ``Accept-Encoding`` is
sent, so receivers answer plainly), HTTP/2, ``Expect: 100-continue`` (1xx answers are skipped).

Connections come from the destination guard: a host name is resolved by the sender's
``GuardedResolver`` and the address connected to is one it let through; literal addresses are
checked by the sender before they get here.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import httptools
from aiohttp.abc import AbstractResolver
from yarl import URL

from callhook.delivery.guard import RefusedDestination, literal_ip

#: body bytes kept for the delivery log
SNIPPET_BYTES = 1024
#: body bytes read past the snippet to keep the connection; a longer body closes it instead
DRAIN_BYTES = 1 << 20
#: an idle connection is not used again after this long (receivers close theirs after 5-75 s;
#: sending on one the receiver is closing fails the attempt)
IDLE_SECONDS = 15.0


class ReceiverClosed(ConnectionError):
    """The receiver closed the connection before its answer's head arrived."""

    def __init__(self) -> None:
        super().__init__("the receiver closed the connection without answering")


class BadAnswer(ConnectionError):
    """What the receiver sent back is not an HTTP/1.x answer."""


class ConnectFailed(OSError):
    """No connection could be made to any address of the host."""


class ResolveFailed(OSError):
    """The host name did not resolve."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None
    #: the first ``SNIPPET_BYTES`` of the body
    snippet: bytes
    #: trouble reading the body after the status arrived (the status still counts)
    body_error: str | None


class _Connection(asyncio.Protocol):
    """One connection to a receiver; the parser's callbacks fill in the current answer."""

    #: the current answer's Retry-After and Content-Length, when it has them (``_reset``)
    _retry_after: str | None
    _length: int | None

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.used = False
        self._waiter: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: some of an answer came back for the current request (the receiver read it)
        self.heard = False
        self._reset()

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they behave as one
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # nothing was asked: a receiver talking out of turn loses the connection
            return
        self.heard = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BadAnswer("the receiver switched protocols"))
        except httptools.HttpParserError as exc:
            if self.parser.get_status_code() == 101:  # without "Connection: Upgrade"
                self._fail(BadAnswer("the receiver switched protocols"))
            else:
                self._fail(BadAnswer(f"the receiver's answer is not HTTP ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._status < 200:
            waiter.set_exception(ReceiverClosed())
            return
        # the head arrived: the status counts; a body cut short is said
        short = self._chunked or (self._length is not None and self._body < self._length)
        error = "the receiver closed the connection before the end of the body" if short else None
        self._keep = False
        waiter.set_result(self._answer(error))

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None or self._waiter.done():
            # more after the answer, in the same read: out of turn, the connection goes
            self._keep = False
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"retry-after":
            self._retry_after = value.decode("latin-1").strip()
        elif name == b"content-length":
            self._length = int(value) if value.strip().isdigit() else None
        elif name == b"transfer-encoding":
            self._chunked = b"chunked" in value.lower()

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        room = SNIPPET_BYTES - len(self._snippet)
        if room > 0:
            self._snippet += body[:room]
        self._body += len(body)
        if self._body > SNIPPET_BYTES + DRAIN_BYTES and self._waiter and not self._waiter.done():
            # enough read: the answer is known, the rest is not worth the connection
            self._keep = False
            self._waiter.set_result(self._answer(None))
            self.close()

    def on_message_complete(self) -> None:
        if self._status < 200:  # 100 Continue, 103 Early Hints: the real answer follows
            self._reset()
            return
        self._keep = self.parser.should_keep_alive()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(self._answer(None))

    # --- use --------------------------------------------------------------------------------

    def exchange(self, data: bytes, deadline: float) -> asyncio.Future[Answer]:
        """Send one request's bytes; the future gets its answer, or at ``deadline`` (the
        loop's time) a TimeoutError, or the status with the body said to be cut short when
        the head had arrived (as the body was read, the status stands)."""
        assert self.transport is not None
        self._reset()
        self.heard = False
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._timer = loop.call_at(deadline, self._expire)
        waiter.add_done_callback(self._stop_timer)
        self.transport.write(data)
        return waiter

    def _expire(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._status >= 200:
                waiter.set_result(self._answer("timed out"))
            else:
                waiter.set_exception(TimeoutError())
        self.close()

    def _stop_timer(self, _: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reusable(self) -> bool:
        return self._keep and not self.closed and self.transport is not None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _reset(self) -> None:
        """The current answer, none of it yet (a new request, or past a 1xx answer)."""
        self._status = 0
        self._retry_after = None
        self._length = None
        self._chunked = False
        self._snippet = bytearray()
        self._body = 0
        self._keep = False

    def _answer(self, body_error: str | None) -> Answer:
        return Answer(self._status, self._retry_after, bytes(self._snippet), body_error)

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()


@dataclass(frozen=True, slots=True)
class Target:
    """What a URL means to the client, worked out once per URL."""

    key: tuple[str, str, int]
    #: the host to resolve or connect to (IDNA-encoded), its address if literal, and the port
    host: str
    literal: bool
    port: int
    tls: bool
    #: the request line's target, the Host header, and an Authorization header from the URL
    path: str
    authority: str
    authorization: str | None


def target(url: URL) -> Target:
    """``url`` (absolute, http or https, checked by the sender) as the client sends to it."""
    raw_host = url.raw_host or ""
    host = raw_host if raw_host.isascii() else raw_host.encode("idna").decode("ascii")
    literal = literal_ip(host) is not None
    default = 443 if url.scheme == "https" else 80
    port = url.explicit_port or default
    authority = f"[{host}]" if ":" in host else host
    if port != default:
        authority = f"{authority}:{port}"
    authorization = None
    if url.user is not None or url.password is not None:
        pair = f"{url.user or ''}:{url.password or ''}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    return Target(
        (url.scheme, host, port),
        host,
        literal,
        port,
        url.scheme == "https",
        url.raw_path_qs or "/",
        authority,
        authorization,
    )


def request_bytes(
    method: str, where: Target, headers: Sequence[tuple[str, str]], body: bytes | None
) -> bytes:
    """The request as it goes on the wire."""
    lines = [f"{method} {where.path} HTTP/1.1", f"Host: {where.authority}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if where.authorization is not None:
        lines.append(f"Authorization: {where.authorization}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    # UTF-8: a path or query with characters beyond ASCII goes as their UTF-8 bytes, as
    # browsers and curl send them
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + body if body else head


class Client:
    """Connections to receivers, kept alive per origin (``close`` when done)."""

    def __init__(
        self,
        resolver: AbstractResolver,
        ssl_context: ssl.SSLContext,
        *,
        limit: int,
        limit_per_host: int = 0,
    ) -> None:
        self._resolver = resolver
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(limit)
        self._per_host = limit_per_host
        self._host_slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._most_idle = limit

    async def request(
        self,
        method: str,
        where: Target,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        timeouts: tuple[float, float],
    ) -> Answer:
        """One request and its answer within ``timeouts`` (seconds to connect, in all);
        raises for network trouble (the sender classifies). A status that arrived stands,
        even when the body then stalls past the deadline."""
        data = request_bytes(method, where, headers, body)
        deadline = asyncio.get_running_loop().time() + timeouts[1]
        await _acquire(self._slots, deadline)
        try:
            if not self._per_host:
                return await self._exchange(where, data, timeouts[0], deadline)
            host_slots = self._host_slots.get(where.key)
            if host_slots is None:
                host_slots = self._host_slots[where.key] = asyncio.Semaphore(self._per_host)
            await _acquire(host_slots, deadline)
            try:
                return await self._exchange(where, data, timeouts[0], deadline)
            finally:
                host_slots.release()
        finally:
            self._slots.release()

    async def _exchange(
        self, where: Target, data: bytes, connect_seconds: float, deadline: float
    ) -> Answer:
        conn = self._take(where.key)
        if conn is None:
            conn = await self._connect(where, connect_seconds, deadline)
        try:
            try:
                answer = await conn.exchange(data, deadline)
            except ReceiverClosed:
                if not conn.used or conn.heard:
                    raise
                # a kept connection the receiver closed as the request went out, without a
                # byte of an answer: it never read the request, so it goes once more on a new
                # connection
                conn = await self._connect(where, connect_seconds, deadline)
                answer = await conn.exchange(data, deadline)
        except BaseException:
            conn.close()
            raise
        if conn.reusable():
            self._give_back(where.key, conn)
        else:
            conn.close()
        return answer

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        oldest = time.monotonic() - IDLE_SECONDS
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since > oldest:
                return conn
            conn.close()
        return None

    def _give_back(self, key: tuple[str, str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._most_idle:
            conn.close()
            return
        conn.used = True
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, where: Target, connect_seconds: float, deadline: float) -> _Connection:
        """A new connection to the first address of the host that answers, within
        ``connect_seconds`` and before ``deadline``."""
        loop = asyncio.get_running_loop()
        connect_by = min(deadline, loop.time() + connect_seconds)
        if where.literal:
            addresses = [where.host]
        else:
            try:
                async with asyncio.timeout_at(connect_by):
                    found = await self._resolver.resolve(where.host, where.port, socket.AF_UNSPEC)
            except (RefusedDestination, TimeoutError):
                raise
            except OSError as exc:
                raise ResolveFailed(f"cannot resolve {where.host}: {exc}") from exc
            addresses = [result["host"] for result in found]
        tls = self._ssl if where.tls else None
        failures: list[str] = []
        for address in addresses:
            try:
                async with asyncio.timeout_at(connect_by):
                    _, conn = await loop.create_connection(
                        _Connection,
                        address,
                        where.port,
                        ssl=tls,
                        server_hostname=where.host if tls else None,
                    )
            except (ssl.SSLError, ssl.CertificateError, TimeoutError):
                # the receiver answered and its certificate is the trouble, or the attempt's
                # connect time is spent: no other address is tried
                raise
            except OSError as exc:
                failures.append(f"{address}: {exc.strerror or exc}")
                continue
            return conn
        raise ConnectFailed(f"cannot connect to {where.host}:{where.port} ({'; '.join(failures)})")

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports close


async def _acquire(slots: asyncio.Semaphore, deadline: float) -> None:
    """A slot, waiting for one no later than ``deadline`` (the loop's time)."""
    if not slots.locked():
        await slots.acquire()
        return
    async with asyncio.timeout_at(deadline):
        await slots.acquire()
