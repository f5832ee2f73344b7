"""The link runner against an AMI replay server (real framing on 127.0.0.1, scripted events
built from the documented shapes) and a real database: a PBX that will not list its channels
and ignores Ping is still followed; a refused login is reported and retried; stopping commits
what was queued and reports the link down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from callhook.service import utcnow
from callhook.sources.ami.calls import AmiCalls
from callhook.sources.ami.client import AmiLink
from callhook.sources.registry import SourceRegistry
from callhook.sources.runner import Backoff, IngestSink, LinkRunner
from callhook.sources.spec import make_spec
from callhook.sources.tracking import CallTracker, Numbering
from callhook.wiring import Components
from tests.replay.ami_server import AmiReplayServer, load_script


async def _runner(components: Components, port: int, secret: str = "s3cret") -> LinkRunner:
    spec = make_spec(
        "ami", "127.0.0.1", port, username="callhook", secret=secret, org=3, name="pbx"
    )
    source = await SourceRegistry(components.engine).ensure("pbx")
    link = AmiLink("127.0.0.1", port, "callhook", secret, keepalive=0.3, keepalive_timeout=0.3)
    return LinkRunner(
        spec,
        link,
        AmiCalls(Numbering(3), CallTracker()),
        IngestSink(components.ingest, source),
        components.engine,
        clock=utcnow,
        backoff=Backoff(0.05, 0.2),
    )


async def _until(done: Callable[[], bool], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.05)


async def _stored(components: Components) -> int:
    (info,) = [i for i in await SourceRegistry(components.engine).list() if i.source.name == "pbx"]
    return info.events


async def test_a_pbx_that_will_not_list_channels_nor_answer_ping_is_still_followed(
    components: Components,
) -> None:
    script = load_script("internal_answered")
    server = AmiReplayServer(
        script, allow_channels=False, answer_ping=False, pace=0.1, start_after="login"
    )
    async with server:
        runner = await _runner(components, server.port)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await asyncio.wait_for(server.wait_played(0).wait(), 60)
        await _until(lambda: runner.sink.committed >= 3)
        stop.set()
        await task
    # one connection: the missing Pongs did not count as a dead link while events flowed
    assert server.connections == 1
    assert runner.status.reconnects == 0
    assert runner.sink.committed == 3  # started, answered, ended
    assert await _stored(components) == 3
    assert runner.status.last_error == "stopped"
    links = await SourceRegistry(components.engine).links()
    assert [(x["name"], x["state"], x["reconnects"]) for x in links] == [("pbx", "disconnected", 0)]


async def test_a_refused_login_is_reported_and_retried(components: Components) -> None:
    script = load_script("internal_answered")
    async with AmiReplayServer(script) as server:
        runner = await _runner(components, server.port, secret="wrong")
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await _until(lambda: server.connections >= 3)
        stop.set()
        await task
    assert runner.status.connections == 0
    assert runner.status.last_error is not None
    assert "AMI login refused for user callhook" in runner.status.last_error
    assert "wrong" not in runner.status.last_error
    assert runner.sink.committed == 0


async def test_a_link_down_at_start_says_why_and_connects_when_the_pbx_comes(
    components: Components,
) -> None:
    script = load_script("unanswered_busy")
    server = AmiReplayServer(script)
    await server.start()
    port = server.port
    await server.close()  # nothing listens there now
    runner = await _runner(components, port)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await _until(lambda: runner.status.last_error is not None)
    assert str(runner.status.last_error).startswith(f"cannot reach 127.0.0.1:{port}")
    async with AmiReplayServer(script, port=port) as again:
        await asyncio.wait_for(again.wait_played(0).wait(), 60)
        await _until(lambda: runner.sink.committed >= 2)
        assert runner.status.connected
        assert runner.status.since is not None
        assert runner.status.since > datetime(2026, 1, 1, tzinfo=UTC)
        stop.set()
        await task
    assert runner.status.reconnects == 0  # the first connection that worked
    assert await _stored(components) == 2


async def test_a_bare_peer_that_ignores_every_action_but_login_is_followed(
    components: Components,
) -> None:
    """The least an AMI peer can do (a hand-written replay, say): the banner, a login answer
    without ActionID, then events; no answer to CoreShowChannels or Ping, ever. The list is
    given up after CHANNELS_TIMEOUT and the events held meanwhile are followed in order."""
    script = load_script("unanswered_busy")

    async def bare(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"Asterisk Call Manager/2.10.4\r\n")
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n")
            for event in script.session(0).events:
                fields = "".join(f"{k}: {v}\r\n" for k, v in event.items())
                writer.write(f"{fields}\r\n".encode())
            await writer.drain()
            while await reader.read(4096):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(bare, "127.0.0.1", 0)
    async with server:
        runner = await _runner(components, server.sockets[0].getsockname()[1])
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await _until(lambda: runner.sink.committed >= 2)
        stop.set()
        await task
    assert runner.status.connections == 1
    assert await _stored(components) == 2  # started, ended BUSY
