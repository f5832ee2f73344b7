"""The ESL client (sources/esl/client.py) against the replay server on 127.0.0.1.

FreeSWITCH is not installable here: tests/replay/esl_server.py speaks the real framing and
replays call sequences built from the documented event shapes (not captured from a real
FreeSWITCH).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from callhook.domain.calls import CallEvent, Kind, Party
from callhook.sources.esl.calls import EslCalls
from callhook.sources.esl.client import AUTH_REFUSED, EVENTS, EslLink, EslSession
from callhook.sources.link import LinkError, LinkLost, Message
from callhook.sources.tracking import GONE_AFTER_RECONNECT, CallTracker, Numbering
from tests.replay.esl_server import EslReplayServer, Plan, load_script

PASSWORD = "s3cret-Cl.ue"
SUBSCRIBE = "event {} " + " ".join(EVENTS)


def subscribed(events: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    return [dict(e) for e in events if e["Event-Name"] in EVENTS]


def link(server: EslReplayServer, password: str = PASSWORD, **options: object) -> EslLink:
    return EslLink(server.host, server.port, password, **options)  # type: ignore[arg-type]


async def take(session: EslSession, count: int) -> list[Message]:
    got: list[Message] = []
    if count:
        async for event in session.events():
            got.append(event)
            if len(got) == count:
                break
    return got


async def drain(session: EslSession) -> tuple[list[Message], BaseException]:
    """Every event until the session fails; the events and the failure."""
    got: list[Message] = []
    try:
        async for event in session.events():
            got.append(event)
    except (LinkError, OSError) as exc:
        return got, exc
    raise AssertionError("events() ended without an error")


@contextlib.asynccontextmanager
async def serving(*plans: Plan, password: str = PASSWORD) -> AsyncIterator[EslReplayServer]:
    async with asyncio.timeout(15), EslReplayServer(password, plans or [Plan()]) as server:
        yield server


# --- logging in ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event_format", ["plain", "json"])
async def test_login_subscribe_and_follow_a_call(event_format: str) -> None:
    script = load_script("ring-group")
    async with serving(Plan(events=script.events)) as server:
        session = await link(server, event_format=event_format).open()
        assert await session.live_channels() == []
        expected = subscribed(script.events)
        assert await take(session, len(expected)) == expected
        await session.close()
        await session.close()  # twice is harmless
        assert server.commands[0] == [
            f"auth {PASSWORD}",
            SUBSCRIBE.format(event_format),
            "api show channels as json",
            "exit",
        ]
        with pytest.raises(LinkLost, match="was closed"):
            await take(session, 1)


async def test_a_refused_password_says_what_to_check() -> None:
    async with serving() as server:
        with pytest.raises(LinkError) as caught:
            await link(server, "ClueCon").open()
        assert str(caught.value) == AUTH_REFUSED
        assert "ClueCon" not in str(caught.value)
        assert server.commands == [["auth ClueCon"]]


async def test_a_host_refused_by_the_acl() -> None:
    async with serving(Plan(reject=True)) as server:
        with pytest.raises(LinkError, match=r"refused this host .*apply-inbound-acl"):
            await link(server).open()


@pytest.mark.parametrize(
    ("greeting", "problem"),
    [
        (b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n", "is not a FreeSWITCH event socket"),
        (b"Content-Type: text/html\n\n", "is not a FreeSWITCH event socket: it sent text/html"),
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", "sent no ESL greeting .* within 0.3 s"),
    ],
)
async def test_a_peer_that_is_not_freeswitch(greeting: bytes, problem: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await reader.read()  # keep the connection open until the client leaves
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            with pytest.raises(LinkError, match=problem):
                await EslLink("127.0.0.1", port, PASSWORD, connect_timeout=0.3).open()
    finally:
        server.close()
        await server.wait_closed()


async def test_nobody_listening_is_an_os_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError):  # noqa: PT011 (the runner reports any OSError as unreachable)
        await EslLink("127.0.0.1", port, PASSWORD).open()


# --- live channels ------------------------------------------------------------------------------


async def test_events_that_arrive_during_show_channels_are_kept_in_order() -> None:
    script = load_script("internal-answered")
    events = subscribed(script.events)
    rows = [script.row("a"), script.row("b")]
    plan = Plan(events=events[3:], during_channels=events[:3], channels=rows)
    async with serving(plan) as server:
        session = await link(server).open()
        assert await session.live_channels() == rows
        assert await take(session, len(events)) == events
        await session.close()


# --- a link that fails --------------------------------------------------------------------------


async def test_a_stuck_freeswitch_fails_the_keepalive() -> None:
    async with serving(Plan(answer_status=False)) as server:
        session = await link(server, keepalive=0.1, keepalive_timeout=0.2).open()
        started = time.monotonic()
        got, failure = await drain(session)
        assert got == []
        assert isinstance(failure, LinkLost)
        assert "did not answer `api status` within 0.2 s (the keepalive)" in str(failure)
        assert time.monotonic() - started < 3
        await session.close()


async def test_a_live_freeswitch_passes_the_keepalive() -> None:
    async with serving(Plan()) as server:
        session = await link(server, keepalive=0.05, keepalive_timeout=1).open()
        await asyncio.sleep(0.4)
        assert server.commands[0].count("api status") >= 3
        await session.live_channels()  # still answering
        await session.close()


async def test_a_dropped_connection_is_link_lost_after_the_events_before_it() -> None:
    script = load_script("internal-answered")
    async with serving(Plan(events=script.events, drop_after=8)) as server:
        session = await link(server).open()
        await session.live_channels()
        got, failure = await drain(session)
        assert got == subscribed(script.events[:8])
        assert isinstance(failure, LinkLost | OSError)
        await session.close()


async def test_a_disconnect_notice_is_link_lost_with_its_reason() -> None:
    script = load_script("internal-answered")
    async with serving(Plan(events=script.events, shutdown_after=4)) as server:
        session = await link(server, event_format="json").open()
        await session.live_channels()
        got, failure = await drain(session)
        assert got == subscribed(script.events[:4])
        assert isinstance(failure, LinkLost)
        assert str(failure).endswith("ended the connection: The system is being shut down.")
        await session.close()


async def test_reconnect_closes_the_calls_that_ended_meanwhile() -> None:
    """What the runner does, by hand: follow, lose the link, reconnect, reconcile with the new
    live channels, follow again. The internal call ended during the outage (its hangups were
    never seen: reconstructed); the ring group call is still up and ends normally."""
    internal, group = load_script("internal-answered"), load_script("ring-group")
    group_cut = next(
        i for i, e in enumerate(group.events) if e["Event-Name"] == "CHANNEL_HANGUP_COMPLETE"
    )
    before = internal.events[:9] + group.events[:group_cut]
    first = Plan(events=before, drop_after=len(before))
    second = Plan(events=group.events[group_cut:], channels=[group.row("a"), group.row("b2")])
    calls = EslCalls(Numbering(3, r"\d{2,4}"), CallTracker())
    async with serving(first, second) as server:
        session = await link(server).open()
        assert calls.reconcile(await session.live_channels(), _now()) == []
        got, failure = await drain(session)
        made = [e for m in got for e in calls.feed(m, _now())]
        assert isinstance(failure, LinkLost)
        await session.close()
        assert calls.tracker.tracked == 2
        assert {e.kind for e in made} == {Kind.STARTED, Kind.RINGING, Kind.ANSWERED}

        session = await link(server).open()
        closed = calls.reconcile(await session.live_channels(), _now())
        assert [(e.call_id, e.kind, e.reconstructed) for e in closed] == [
            (internal.uuid("a"), Kind.ENDED, GONE_AFTER_RECONNECT)
        ]
        rest = subscribed(group.events[group_cut:])
        made = [e for m in await take(session, len(rest)) for e in calls.feed(m, _now())]
        assert [(e.call_id, e.kind, e.reconstructed) for e in made] == [
            (group.uuid("a"), Kind.ENDED, None)
        ]
        await session.close()
    assert server.connections == 2
    assert calls.tracker.tracked == 0


async def test_reconnect_starts_a_call_that_began_meanwhile_and_follows_it_to_its_end() -> None:
    """The link drops while an internal call is up; meanwhile that call ends and an outside
    call comes in and is answered by 1001. On reconnect ``show channels`` lists only the new
    call's two legs: the internal call is closed (reconstructed), the new one is started
    back-dated to its caller leg's creation, rings and is answered; its hangups end it."""
    internal, did_call = load_script("internal-answered"), load_script("inbound-did")
    first = Plan(events=internal.events[:9], drop_after=9)
    second = Plan(
        events=did_call.events[-4:],  # both CHANNEL_HANGUP_COMPLETEs and CHANNEL_DESTROYs
        channels=[did_call.row("a"), did_call.row("b")],
    )
    calls = EslCalls(Numbering(3, r"\d{2,4}"), CallTracker())
    began = datetime(2026, 11, 27, 18, 20, 41, tzinfo=UTC)  # inbound-did's start
    now = began + timedelta(seconds=30)
    old, new, did = internal.uuid("a"), did_call.uuid("a"), "15550001111"
    async with serving(first, second) as server:
        session = await link(server).open()
        assert calls.reconcile(await session.live_channels(), now) == []
        got, _failure = await drain(session)
        assert [e.kind for m in got for e in calls.feed(m, now)] == [Kind.STARTED, Kind.ANSWERED]
        await session.close()

        session = await link(server, event_format="json").open()
        caught_up = calls.reconcile(await session.live_channels(), now)
        assert caught_up == [
            CallEvent(
                f"{old}:ended",
                old,
                Kind.ENDED,
                now,
                reconstructed=GONE_AFTER_RECONNECT,
            ),
            CallEvent(
                f"{new}:started",
                new,
                Kind.STARTED,
                began,
                Party(None, "+15551234567", "JO DOE"),
                Party(None, did),
                did=did,
                dialled=did,
            ),
            CallEvent(f"{new}:ring:0003*1001", new, Kind.RINGING, now, extension="0003*1001"),
            CallEvent(f"{new}:answered", new, Kind.ANSWERED, now, extension="0003*1001"),
        ]
        hangups = subscribed(did_call.events[-4:])
        made = [e for m in await take(session, len(hangups)) for e in calls.feed(m, now)]
        assert made == [
            CallEvent(f"{new}:ended", new, Kind.ENDED, began + timedelta(seconds=188.030))
        ]
        await session.close()
    assert calls.tracker.tracked == 0
    assert calls.legs == 0


def _now() -> datetime:
    return datetime.now(UTC)
