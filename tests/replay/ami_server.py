"""A small Asterisk Manager Interface replay server, for tests and for trying callhook by hand.

Asterisk is not installable here, so callhook's AMI source is tested against this server. It
speaks the real AMI framing (banner ``Asterisk Call Manager/5.0.1``, ``Key: Value`` lines ended
by an empty line, CRLF) and answers the actions callhook uses the way manager.c does:

- ``Login``: ``Response: Success`` / ``Message: Authentication accepted`` (then ``FullyBooted``
  when the requested ``Events`` include the ``system`` class, as Asterisk does), or
  ``Response: Error`` / ``Message: Authentication failed`` and the connection is closed;
- ``Ping``: ``Response: Success`` / ``Ping: Pong`` / ``Timestamp`` (unless ``answer_ping`` is
  off, to test keepalive timeouts);
- ``CoreShowChannels``: ``Response: Success`` / ``EventList: start``, one ``CoreShowChannel``
  per scripted live channel, ``CoreShowChannelsComplete`` with ``ListItems``;
- ``Logoff``: ``Response: Goodbye``; any other action before login: ``Permission denied``.

**The events it replays are scripted, not captured.** The ``.ami`` scripts in
``tests/data/ami/`` were written for callhook from the documented event shapes
(docs.asterisk.org AMI event reference for DialBegin, DialEnd, DialState, Hangup, BridgeEnter,
LocalBridge, LocalOptimizationBegin/End, BlindTransfer, AttendedTransfer, QueueCallerJoin,
AgentCalled, AgentConnect, CoreShowChannel; asterisk/testsuite ``tests/bridge/simple_bridge``
for the order of a bridged call). The order of events and values such as hangup causes are the
typical ones; a real Asterisk may differ in details. If a capture of a real Asterisk becomes
available, save it in this format and replay it verbatim.

Script format (``.ami``): AMI messages as they are on the wire (``Key: Value`` lines, an empty
line after each; LF is fine, CRLF is sent), plus

- ``# ...`` comment lines;
- ``Event: CoreShowChannel`` messages: the live channels of that connection, sent only as the
  answer to ``CoreShowChannels`` (with its ActionID);
- ``@pause SECONDS``: wait before the next message;
- ``@drop``: close the connection abruptly here; what follows is played on the next connection
  (a reconnecting client).

Every other message is sent, in order, once the client has listed the live channels (or right
after the login with ``start_after="login"``).

Run by hand::

    python -m tests.replay.ami_server --port 5038 --username callhook --secret s3cret \\
        tests/data/ami/queue_ringall.ami

then ``callhook source ami --host 127.0.0.1 --username callhook --secret s3cret --org 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from callhook.sources.ami.protocol import AmiMessage, AmiParser, encode

DATA = Path(__file__).resolve().parent.parent / "data" / "ami"
BANNER = "Asterisk Call Manager/5.0.1"


@dataclass
class ScriptSession:
    """What one connection gets: its live channels and the events (or pauses) to send."""

    channels: list[AmiMessage] = field(default_factory=list)
    steps: list[AmiMessage | float] = field(default_factory=list)
    #: close the connection after the steps (else keep it open)
    drop: bool = False

    @property
    def events(self) -> list[AmiMessage]:
        return [step for step in self.steps if isinstance(step, AmiMessage)]


@dataclass
class Script:
    sessions: list[ScriptSession]

    def session(self, index: int) -> ScriptSession:
        """A connection past the scripted ones gets no channels and no events."""
        return self.sessions[index] if index < len(self.sessions) else ScriptSession()


def parse_script(text: str) -> Script:
    sessions = [ScriptSession()]
    fields: list[tuple[str, str]] = []

    def flush() -> None:
        if not fields:
            return
        message = AmiMessage(fields)
        if (message.event or "").lower() == "coreshowchannel":
            sessions[-1].channels.append(message)
        else:
            sessions[-1].steps.append(message)
        fields.clear()

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if line.startswith("#"):
            continue
        if not line.strip():
            flush()
        elif line.startswith("@"):
            flush()
            word, _, arg = line[1:].partition(" ")
            if word == "drop":
                sessions[-1].drop = True
                sessions.append(ScriptSession())
            elif word == "pause":
                sessions[-1].steps.append(float(arg))
            else:
                raise ValueError(f"line {number}: unknown directive {line!r}")
        else:
            key, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"line {number}: not 'Key: Value': {line!r}")
            fields.append((key.strip(), value.strip()))
    flush()
    if not sessions[-1].steps and not sessions[-1].channels and len(sessions) > 1:
        sessions.pop()  # a trailing @drop
    return Script(sessions)


def load_script(name: str | Path) -> Script:
    """A script by path, or by name in tests/data/ami (``queue_ringall``)."""
    path = Path(name)
    if not path.exists():
        path = DATA / (str(name) if str(name).endswith(".ami") else f"{name}.ami")
    return parse_script(path.read_text(encoding="utf-8"))


def merge(scripts: Sequence[Script]) -> Script:
    """Several scripts on one server: their sessions played side by side, in order."""
    count = max(len(s.sessions) for s in scripts)
    merged = []
    for i in range(count):
        parts = [s.session(i) for s in scripts]
        merged.append(
            ScriptSession(
                [c for p in parts for c in p.channels],
                [step for p in parts for step in p.steps],
                any(p.drop for p in parts),
            )
        )
    return Script(merged)


class AmiReplayServer:
    """Serves a ``Script`` on 127.0.0.1: connection *i* gets session *i*."""

    def __init__(
        self,
        script: Script,
        *,
        username: str = "callhook",
        secret: str = "s3cret",
        host: str = "127.0.0.1",
        port: int = 0,
        banner: str = BANNER,
        answer_ping: bool = True,
        allow_channels: bool = True,
        start_after: str = "channels",
        interleave: Iterable[Mapping[str, str]] = (),
        pace: float = 0.0,
    ) -> None:
        self.script = script
        self.username = username
        self.secret = secret
        self.host = host
        self.port = port
        self.banner = banner
        self.answer_ping = answer_ping
        self.allow_channels = allow_channels
        self.start_after = start_after
        #: events sent in the middle of the CoreShowChannels answer (as a busy PBX would)
        self.interleave = [AmiMessage.of(m) for m in interleave]
        self.pace = pace
        #: every action received, in order (Login's secret included: tests only)
        self.actions: list[AmiMessage] = []
        self.connections = 0
        #: set once connection i has sent all its steps
        self.played: list[asyncio.Event] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> AmiReplayServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def wait_played(self, index: int) -> asyncio.Event:
        while len(self.played) <= index:
            self.played.append(asyncio.Event())
        return self.played[index]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index = self.connections
        self.connections += 1
        player: asyncio.Task[None] | None = None
        try:
            writer.write(f"{self.banner}\r\n".encode())
            parser = AmiParser(expect_banner=False)
            logged_in = False
            while data := await reader.read(65536):
                for action in parser.feed(data):
                    self.actions.append(action)
                    name = (action.get("Action") or "").lower()
                    reply = _Reply(writer, action.get("ActionID"))
                    if name == "login":
                        if not self._accepts(action):
                            reply.send("Error", Message="Authentication failed")
                            await writer.drain()
                            return
                        logged_in = True
                        reply.send("Success", Message="Authentication accepted")
                        if _wants_system(action.get("Events")):
                            _event(
                                writer, "FullyBooted", Privilege="system,all", Status="Fully Booted"
                            )
                        if self.start_after == "login" and player is None:
                            player = self._play(index, writer)
                    elif name == "logoff":
                        reply.send("Goodbye", Message="Thanks for all the fish.")
                        await writer.drain()
                        return
                    elif not logged_in:
                        reply.send("Error", Message="Permission denied")
                    elif name == "ping":
                        if self.answer_ping:
                            reply.send("Success", Ping="Pong", Timestamp=f"{time.time():.6f}")
                    elif name == "coreshowchannels":
                        if not self.allow_channels:
                            reply.send("Error", Message="Permission denied")
                            continue
                        self._channels(index, reply)
                        if self.start_after == "channels" and player is None:
                            player = self._play(index, writer)
                    else:
                        reply.send("Error", Message="Invalid/unknown command")
                await writer.drain()
            if player is not None:
                await player  # the client half-closed: let the script finish
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if player is not None and not player.done():
                player.cancel()
            writer.close()
            self._tasks.discard(task)

    def _accepts(self, login: AmiMessage) -> bool:
        user = (login.get("Username") or "").lower()
        return user == self.username.lower() and login.get("Secret") == self.secret

    def _channels(self, index: int, reply: _Reply) -> None:
        channels = self.script.session(index).channels
        reply.send("Success", EventList="start", Message="Channels will follow")
        for i, channel in enumerate(channels):
            reply.event(channel)
            if i == 0:
                for message in self.interleave:
                    reply.writer.write(encode(message.fields))
        if not channels:
            for message in self.interleave:
                reply.writer.write(encode(message.fields))
        fields = {"EventList": "Complete", "ListItems": str(len(channels))}
        reply.event(AmiMessage([("Event", "CoreShowChannelsComplete"), *fields.items()]))

    def _play(self, index: int, writer: asyncio.StreamWriter) -> asyncio.Task[None]:
        return asyncio.create_task(self._steps(index, writer))

    async def _steps(self, index: int, writer: asyncio.StreamWriter) -> None:
        session = self.script.session(index)
        for step in session.steps:
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            writer.write(encode(step.fields))
            await writer.drain()
            if self.pace:
                await asyncio.sleep(self.pace)
        self.wait_played(index).set()
        if session.drop:
            writer.transport.abort()


class _Reply:
    def __init__(self, writer: asyncio.StreamWriter, action_id: str | None) -> None:
        self.writer = writer
        self.action_id = action_id

    def send(self, response: str, **fields: str) -> None:
        pairs = [("Response", response)]
        if self.action_id is not None:
            pairs.append(("ActionID", self.action_id))
        self.writer.write(encode(pairs + list(fields.items())))

    def event(self, message: AmiMessage) -> None:
        """A list item of the action: the scripted fields with the action's ActionID."""
        pairs = [(k, v) for k, v in message.fields if k.lower() != "actionid"]
        if self.action_id is not None:
            pairs.insert(1, ("ActionID", self.action_id))
        self.writer.write(encode(pairs))


def _event(writer: asyncio.StreamWriter, name: str, **fields: str) -> None:
    writer.write(encode([("Event", name), *fields.items()]))


def _wants_system(events: str | None) -> bool:
    """Asterisk sends FullyBooted at login only to sessions that get ``system`` events."""
    mask = (events or "on").lower()
    return mask in ("on", "yes", "true", "1") or any(
        part.strip() in ("system", "all") for part in mask.split(",")
    )


async def _main(args: argparse.Namespace) -> None:
    script = merge([load_script(path) for path in args.scripts])
    server = AmiReplayServer(
        script,
        username=args.username,
        secret=args.secret,
        host=args.host,
        port=args.port,
        pace=args.pace,
    )
    await server.start()
    print(f"AMI replay listening on {args.host}:{server.port} (user {args.username})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Replay scripted AMI sessions (not captures).")
    parser.add_argument("scripts", nargs="+", help=".ami files, or names in tests/data/ami")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5038)
    parser.add_argument("--username", default="callhook")
    parser.add_argument("--secret", default="s3cret")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between events")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
