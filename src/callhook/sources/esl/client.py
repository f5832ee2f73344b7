"""The asyncio client of FreeSWITCH's inbound event socket: ``EslLink`` and its sessions.

``EslLink.open`` connects, waits for FreeSWITCH's ``auth/request``, sends the password and
subscribes to the channel events the mapper needs (``calls.py``); a refusal is a ``LinkError``
that says what to fix. The session then runs one reader task: events go to a buffer that
``events()`` drains in order, and command replies go to the command waiting for them (FreeSWITCH
answers each command in turn, so the first reply is the first waiting command's). Events that
arrive while ``live_channels`` waits for ``show channels`` are therefore kept, not lost.

ESL has no ping: every ``keepalive`` seconds the session sends ``api status``; no answer within
``keepalive_timeout`` means the connection is dead (a half-open TCP connection looks alive
forever) and the session fails with ``LinkLost``, as it does on a disconnect notice or when the
peer closes. ``close`` sends ``exit``. Reconnecting is the runner's job (``sources/runner.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence

from callhook.sources.esl.protocol import (
    API_RESPONSE,
    AUTH_REQUEST,
    COMMAND_REPLY,
    DISCONNECT_NOTICE,
    EVENT_TYPES,
    EXIT,
    FORMATS,
    RUDE_REJECTION,
    EslProtocolError,
    Frame,
    Parser,
    api,
    auth,
    decode_event,
    parse_channels,
    subscribe,
)
from callhook.sources.link import (
    CHANNELS_TIMEOUT,
    ChannelsUnavailable,
    LinkError,
    LinkLost,
    Message,
)

log = logging.getLogger(__name__)

#: what ``calls.EslCalls`` reads; nothing else is asked for (less for FreeSWITCH to queue)
EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_OUTGOING",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP_COMPLETE",
)
#: like mod_event_socket's own queue (MAX_QUEUE_LEN): past this, callhook has fallen behind
MAX_PENDING = 100_000
AUTH_REFUSED = (
    "FreeSWITCH refused the ESL password: check event_socket.conf.xml's password and "
    "apply-inbound-acl"
)
_READ_SIZE = 64 * 1024


class EslLink:
    """One FreeSWITCH event socket (``Link``): each ``open`` is a new, logged-in session."""

    kind = "esl"

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 20.0,
        keepalive_timeout: float | None = None,
        reply_timeout: float = 30.0,
        event_format: str = "plain",
        events: Sequence[str] = EVENTS,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if event_format not in FORMATS:
            raise ValueError(f"event format {event_format!r}: use plain or json")
        self.host, self.port = host, port
        self.target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._password = password
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout or min(keepalive, 10.0)
        self.reply_timeout = reply_timeout
        self.event_format = event_format
        self.events = tuple(events)
        self.max_pending = max_pending

    def __repr__(self) -> str:  # never the password
        return f"EslLink({self.target!r}, event_format={self.event_format!r})"

    async def open(self) -> EslSession:
        """Connect, log in and subscribe: LinkError on refusal, OSError, TimeoutError."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.connect_timeout
        )
        session = EslSession(self, reader, writer)
        try:
            await session.login(self._password)
        except BaseException:
            await session.close()
            raise
        return session


