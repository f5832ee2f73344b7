"""A small FreeSWITCH event socket (ESL) replay server, and the loader of its scripts.

FreeSWITCH cannot be installed here, so the ESL source is tested against this server. It speaks
the real framing of ``mod_event_socket.c`` (``auth/request``; ``auth`` answered ``+OK accepted``
or ``-ERR invalid`` followed by a disconnect notice; ``event plain|json NAMES`` with only the
subscribed events sent, URL-encoded or as JSON; ``api show channels as json`` and ``api status``
as ``api/response``; ``exit`` answered ``+OK bye`` and a disconnect notice; an ACL refusal as
``text/rude-rejection``) and replays scripted event sequences.

The scripts (``tests/data/esl/*.esl``) are BUILT FROM THE DOCUMENTED EVENT SHAPES (the
FreeSWITCH docs: mod_event_socket, Event List, Channel Variables; the sources
``switch_ivr_bridge.c``, ``switch_ivr_originate.c``, ``mod_loopback.c``), NOT CAPTURED FROM A
REAL FREESWITCH. If a real capture becomes available, replay it verbatim instead.

Script format (text, UTF-8; ``#`` starts a comment line)::

    [script]                      core-uuid, hostname, ipv4 and the start time of the call
    start: 2026-11-27T18:16:12Z

    [channel a]                   the headers of one channel, as FreeSWITCH would fill them
    Unique-ID: 0b8e...            (values written plainly; the server URL-encodes them)
    Channel-Name: sofia/internal/1000@pbx.example.com

    [event CHANNEL_CREATE a +0.000]   one event: name, channel (none for HEARTBEAT), seconds
    Answer-State: ringing             after the start; then headers of this event only

Every event gets the common headers (Core-UUID, FreeSWITCH-Hostname, Event-Date-*,
Event-Sequence, Event-Calling-*), its channel's headers, the channel state FreeSWITCH reports
for that event, and its own. Events FreeSWITCH sends without channel variables (it adds them
to CHANNEL_CREATE, CHANNEL_ANSWER, CHANNEL_BRIDGE, CHANNEL_HANGUP_COMPLETE... but not to
CHANNEL_OUTGOING, CHANNEL_STATE or CHANNEL_CALLSTATE) leave the ``variable_*`` headers out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

Event = dict[str, str]

SCRIPTS = Path(__file__).parents[1] / "data" / "esl"
GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
SHUTDOWN = "The system is being shut down.\n"
STATUS = (
    "UP 0 years, 0 days, 3 hours, 12 minutes, 7 seconds, 211 milliseconds, 94 microseconds\n"
    "FreeSWITCH (Version 1.10.12 -release 64bit) is ready\n"
    "41 session(s) since startup\n2 session(s) - peak 9, last 5min 4\n"
    "0 session(s) per Sec out of max 30, peak 3, last 5min 1\n1000 session(s) max\n"
    "min idle cpu 0.00/97.83\nCurrent Stack Size/Max 240K/8192K\n"
)

# --- scripts ----------------------------------------------------------------------------------

#: per event: Event-Calling-File, -Function, -Line-Number, Channel-State, Channel-Call-State,
#: Answer-State (None: the event carries no channel state)
# fmt: off
_SHAPES: dict[str, tuple[str, str, int, str | None, str | None, str | None]] = {
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 627,
                       "CS_INIT", "DOWN", "ringing"),
    "CHANNEL_OUTGOING": ("switch_core_session.c", "switch_core_session_outgoing_channel", 741,
                         "CS_INIT", "DOWN", "ringing"),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", 2093,
                      "CS_ROUTING", "DOWN", "ringing"),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", 326,
                          "CS_CONSUME_MEDIA", "RINGING", "ringing"),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2947,
                        "CS_EXECUTE", "RINGING", "ringing"),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered",
                               3719, "CS_CONSUME_MEDIA", "EARLY", "early"),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3996,
                       "CS_EXECUTE", "ACTIVE", "answered"),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1653,
                       "CS_EXCHANGE_MEDIA", "ACTIVE", "answered"),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1806,
                         "CS_EXECUTE", "ACTIVE", "answered"),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c",
                                "switch_core_session_reporting_state", 972,
                                "CS_REPORTING", "HANGUP", "hangup"),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1719,
                        "CS_DESTROY", "HANGUP", "hangup"),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", 91, None, None, None),
}
_STATE_NUMBERS = {
    "CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8,
    "CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12,
}
# fmt: on
#: FreeSWITCH adds the channel variables to these only (unless verbose_events is set)
_WITHOUT_VARIABLES = {"CHANNEL_OUTGOING", "CHANNEL_STATE", "CHANNEL_CALLSTATE", "HEARTBEAT"}
_EVENT_BLOCK = re.compile(r"\[event (?P<name>[A-Z_]+)(?: (?P<channel>\w+))? \+(?P<at>[\d.]+)\]")


@dataclass
class Script:
    name: str
    events: list[Event]
    #: channel reference (``a``, ``b``...) -> its headers (as the script wrote them)
    channels: dict[str, Event] = field(default_factory=dict)
    #: channel reference -> Caller-Channel-Created-Time (its first event's time, microseconds)
    created: dict[str, str] = field(default_factory=dict)

    def uuid(self, ref: str) -> str:
        return self.channels[ref]["Unique-ID"]

    def row(self, ref: str, callstate: str = "ACTIVE") -> dict[str, str]:
        """The channel as a row of ``show channels as json``, created when its first event
        came, in ``callstate`` (ACTIVE: answered; RINGING, EARLY: not yet)."""
        created = {"Caller-Channel-Created-Time": self.created[ref]} if ref in self.created else {}
        return channel_row(created | self.channels[ref], callstate)


def load_script(name: str) -> Script:
    """``tests/data/esl/NAME.esl`` as the events the server sends (values decoded)."""
    text = (SCRIPTS / f"{name}.esl").read_text("utf-8")
    blocks: list[tuple[str, Event]] = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            blocks.append((line, {}))
            continue
        header, sep, value = line.partition(": ")
        if not sep or not blocks:
            raise ValueError(f"{name}.esl: {line!r} is not a 'Name: value' line of a block")
        blocks[-1][1][header] = value
    settings = next((h for title, h in blocks if title == "[script]"), {})
    start = datetime.fromisoformat(settings.get("start", "2026-11-27T18:16:12Z"))
    channels = {
        title[len("[channel ") : -1]: _derived(h)
        for title, h in blocks
        if title.startswith("[channel ")
    }
    events: list[Event] = []
    created: dict[str, str] = {}
    for sequence, (title, headers) in enumerate(
        (b for b in blocks if b[0].startswith("[event ")), start=48213
    ):
        found = _EVENT_BLOCK.fullmatch(title)
        if found is None:
            raise ValueError(f"{name}.esl: bad event block {title!r}")
        at = start + timedelta(seconds=float(found["at"]))
        event = _common(found["name"], at, sequence, settings)
        ref = found["channel"]
        if ref:
            channel = dict(channels[ref])
            stamp = created.setdefault(ref, str(_micros(at)))
            channel.setdefault("Caller-Channel-Created-Time", stamp)
            if found["name"] in _WITHOUT_VARIABLES:
                channel = {k: v for k, v in channel.items() if not k.startswith("variable_")}
            event |= channel | _state(found["name"])
        events.append(event | headers)
    return Script(name, events, channels, created)


def _derived(headers: Event) -> Event:
    """What FreeSWITCH fills from a channel's own headers."""
    uuid, name = headers["Unique-ID"], headers["Channel-Name"]
    direction = headers.get("Call-Direction", "inbound")
    derived = {
        "Presence-Call-Direction": direction,
        "Channel-HIT-Dialplan": "true" if direction == "inbound" else "false",
        "Channel-Call-UUID": uuid,
        "Caller-Direction": direction,
        "Caller-Logical-Direction": direction,
        "Caller-Unique-ID": uuid,
        "Caller-Channel-Name": name,
        "Caller-Source": "mod_loopback" if name.startswith("loopback/") else "mod_sofia",
        "Caller-Profile-Index": "1",
        "variable_direction": direction,
        "variable_uuid": uuid,
        "variable_channel_name": name,
    }
    return derived | headers


