"""The asyncio side of AMI: connect, log in, list live channels, read events, keep alive.

``AmiLink.open`` connects, checks the banner and logs in with ``Events: call,agent`` (call
events, plus the queue events, which Asterisk files under ``agent``; a user without the
``agent`` read class just gets no queue events, and calls through queues still map, from their
dials). An ``AmiSession`` then lists the live channels (``CoreShowChannels``), yields events
until the connection drops, and logs off. Reconnecting is the runner's job
(``sources/runner.py``), not this module's.

One reader: ``live_channels`` and ``events`` read the same stream and must not run at the same
time (the runner calls ``live_channels`` once, then iterates ``events``). Events that arrive
while ``live_channels`` waits for its list are kept and yielded first, in order.

Keepalive: every ``keepalive`` seconds the session sends ``Ping``; when its answer does not
come within ``keepalive_timeout`` the PBX is taken as gone (``LinkLost``), even if the TCP
connection looks open (a host that vanished, a NAT that forgot the flow). The secret is sent
in the ``Login`` action only, and never logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable

from callhook.sources.ami.protocol import AmiMessage, AmiParser, encode_action
from callhook.sources.link import CHANNELS_TIMEOUT, ChannelsUnavailable, LinkError, LinkLost

log = logging.getLogger(__name__)

EVENTS = "call,agent"
_READ = 65536


class AmiLink:
    """Where and how to reach one Asterisk manager interface (the runner's ``Link``)."""

    kind = "ami"

    def __init__(
        self,
        host: str,
        port: int = 5038,
        username: str = "",
        secret: str = "",
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 20.0,
        keepalive_timeout: float = 10.0,
        events: str = EVENTS,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        self.events = events
        shown = f"[{host}]" if ":" in host else host
        self.target = f"{shown}:{port}"

    def __repr__(self) -> str:
        return f"AmiLink({self.username}@{self.target})"

    async def open(self) -> AmiSession:
        """Connect and log in (LinkError when refused or not AMI; OSError, TimeoutError)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.connect_timeout
        )
        session = AmiSession(
            reader,
            writer,
            self.target,
            self.username,
            keepalive=self.keepalive,
            keepalive_timeout=self.keepalive_timeout,
        )
        try:
            await session.login(self._secret, self.events, within=self.connect_timeout)
        except BaseException:
            session.abort()
            raise
        return session


class AmiSession:
    """One logged-in AMI connection (the runner's ``Session``)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target: str,
        username: str,
        *,
        keepalive: float = 20.0,
        keepalive_timeout: float = 10.0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.target = target
        self.username = username
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        self.banner: str | None = None
        self._parser = AmiParser()
        self._pending: deque[AmiMessage] = deque()
        self._ids = itertools.count(1)
        self._loop = asyncio.get_running_loop()
        self._ping_id: str | None = None
        self._ping_due = self._loop.time() + keepalive
        self._ping_deadline = 0.0
        self._ping_sent = 0.0
        #: when anything last arrived: a PBX that talks is alive even if it ignores Ping
        self._heard = 0.0
        #: ActionIDs whose answers are no longer awaited (dropped when they come)
        self._stale: set[str] = set()
        self._closed = False

    # --- actions ----------------------------------------------------------------------------

    async def login(self, secret: str, events: str = EVENTS, *, within: float = 10.0) -> None:
        """Wait for the banner, then log in; all within ``within`` seconds."""
        deadline = self._loop.time() + within
        while self._parser.banner is None:
            try:
                self._route(await self._read(deadline))
            except TimeoutError:
                raise LinkError(
                    f"{self.target} sent no AMI banner within {within:g} s: is this the "
                    "Asterisk manager port (manager.conf: enabled=yes, port, bindaddr)?"
                ) from None
        self.banner = self._parser.banner
        fields = {"Username": self.username, "Secret": secret, "Events": events}
        try:
            answer = await self._request("Login", fields, deadline)
        except LinkLost:
            raise LinkError(
                f"{self.target} closed the AMI connection during login for user "
                f"{self.username}: check username/secret and that manager.conf allows this "
                "host (permit/deny)"
            ) from None
        except TimeoutError:
            raise LinkError(
                f"{self.target} did not answer the AMI login within {within:g} s"
            ) from None
        if (answer.response or "").lower() != "success":
            said = answer.get("Message")
            raise LinkError(
                f"AMI login refused for user {self.username}: check username/secret and that "
                "manager.conf allows this host (permit/deny)"
                + (f" (Asterisk said: {said})" if said else "")
            )
        self._ping_due = self._loop.time() + self.keepalive
        log.debug("ami logged in target=%s user=%s", self.target, self.username)

    async def live_channels(self) -> list[AmiMessage]:
        """``CoreShowChannels``: one ``CoreShowChannel`` per live channel (ChannelsUnavailable
        when Asterisk refuses or does not finish the list in time)."""
        action_id = self._next_id()
        await self._send(encode_action("CoreShowChannels", action_id=action_id))
        within = CHANNELS_TIMEOUT
        deadline = self._loop.time() + within
        channels: list[AmiMessage] = []
        done = False
        while not done:
            try:
                messages = await self._read(deadline)
            except TimeoutError:
                self._stale.add(action_id)  # the rest of a late list is not an event
                raise ChannelsUnavailable(
                    f"{self.target} did not finish the CoreShowChannels list within {within:g} s"
                ) from None
            for message in messages:
                if done or message.get("ActionID") != action_id:
                    self._route([message])
                elif message.response is not None:
                    if message.response.lower() != "success":
                        said = message.get("Message") or message.response
                        raise ChannelsUnavailable(
                            f"AMI user {self.username} may not run CoreShowChannels (Asterisk "
                            f"said: {said}): give it write=reporting in manager.conf; callhook "
                            "needs it to close the calls that ended while the link was down"
                        )
                elif (message.event or "").lower() == "coreshowchannel":
                    channels.append(message)
                elif (message.event or "").lower() == "coreshowchannelscomplete":
                    done = True
        return channels

    async def events(self) -> AsyncIterator[AmiMessage]:
        """Events until the link drops (LinkLost, OSError) or stops answering Ping."""
        while True:
            while self._pending:
                yield self._pending.popleft()
            now = self._loop.time()
            if self._ping_id is not None:
                if now >= self._ping_deadline and self._heard > self._ping_sent:
                    # no Pong (a PBX, or a replay of one, that ignores Ping), but it is talking
                    self._ping_id = None
                    self._ping_due = now + self.keepalive
                    continue
                if now >= self._ping_deadline:
                    raise LinkLost(
                        f"{self.target} did not answer the AMI Ping within "
                        f"{self.keepalive_timeout:g} s"
                    )
                deadline = self._ping_deadline
            elif now >= self._ping_due:
                self._ping_id = self._next_id()
                self._ping_sent = now
                self._ping_deadline = now + self.keepalive_timeout
                await self._send(encode_action("Ping", action_id=self._ping_id))
                continue
            else:
                deadline = self._ping_due
            with contextlib.suppress(TimeoutError):
                self._route(await self._read(deadline))

    async def close(self) -> None:
        """Log off (best effort) and close the connection."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            await self._send(encode_action("Logoff", action_id=self._next_id()))
            await asyncio.wait_for(self._reader.read(_READ), 1.0)
        self._closed = True
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    def abort(self) -> None:
        self._closed = True
        self._writer.transport.abort()

    # --- plumbing -----------------------------------------------------------------------------

    def _next_id(self) -> str:
        return f"callhook-{next(self._ids)}"

    async def _send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def _read(self, deadline: float) -> list[AmiMessage]:
        """The messages completed by the next read (TimeoutError at ``deadline``)."""
        timeout = max(0.0, deadline - self._loop.time())
        data = await asyncio.wait_for(self._reader.read(_READ), timeout)
        if not data:
            raise LinkLost(f"{self.target} closed the AMI connection")
        return self._parser.feed(data)

    async def _request(self, action: str, fields: dict[str, str], deadline: float) -> AmiMessage:
        action_id = self._next_id()
        await self._send(encode_action(action, fields, action_id=action_id))
        while True:
            messages = await self._read(deadline)
            for i, message in enumerate(messages):
                # Asterisk echoes the ActionID; an answer without one is taken as ours too
                if message.response is not None and message.get("ActionID") in (action_id, None):
                    self._route(messages[i + 1 :])
                    return message
                self._route([message])

    def _route(self, messages: Iterable[AmiMessage]) -> None:
        """Events wait for ``events``; the Ping's answer resets the keepalive."""
        for message in messages:
            self._heard = self._loop.time()
            if message.get("ActionID") in self._stale:
                continue
            if message.response is None:
                if message.event is not None:
                    self._pending.append(message)
                continue
            if self._ping_id is not None and message.get("ActionID") == self._ping_id:
                self._ping_id = None
                self._ping_due = self._loop.time() + self.keepalive
