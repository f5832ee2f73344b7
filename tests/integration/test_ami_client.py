"""The AMI client against the replay server on 127.0.0.1 (real sockets, real framing).

The replay server (tests/replay/ami_server.py) plays scripts built from the documented AMI
event shapes, not captures of a real Asterisk, which cannot be installed here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from callhook.domain.calls import CallEvent
from callhook.sources.ami.calls import AmiCalls
from callhook.sources.ami.client import AmiLink
from callhook.sources.ami.protocol import AmiMessage, AmiProtocolError
from callhook.sources.link import LinkError, LinkLost
from callhook.sources.tracking import CallTracker, Numbering
from tests.replay.ami_server import AmiReplayServer, Script, load_script
from tests.unit.test_ami_calls import EXPECTED, NOW, at, play

USER, SECRET = "callhook", "s3cret"


def link(
    server: AmiReplayServer, *, keepalive: float = 20.0, keepalive_timeout: float = 10.0
) -> AmiLink:
    return AmiLink(
        "127.0.0.1",
        server.port,
        USER,
        SECRET,
        keepalive=keepalive,
        keepalive_timeout=keepalive_timeout,
    )


async def take(events: AsyncIterator[AmiMessage], count: int) -> list[AmiMessage]:
    return [await asyncio.wait_for(anext(events), 5) for _ in range(count)]


def event(name: str, **fields: str) -> AmiMessage:
    return AmiMessage([("Event", name), *fields.items()])


async def test_login_list_channels_read_events_and_log_off() -> None:
    script = load_script("internal_answered")
    async with AmiReplayServer(script) as server:
        session = await link(server).open()
        assert session.banner == "Asterisk Call Manager/5.0.1"
        assert await session.live_channels() == []
        events = session.events()
        got = await take(events, len(script.sessions[0].events))
        assert [m.fields for m in got] == [m.fields for m in script.sessions[0].events]
        await session.close()
        await asyncio.sleep(0.05)
    login, show, logoff = server.actions
    assert login.fields[0] == ("Action", "Login")
    assert login["Username"] == USER
    assert login["Events"] == "call,agent"
    assert login["ActionID"]
    assert show["Action"] == "CoreShowChannels"
    assert logoff["Action"] == "Logoff"


async def test_login_refused_says_what_to_check() -> None:
    async with AmiReplayServer(Script([]), secret="other") as server:
        with pytest.raises(LinkError) as caught:
            await link(server).open()
    assert str(caught.value) == (
        "AMI login refused for user callhook: check username/secret and that manager.conf "
        "allows this host (permit/deny) (Asterisk said: Authentication failed)"
    )
    assert SECRET not in str(caught.value)


async def test_a_peer_that_is_not_ami() -> None:
    async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        try:
            await reader.read()  # until the client gives up
        finally:
            writer.close()

    server = await asyncio.start_server(ssh, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(AmiProtocolError, match="not an Asterisk manager interface"):
            await AmiLink("127.0.0.1", port, USER, SECRET).open()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_silent_peer_times_out_with_a_hint() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # says nothing until the client gives up
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(LinkError, match=r"sent no AMI banner within 0\.2 s"):
            await AmiLink("127.0.0.1", port, USER, SECRET, connect_timeout=0.2).open()
    finally:
        server.close()
        await server.wait_closed()


async def test_connection_refused_is_an_os_error() -> None:
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        await AmiLink("127.0.0.1", port, USER, SECRET).open()


async def test_live_channels_keeps_the_events_that_arrive_meanwhile() -> None:
    script = load_script("reconnect")
    live = script.sessions[1]
    noise = [
        event("Newstate", Channel="PJSIP/210-1", Uniqueid="1.1", Linkedid="1.1"),
        event("Hangup", Channel="PJSIP/210-1", Uniqueid="1.1", Linkedid="1.1", Cause="16"),
    ]
    async with AmiReplayServer(Script([live]), interleave=noise) as server:
        session = await link(server).open()
        channels = await session.live_channels()
        assert [m["Uniqueid"] for m in channels] == [m["Uniqueid"] for m in live.channels]
        assert {m["ActionID"] for m in channels} == {server.actions[1]["ActionID"]}
        got = await take(session.events(), 2 + len(live.events))
        assert [m.fields for m in got[:2]] == [m.fields for m in noise]
        assert [m.fields for m in got[2:]] == [m.fields for m in live.events]
        await session.close()


async def test_core_show_channels_refused_says_which_permission() -> None:
    async with AmiReplayServer(Script([]), allow_channels=False) as server:
        session = await link(server).open()
        with pytest.raises(LinkError, match=r"give it write=reporting in manager\.conf"):
            await session.live_channels()
        await session.close()


async def test_keepalive_pings_and_stays_up() -> None:
    async with AmiReplayServer(Script([])) as server:
        session = await link(server, keepalive=0.05, keepalive_timeout=0.5).open()
        await session.live_channels()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(session.events()), 0.4)
        pings = [a for a in server.actions if a["Action"] == "Ping"]
        assert len(pings) >= 3
        await session.close()


async def test_keepalive_without_an_answer_is_a_lost_link() -> None:
    async with AmiReplayServer(Script([]), answer_ping=False) as server:
        session = await link(server, keepalive=0.05, keepalive_timeout=0.2).open()
        await session.live_channels()
        loop = asyncio.get_running_loop()
        begun = loop.time()
        with pytest.raises(LinkLost, match=r"did not answer the AMI Ping within 0\.2 s"):
            await asyncio.wait_for(anext(session.events()), 5)
        assert loop.time() - begun < 2
        await session.close()


async def test_a_drop_is_a_lost_link_and_the_next_connection_sees_other_channels() -> None:
    script = load_script("reconnect")
    first, second = script.sessions
    async with AmiReplayServer(script) as server:
        session = await link(server).open()
        assert await session.live_channels() == []
        events = session.events()
        got = await take(events, len(first.events))
        assert [m.fields for m in got] == [m.fields for m in first.events]
        with pytest.raises((LinkLost, OSError)):
            await asyncio.wait_for(anext(events), 5)
        await session.close()

        again = await link(server).open()
        channels = await again.live_channels()
        assert [m["Channel"] for m in channels] == [m["Channel"] for m in second.channels]
        await again.close()
    assert server.connections == 2


async def follow(server: AmiReplayServer, calls: AmiCalls) -> list[CallEvent]:
    """What the runner does, without the database: for each scripted connection, connect,
    reconcile with the live channels, map every event; after a scripted drop, the link is lost."""
    made: list[CallEvent] = []
    for scripted in server.script.sessions:
        session = await link(server).open()
        made += calls.reconcile(await session.live_channels(), at(NOW))
        events = session.events()
        for message in await take(events, len(scripted.events)):
            made += calls.feed(message, at(NOW))
        if scripted.drop:
            with pytest.raises((LinkLost, OSError)):
                await asyncio.wait_for(anext(events), 5)
        await session.close()
    return made


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_over_tcp_every_shape_maps_as_when_fed_directly(name: str) -> None:
    script = load_script(name)
    async with AmiReplayServer(script) as server:
        got = await follow(server, AmiCalls(Numbering(3), CallTracker()))
    assert got == EXPECTED[name]
    assert got == play(script)