def _common(name: str, at: datetime, sequence: int, settings: Mapping[str, str]) -> Event:
    calling_file, function, line = _SHAPES.get(name, ("switch_event.c", "switch_event_fire", 1))[:3]
    return {
        "Event-Name": name,
        "Core-UUID": settings.get("core-uuid", "5a3b9a74-3c0e-4f1c-9d4b-0c6e2a7f1e55"),
        "FreeSWITCH-Hostname": settings.get("hostname", "pbx.example.com"),
        "FreeSWITCH-Switchname": settings.get("hostname", "pbx.example.com"),
        "FreeSWITCH-IPv4": settings.get("ipv4", "192.0.2.2"),
        "FreeSWITCH-IPv6": "::1",
        "Event-Date-Local": at.strftime("%Y-%m-%d %H:%M:%S"),
        "Event-Date-GMT": at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Event-Date-Timestamp": str(_micros(at)),
        "Event-Calling-File": calling_file,
        "Event-Calling-Function": function,
        "Event-Calling-Line-Number": str(line),
        "Event-Sequence": str(sequence),
    }


def _state(name: str) -> Event:
    shape = _SHAPES.get(name)
    if shape is None or shape[3] is None:
        return {}
    state, call_state, answer = shape[3], shape[4] or "", shape[5] or ""
    return {
        "Channel-State": state,
        "Channel-Call-State": call_state,
        "Channel-State-Number": str(_STATE_NUMBERS[state]),
        "Answer-State": answer,
    }