class EslSession:
    """A logged-in connection (``Session``); made by ``EslLink.open``."""

    def __init__(
        self, link: EslLink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.link = link
        self._reader, self._writer = reader, writer
        self._parser = Parser()
        self._frames: deque[Frame] = deque()
        self._events: deque[Message] = deque()
        self._waiting: deque[asyncio.Future[Frame]] = deque()
        #: when anything last arrived: a FreeSWITCH that talks is alive even if it is slow to answer
        self._heard = 0.0
        self._wake = asyncio.Event()
        self._failure: LinkError | OSError | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # --- logging in (before the reader task runs) ---------------------------------------------

    async def login(self, password: str) -> None:
        target, timeout = self.link.target, self.link.connect_timeout
        try:
            greeting = await asyncio.wait_for(self._read_frame(), timeout)
        except TimeoutError:
            raise LinkError(
                f"{target} sent no ESL greeting (auth/request) within {timeout:g} s: is it "
                "FreeSWITCH's event socket (listen-ip and listen-port in event_socket.conf.xml)?"
            ) from None
        except EslProtocolError as exc:
            raise LinkError(f"{target} is not a FreeSWITCH event socket: {exc}") from None
        self._check_greeting(greeting)
        reply = await self._login_step(auth(password), "the password")
        if not reply.reply_text.startswith("+OK"):
            raise LinkError(AUTH_REFUSED)
        what = f"event {self.link.event_format} {' '.join(self.link.events)}"
        reply = await self._login_step(subscribe(self.link.event_format, self.link.events), what)
        if not reply.reply_text.startswith("+OK"):
            raise LinkError(f"FreeSWITCH refused `{what}`: {reply.reply_text or reply.text}")
        log.debug("esl %s: logged in, %s", target, reply.reply_text)
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"esl-read-{target}"),
            asyncio.create_task(self._keepalive_loop(), name=f"esl-keepalive-{target}"),
        ]

    def _check_greeting(self, frame: Frame) -> None:
        target = self.link.target
        if frame.content_type == AUTH_REQUEST:
            return
        if frame.content_type == RUDE_REJECTION:
            raise LinkError(
                f"FreeSWITCH at {target} refused this host ({frame.text.strip()}): add its "
                "address to the ACL that event_socket.conf.xml's apply-inbound-acl names "
                "(acl.conf.xml), then `reloadacl`"
            )
        if frame.content_type == DISCONNECT_NOTICE:
            raise LinkError(f"FreeSWITCH at {target} hung up at once: {frame.text.strip()}")
        got = frame.content_type or f"headers {sorted(frame.headers)[:4]}"
        raise LinkError(f"{target} is not a FreeSWITCH event socket: it sent {got}")

    async def _login_step(self, command: bytes, what: str) -> Frame:
        self._writer.write(command)
        await self._writer.drain()
        try:
            frame = await asyncio.wait_for(self._read_frame(), self.link.connect_timeout)
        except TimeoutError:
            raise LinkError(
                f"FreeSWITCH at {self.link.target} did not answer {what} within "
                f"{self.link.connect_timeout:g} s"
            ) from None
        except EslProtocolError as exc:
            raise LinkError(
                f"FreeSWITCH at {self.link.target} broke the ESL framing: {exc}"
            ) from None
        except LinkLost:
            if what == "the password":
                raise LinkError(AUTH_REFUSED) from None
            raise
        if frame.content_type != COMMAND_REPLY:
            raise LinkError(
                f"FreeSWITCH at {self.link.target} answered {what} with {frame.content_type!r}"
            )
        return frame

    async def _read_frame(self) -> Frame:
        while not self._frames:
            data = await self._reader.read(_READ_SIZE)
            if not data:
                raise LinkLost(f"FreeSWITCH at {self.link.target} closed the connection")
            self._frames.extend(self._parser.feed(data))
        return self._frames.popleft()

    # --- the Session ----------------------------------------------------------------------------

    async def live_channels(self) -> list[Message]:
        """``show channels as json``: one row per live channel (uuid, call_uuid, name...);
        ChannelsUnavailable when FreeSWITCH refuses, does not answer in time or answers what
        cannot be read (the session goes on)."""
        command = "show channels as json"
        try:
            frame = await self._request(api(command), CHANNELS_TIMEOUT, command)
        except LinkLost:
            if self._failure is not None:  # the connection itself failed
                raise
            raise ChannelsUnavailable(
                f"FreeSWITCH at {self.link.target} did not answer `{command}` within "
                f"{CHANNELS_TIMEOUT:g} s"
            ) from None
        try:
            return list(parse_channels(frame.body))
        except EslProtocolError as exc:
            raise ChannelsUnavailable(f"FreeSWITCH at {self.link.target}: {exc}") from None

    async def events(self) -> AsyncIterator[Message]:
        """Events in the order FreeSWITCH sent them, until the link fails (then the error)."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self._failure is not None:
                raise self._failure
            self._wake.clear()
            await self._wake.wait()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._failure is None and self._tasks:
                with contextlib.suppress(LinkError, OSError, TimeoutError):
                    await self._request(EXIT, 1.0, "exit")
        finally:
            self._fail(LinkLost(f"the link to {self.link.target} was closed"))
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    # --- the reader, commands and keepalive -------------------------------------------------

    async def _request(self, command: bytes, within: float, what: str) -> Frame:
        if self._failure is not None:
            raise self._failure
        waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._writer.write(command)
        await self._writer.drain()
        try:
            # a late reply still pops this waiter (replies come in order), so none is misread
            return await asyncio.wait_for(asyncio.shield(waiter), within)
        except TimeoutError:
            waiter.cancel()
            raise LinkLost(
                f"FreeSWITCH at {self.link.target} did not answer `{what}` within {within:g} s"
            ) from None

    async def _read_loop(self) -> None:
        try:
            while True:
                while self._frames:
                    self._dispatch(self._frames.popleft())
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    raise LinkLost(f"FreeSWITCH at {self.link.target} closed the connection")
                self._heard = asyncio.get_running_loop().time()
                self._frames.extend(self._parser.feed(data))
        except EslProtocolError as exc:
            self._fail(LinkError(f"FreeSWITCH at {self.link.target} broke the ESL framing: {exc}"))
        except (LinkError, OSError) as exc:
            self._fail(exc)
        finally:
            self._writer.close()

    def _dispatch(self, frame: Frame) -> None:
        kind = frame.content_type
        if kind in EVENT_TYPES:
            self._events.append(decode_event(frame))
            if len(self._events) > self.link.max_pending:
                raise LinkLost(
                    f"callhook fell {len(self._events)} events behind FreeSWITCH at "
                    f"{self.link.target}; reconnecting"
                )
            self._wake.set()
        elif kind in (COMMAND_REPLY, API_RESPONSE):
            # replies come in the order of the commands: each takes its command's waiter, even
            # one that gave up waiting (else a late reply would answer the next command)
            if self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_result(frame)
        elif kind == DISCONNECT_NOTICE:
            reason = frame.text.strip().splitlines()[0] if frame.text.strip() else "no reason"
            raise LinkLost(f"FreeSWITCH at {self.link.target} ended the connection: {reason}")
        elif kind == RUDE_REJECTION:
            raise LinkError(f"FreeSWITCH at {self.link.target} refused this host")

    async def _keepalive_loop(self) -> None:
        while self._failure is None:
            await asyncio.sleep(self.link.keepalive)
            sent = asyncio.get_running_loop().time()
            try:
                await self._request(api("status"), self.link.keepalive_timeout, "api status")
            except LinkLost as exc:
                if self._failure is None and self._heard > sent:
                    continue  # no answer, but FreeSWITCH is talking: alive
                self._fail(
                    LinkLost(
                        f"{exc} (the keepalive): the connection is dead or FreeSWITCH is stuck"
                    )
                )
                self._writer.close()
                return
            except (LinkError, OSError):
                return

    def _fail(self, failure: LinkError | OSError) -> None:
        if self._failure is None:
            if self._closed:  # whatever happens after close() is our own doing
                failure = LinkLost(f"the link to {self.link.target} was closed")
            else:
                log.info("esl %s: %s", self.link.target, failure)
            self._failure = failure
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(self._failure)
                waiter.exception()  # the command waiting for it reports it; do not log it too
        self._waiting.clear()
        self._wake.set()