def _micros(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def channel_row(channel: Mapping[str, str], callstate: str = "ACTIVE") -> dict[str, str]:
    """A channel's row in ``show channels as json`` (the columns of the channels table)."""
    created = int(channel.get("Caller-Channel-Created-Time", "1795803372000000")) // 1_000_000
    return {
        "uuid": channel["Unique-ID"],
        "direction": channel.get("Call-Direction", "inbound"),
        "created": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "created_epoch": str(created),
        "name": channel["Channel-Name"],
        "state": "CS_EXECUTE",
        "cid_name": channel.get("Caller-Caller-ID-Name", ""),
        "cid_num": channel.get("Caller-Caller-ID-Number", ""),
        "ip_addr": channel.get("Caller-Network-Addr", ""),
        "dest": channel.get("Caller-Destination-Number", ""),
        "application": "bridge",
        "application_data": "",
        "dialplan": "XML",
        "context": channel.get("Caller-Context", "default"),
        "read_codec": "PCMA",
        "read_rate": "8000",
        "read_bit_rate": "64000",
        "write_codec": "PCMA",
        "write_rate": "8000",
        "write_bit_rate": "64000",
        "secure": "",
        "hostname": "pbx.example.com",
        "presence_id": "",
        "presence_data": "",
        "accountcode": "",
        "callstate": callstate,
        "callee_name": "",
        "callee_num": "",
        "callee_direction": "",
        "call_uuid": channel.get("Channel-Call-UUID", channel["Unique-ID"]),
        "sent_callee_name": "",
        "sent_callee_num": "",
        "initial_cid_name": channel.get("Caller-Caller-ID-Name", ""),
        "initial_cid_num": channel.get("Caller-Caller-ID-Number", ""),
        "initial_ip_addr": channel.get("Caller-Network-Addr", ""),
        "initial_dest": channel.get("Caller-Destination-Number", ""),
        "initial_dialplan": "XML",
        "initial_context": channel.get("Caller-Context", "default"),
    }


# --- the wire -----------------------------------------------------------------------------------


def encode_event(event: Mapping[str, str], event_format: str) -> bytes:
    """One event as FreeSWITCH frames it: outer headers, then the plain or JSON body."""
    if event_format == "json":
        body = json.dumps(dict(event)).encode()
    else:
        lines = "".join(
            f"{name}: {quote(value, safe=_PLAIN_SAFE)}\n"
            for name, value in event.items()
            if name != "_body"
        )
        inner = event.get("_body")
        text = lines + (f"Content-Length: {len(inner.encode())}\n\n{inner}" if inner else "\n")
        body = text.encode()
    kind = "json" if event_format == "json" else "plain"
    return f"Content-Length: {len(body)}\nContent-Type: text/event-{kind}\n\n".encode() + body


#: what switch_url_encode leaves alone besides letters and digits
_PLAIN_SAFE = "-_.~!$'()*,/"


def frame(content_type: str, body: str = "", **headers: str) -> bytes:
    data = body.encode()
    lines = [f"Content-Type: {content_type}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if data:
        lines.append(f"Content-Length: {len(data)}")
    return ("\n".join(lines) + "\n\n").encode() + data


def reply(text: str) -> bytes:
    return frame("command/reply", Reply_Text=text)


def channels_json(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return '{"row_count":0}'
    return json.dumps({"row_count": len(rows), "rows": [dict(r) for r in rows]})


# --- the server -------------------------------------------------------------------------------


@dataclass
class Plan:
    """What one connection gets, in order of connection (the last plan repeats)."""

    #: sent once subscribed (after ``show channels`` was answered, if ``after_channels``)
    events: Sequence[Mapping[str, str]] = ()
    #: the rows ``show channels as json`` answers
    channels: Sequence[Mapping[str, str]] = ()
    #: sent just before the answer to ``show channels`` (they arrive while the client waits)
    during_channels: Sequence[Mapping[str, str]] = ()
    after_channels: bool = True
    #: close the connection (no notice) after this many events of ``events``
    drop_after: int | None = None
    #: send a disconnect notice (FreeSWITCH shutting down) after this many events, then close
    shutdown_after: int | None = None
    #: False: never answer ``api status`` (a stuck FreeSWITCH, for keepalive tests)
    answer_status: bool = True
    #: refuse the connection by ACL (text/rude-rejection) before auth/request
    reject: bool = False
    #: seconds between events
    pace: float = 0.0


class EslReplayServer:
    """``async with EslReplayServer(password, [Plan(...), ...]) as server:`` on 127.0.0.1."""

    def __init__(self, password: str = "ClueCon", plans: Sequence[Plan] = (Plan(),)) -> None:
        self.password = password
        self.plans = list(plans)
        self.host = "127.0.0.1"
        self.port = 0
        #: the commands each connection sent, in order (``auth`` with its password)
        self.commands: list[list[str]] = []
        self.connected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> EslReplayServer:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def connections(self) -> int:
        return len(self.commands)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.commands)
        plan = self.plans[min(index, len(self.plans) - 1)]
        commands: list[str] = []
        self.commands.append(commands)
        self._writers.add(writer)
        self.connected.set()
        try:
            await self._converse(plan, reader, writer, commands)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _converse(
        self,
        plan: Plan,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        commands: list[str],
    ) -> None:
        if plan.reject:
            writer.write(frame("text/rude-rejection", "Access Denied, go away.\n"))
            await writer.drain()
            return
        writer.write(frame("auth/request"))
        authed, wanted, fmt = False, set[str](), "plain"
        sender: asyncio.Task[None] | None = None
        while True:
            line = (await reader.readuntil(b"\n\n")).decode().strip()
            commands.append(line)
            verb, _, rest = line.partition(" ")
            if verb == "exit":
                writer.write(reply("+OK bye") + frame("text/disconnect-notice", GOODBYE))
                await writer.drain()
                return
            if not authed:
                if verb != "auth":
                    writer.write(reply("-ERR command not found"))
                    continue
                if rest != self.password:
                    writer.write(reply("-ERR invalid") + frame("text/disconnect-notice", GOODBYE))
                    await writer.drain()
                    return
                authed = True
                writer.write(reply("+OK accepted"))
            elif verb == "event":
                fmt, _, names = rest.partition(" ")
                wanted |= set(names.split())
                writer.write(reply(f"+OK event listener enabled {fmt}"))
                if sender is None and not plan.after_channels:
                    sender = self._send(plan, writer, wanted, fmt)
            elif line == "api show channels as json":
                for event in plan.during_channels:
                    writer.write(encode_event(event, fmt))
                writer.write(frame("api/response", channels_json(plan.channels)))
                if sender is None:
                    sender = self._send(plan, writer, wanted, fmt)
            elif line == "api status":
                if plan.answer_status:
                    writer.write(frame("api/response", STATUS))
            elif verb == "api":
                writer.write(frame("api/response", f"-ERR {rest.split()[0]} Command not found!\n"))
            else:
                writer.write(reply("-ERR command not found"))
            await writer.drain()

    def _send(
        self, plan: Plan, writer: asyncio.StreamWriter, wanted: set[str], fmt: str
    ) -> asyncio.Task[None]:
        task = asyncio.create_task(self._play(plan, writer, wanted, fmt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _play(
        self, plan: Plan, writer: asyncio.StreamWriter, wanted: set[str], fmt: str
    ) -> None:
        sent = 0
        for event in plan.events:
            if plan.drop_after is not None and sent >= plan.drop_after:
                writer.close()
                return
            if plan.shutdown_after is not None and sent >= plan.shutdown_after:
                writer.write(frame("text/disconnect-notice", SHUTDOWN))
                await writer.drain()
                writer.close()
                return
            if "ALL" in wanted or event.get("Event-Name") in wanted:
                writer.write(encode_event(event, fmt))
                await writer.drain()
                if plan.pace:
                    await asyncio.sleep(plan.pace)
            sent += 1
        if plan.drop_after is not None and sent >= plan.drop_after:
            writer.close()
