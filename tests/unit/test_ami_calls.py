"""AMI events -> call events, shape by shape, and the triggers they fire.

The scripts in tests/data/ami were written from the documented AMI event shapes
(docs.asterisk.org, asterisk/testsuite), not captured from a running Asterisk, which cannot be
installed here. Each one must give exactly the call events below; then callhook's domain
(``callhook.domain.calls.apply``) must fire the triggers the ingest reference promises.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from callhook.domain.calls import CallEvent, Kind, Party, Trigger, fire_all
from callhook.sources.ami.calls import AmiCalls
from callhook.sources.ami.channels import dialled_number, endpoint_of
from callhook.sources.ami.protocol import AmiMessage
from callhook.sources.tracking import GONE_AFTER_RECONNECT, CallTracker, Numbering
from tests.replay.ami_server import Script, ScriptSession, load_script

#: when the mapper's clock says "now" (events without a Timestamp, reconciles)
NOW = 1796044860.0
GONE = GONE_AFTER_RECONNECT


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def P(*, ext: str | None = None, number: str | None = None, name: str | None = None) -> Party:
    return Party(f"0003*{ext}" if ext else None, number, name)


def started(
    call_id: str,
    ts: float,
    caller: Party,
    callee: Party,
    *,
    did: str | None = None,
    dialled: str | None = None,
) -> CallEvent:
    return CallEvent(
        f"{call_id}:started",
        call_id,
        Kind.STARTED,
        at(ts),
        caller=caller,
        callee=callee,
        did=did,
        dialled=dialled,
    )


def ringing(call_id: str, ts: float, ext: str) -> CallEvent:
    extension = f"0003*{ext}"
    return CallEvent(
        f"{call_id}:ring:{extension}", call_id, Kind.RINGING, at(ts), extension=extension
    )


def answered(call_id: str, ts: float, ext: str | None = None) -> CallEvent:
    extension = f"0003*{ext}" if ext else None
    return CallEvent(f"{call_id}:answered", call_id, Kind.ANSWERED, at(ts), extension=extension)


def ended(
    call_id: str, ts: float, disposition: str | None = None, *, reconstructed: str | None = None
) -> CallEvent:
    return CallEvent(
        f"{call_id}:ended",
        call_id,
        Kind.ENDED,
        at(ts),
        disposition=disposition,
        reconstructed=reconstructed,
    )


def mapper(pattern: str = r"\d{1,12}") -> AmiCalls:
    return AmiCalls(Numbering(3, pattern), CallTracker())


def play(script: Script, calls: AmiCalls | None = None) -> list[CallEvent]:
    """As the runner does: reconcile with each connection's live channels, then its events."""
    calls = calls or mapper()
    events: list[CallEvent] = []
    for session in script.sessions:
        events += calls.reconcile(session.channels, at(NOW))
        for message in session.events:
            events += calls.feed(message, at(NOW))
    return events


EXPECTED: dict[str, list[CallEvent]] = {
    "internal_answered": [
        started(
            "1796041200.84",
            1796041200.014924,
            P(ext="210", number="210", name="Alice Smith"),
            P(ext="211"),
            dialled="211",
        ),
        answered("1796041200.84", 1796041204.731731, "211"),
        ended("1796041200.84", 1796041249.804924),
    ],
    "inbound_trunk": [
        started(
            "1796041500.112",
            1796041500.006193,
            P(number="+15551234567", name="JO DOE"),
            P(ext="210"),
            did="+15550001111",
            dialled="+15550001111",
        ),
        answered("1796041500.112", 1796041507.250731, "210"),
        ended("1796041500.112", 1796041632.020924),
    ],
    "outbound_trunk": [
        started(
            "1796041800.201",
            1796041800.024655,
            P(ext="210", number="+15550001111", name="Alice Smith"),
            P(number="+15551234567"),
            dialled="915551234567",
        ),
        answered("1796041800.201", 1796041811.930731),
        ended("1796041800.201", 1796041871.332924),
    ],
    "unanswered_busy": [
        started(
            "1796042100.301",
            1796042100.012193,
            P(ext="212", number="212", name="Carol White"),
            P(ext="213"),
            dialled="213",
        ),
        ended("1796042100.301", 1796042109.75, "BUSY"),
    ],
    "unanswered_noanswer": [
        started(
            "1796042400.401",
            1796042400.012193,
            P(number="+15559870000"),
            P(ext="210"),
            did="5550001111",
            dialled="5550001111",
        ),
        ended("1796042400.401", 1796042429.62, "NOANSWER"),
    ],
    "unanswered_cancel": [
        started(
            "1796042700.501",
            1796042700.012193,
            P(ext="210", number="210", name="Alice Smith"),
            P(ext="211"),
            dialled="211",
        ),
        ended("1796042700.501", 1796042706.482193, "CANCEL"),
    ],
    "unanswered_chanunavail": [
        started(
            "1796043000.601",
            1796043000.012193,
            P(ext="212", number="212", name="Carol White"),
            P(ext="213"),
            dialled="213",
        ),
        ended("1796043000.601", 1796043041.51, "CHANUNAVAIL"),
    ],
    "unanswered_congestion": [
        started(
            "1796043300.701",
            1796043300.012193,
            P(ext="211", number="211", name="Bob Jones"),
            P(number="+441632960123"),
            dialled="00441632960123",
        ),
        ended("1796043300.701", 1796043310.37, "CONGESTION"),
    ],
    "queue_ringall": [
        started(
            "1796043600.801",
            1796043600.008193,
            P(number="+15553334444", name="MARY MAJOR"),
            P(ext="300"),
            did="5550002222",
            dialled="5550002222",
        ),
        ringing("1796043600.801", 1796043600.033193, "210"),
        ringing("1796043600.801", 1796043600.034655, "211"),
        ringing("1796043600.801", 1796043600.036117, "212"),
        answered("1796043600.801", 1796043606.420731, "211"),
        ended("1796043600.801", 1796043786.903655),
    ],
    "ringgroup_local": [
        started(
            "1796043900.901",
            1796043900.023041,
            P(ext="212", number="212", name="Carol White"),
            P(ext="600"),
            dialled="600",
        ),
        ringing("1796043900.901", 1796043900.023041, "210"),
        ringing("1796043900.901", 1796043900.024503, "211"),
        answered("1796043900.901", 1796043903.915731, "210"),
        ended("1796043900.901", 1796043963.202924),
    ],
    "blind_transfer": [
        started(
            "1796044200.1001",
            1796044200.010193,
            P(number="+15557654321", name="ACME CORP"),
            P(ext="210"),
            did="+15550001111",
            dialled="+15550001111",
        ),
        answered("1796044200.1001", 1796044205.500731, "210"),
        ended("1796044200.1001", 1796044235.64),
        started(
            "1796044200.1001/t1",
            1796044235.645117,
            P(number="+15557654321", name="ACME CORP"),
            P(ext="211"),
            did="+15550001111",
            dialled="211",
        ),
        answered("1796044200.1001/t1", 1796044240.020731, "211"),
        ended("1796044200.1001/t1", 1796044360.006924),
    ],
    "attended_transfer": [
        started(
            "1796044500.1101",
            1796044500.012462,
            P(number="+15552223333", name="INITECH"),
            P(ext="210"),
            did="+15550001111",
            dialled="+15550001111",
        ),
        answered("1796044500.1101", 1796044504.200731, "210"),
        started(
            "1796044520.1103",
            1796044520.012193,
            P(ext="210", number="210", name="Alice Smith"),
            P(ext="211"),
            dialled="211",
        ),
        answered("1796044520.1103", 1796044523.480731, "211"),
        ended("1796044500.1101", 1796044541.3),
        ended("1796044520.1103", 1796044541.3),
        started(
            "1796044500.1101/t1",
            1796044541.3,
            P(number="+15552223333", name="INITECH"),
            P(ext="211"),
            did="+15550001111",
        ),
        answered("1796044500.1101/t1", 1796044541.3, "211"),
        ended("1796044500.1101/t1", 1796044661.702924),
    ],
    "reconnect": [
        # first connection: three calls up
        started(
            "1796044800.1201",
            1796044800.011462,
            P(number="+15550102030"),
            P(ext="210"),
            did="+15550001111",
            dialled="+15550001111",
        ),
        answered("1796044800.1201", 1796044803.000731, "210"),
        started(
            "1796044805.1221",
            1796044805.021462,
            P(ext="213", number="213", name="Dan Brown"),
            P(number="+15550405060"),
            dialled="0015550405060",
        ),
        answered("1796044805.1221", 1796044808.400731),
        started(
            "1796044810.1211",
            1796044810.031462,
            P(ext="211", number="211", name="Bob Jones"),
            P(ext="212"),
            dialled="212",
        ),
        # reconnected: call 1 is gone, call 2 was answered meanwhile, call 4 began meanwhile
        # (started back-dated by its Duration of 30 s, without DID)
        ended("1796044800.1201", NOW, reconstructed=GONE),
        answered("1796044810.1211", NOW, "212"),
        started("1796044830.1231", NOW - 30, P(number="+15550708090"), P(ext="214")),
        answered("1796044830.1231", 1796044864.000731, "214"),
        ended("1796044810.1211", 1796044890.500731),
        ended("1796044805.1221", 1796044920.250731),
        ended("1796044830.1231", 1796044950.750731),
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_call_shape_gives_exactly_these_call_events(name: str) -> None:
    calls = mapper()
    assert play(load_script(name), calls) == EXPECTED[name]
    assert calls.legs == 0  # every channel hung up: nothing is left behind
    assert calls.tracker.tracked == 0


# --- the triggers they fire ---------------------------------------------------------------

Fired = tuple[str, str, Trigger, str, str]  # call id, short extension, trigger, flow, status


def fire(events: Sequence[CallEvent]) -> list[Fired]:
    return [
        (call, f.extension.split("*")[1], f.trigger, f.params["CallFlow"], f.params["CallStatus"])
        for call, f in fire_all(events)
    ]


DIAL_IN, DIAL_OUT, HANGUP = Trigger.DIAL_IN, Trigger.DIAL_OUT, Trigger.HANGUP
ANSWER_IN, ANSWER_OUT = Trigger.ANSWER_IN, Trigger.ANSWER_OUT


def test_internal_call_fires_both_sides() -> None:
    c = "1796041200.84"
    assert fire(EXPECTED["internal_answered"]) == [
        (c, "210", DIAL_OUT, "OUT", "CALLING"),
        (c, "211", DIAL_IN, "IN", "CALLING"),
        (c, "211", ANSWER_IN, "IN", "ANSWER"),
        (c, "210", ANSWER_OUT, "OUT", "ANSWER"),
        (c, "210", HANGUP, "OUT", "ANSWER"),
        (c, "211", HANGUP, "IN", "ANSWER"),
    ]


def test_outbound_call_fires_the_caller_only() -> None:
    c = "1796041800.201"
    assert fire(EXPECTED["outbound_trunk"]) == [
        (c, "210", DIAL_OUT, "OUT", "CALLING"),
        (c, "210", ANSWER_OUT, "OUT", "ANSWER"),
        (c, "210", HANGUP, "OUT", "ANSWER"),
    ]


@pytest.mark.parametrize(
    ("name", "caller", "callee", "status"),
    [
        ("unanswered_busy", "212", "213", "BUSY"),
        ("unanswered_cancel", "210", "211", "CANCEL"),
        ("unanswered_chanunavail", "212", "213", "CHANUNAVAIL"),
    ],
)
def test_unanswered_internal_calls_hang_up_with_their_dial_status(
    name: str, caller: str, callee: str, status: str
) -> None:
    c = EXPECTED[name][0].call_id
    assert fire(EXPECTED[name]) == [
        (c, caller, DIAL_OUT, "OUT", "CALLING"),
        (c, callee, DIAL_IN, "IN", "CALLING"),
        (c, caller, HANGUP, "OUT", status),
        (c, callee, HANGUP, "IN", status),
    ]


def test_unanswered_external_calls() -> None:
    inbound, outbound = EXPECTED["unanswered_noanswer"], EXPECTED["unanswered_congestion"]
    assert fire(inbound) == [
        (inbound[0].call_id, "210", DIAL_IN, "IN", "CALLING"),
        (inbound[0].call_id, "210", HANGUP, "IN", "NOANSWER"),
    ]
    assert fire(outbound) == [
        (outbound[0].call_id, "211", DIAL_OUT, "OUT", "CALLING"),
        (outbound[0].call_id, "211", HANGUP, "OUT", "CONGESTION"),
    ]


def test_queue_rings_every_agent_and_cancels_the_losers() -> None:
    c = "1796043600.801"
    assert fire(EXPECTED["queue_ringall"]) == [
        (c, "300", DIAL_IN, "IN", "CALLING"),
        (c, "210", DIAL_IN, "IN", "CALLING"),
        (c, "211", DIAL_IN, "IN", "CALLING"),
        (c, "212", DIAL_IN, "IN", "CALLING"),
        (c, "211", ANSWER_IN, "IN", "ANSWER"),
        (c, "300", ANSWER_IN, "IN", "ANSWER"),
        (c, "300", HANGUP, "IN", "ANSWER"),
        (c, "210", HANGUP, "IN", "CANCEL"),
        (c, "211", HANGUP, "IN", "ANSWER"),
        (c, "212", HANGUP, "IN", "CANCEL"),
    ]


def test_ring_group_through_local_channels() -> None:
    c = "1796043900.901"
    assert fire(EXPECTED["ringgroup_local"]) == [
        (c, "212", DIAL_OUT, "OUT", "CALLING"),
        (c, "600", DIAL_IN, "IN", "CALLING"),
        (c, "210", DIAL_IN, "IN", "CALLING"),
        (c, "211", DIAL_IN, "IN", "CALLING"),
        (c, "210", ANSWER_IN, "IN", "ANSWER"),
        (c, "600", ANSWER_IN, "IN", "ANSWER"),
        (c, "212", ANSWER_OUT, "OUT", "ANSWER"),
        (c, "212", HANGUP, "OUT", "ANSWER"),
        (c, "600", HANGUP, "IN", "ANSWER"),
        (c, "210", HANGUP, "IN", "ANSWER"),
        (c, "211", HANGUP, "IN", "CANCEL"),
    ]


def test_blind_transfer_gives_the_target_a_call_of_its_own() -> None:
    c = "1796044200.1001"
    assert fire(EXPECTED["blind_transfer"]) == [
        (c, "210", DIAL_IN, "IN", "CALLING"),
        (c, "210", ANSWER_IN, "IN", "ANSWER"),
        (c, "210", HANGUP, "IN", "ANSWER"),
        (f"{c}/t1", "211", DIAL_IN, "IN", "CALLING"),
        (f"{c}/t1", "211", ANSWER_IN, "IN", "ANSWER"),
        (f"{c}/t1", "211", HANGUP, "IN", "ANSWER"),
    ]


def test_attended_transfer_ends_both_calls_and_joins_the_other_two() -> None:
    first, second = "1796044500.1101", "1796044520.1103"
    assert fire(EXPECTED["attended_transfer"]) == [
        (first, "210", DIAL_IN, "IN", "CALLING"),
        (first, "210", ANSWER_IN, "IN", "ANSWER"),
        (second, "210", DIAL_OUT, "OUT", "CALLING"),
        (second, "211", DIAL_IN, "IN", "CALLING"),
        (second, "211", ANSWER_IN, "IN", "ANSWER"),
        (second, "210", ANSWER_OUT, "OUT", "ANSWER"),
        (first, "210", HANGUP, "IN", "ANSWER"),
        (second, "210", HANGUP, "OUT", "ANSWER"),
        (second, "211", HANGUP, "IN", "ANSWER"),
        (f"{first}/t1", "211", DIAL_IN, "IN", "CALLING"),
        (f"{first}/t1", "211", ANSWER_IN, "IN", "ANSWER"),
        (f"{first}/t1", "211", HANGUP, "IN", "ANSWER"),
    ]


# --- variations -----------------------------------------------------------------------------


def test_blind_transfer_whose_dial_comes_before_the_transfer_event() -> None:
    """Asterisk may publish the transferee's DialBegin before BlindTransfer (other threads)."""
    script = load_script("blind_transfer")
    events = script.sessions[0].events
    blind = next(i for i, m in enumerate(events) if m.event == "BlindTransfer")
    dial = next(i for i, m in enumerate(events) if i > blind and m.event == "DialBegin")
    moved = [*events[:blind], *events[blind + 1 : dial + 1], events[blind], *events[dial + 1 :]]
    got = play(Script([ScriptSession(steps=list(moved))]))
    want = EXPECTED["blind_transfer"]
    # the first call now ends at the dial; the second has no transfer Extension as dialled
    assert got[2] == ended("1796044200.1001", float(events[dial]["Timestamp"]))
    assert [(e.call_id, e.kind) for e in got] == [(e.call_id, e.kind) for e in want]
    assert got[3].caller == want[3].caller
    assert got[3].callee == want[3].callee
    assert got[3].dialled is None
    assert fire(got) == fire(want)


def test_keys_in_any_case_and_plain_mappings() -> None:
    """Asterisk 11 spells UniqueID; a plain dict with odd key case maps the same."""
    script = load_script("internal_answered")
    odd = [
        {k.upper() if i % 2 else k.lower(): v for k, v in m.items()}
        for i, m in enumerate(script.sessions[0].events)
    ]
    calls = mapper()
    got: list[CallEvent] = []
    for message in odd:
        got += calls.feed(message, at(NOW))
    assert got == EXPECTED["internal_answered"]


def test_noise_alone_makes_no_calls() -> None:
    noise = {"Newexten", "VarSet", "Newstate", "DialState", "NewConnectedLine", "NewCallerid"}
    for name in EXPECTED:
        script = load_script(name)
        calls = mapper()
        for session in script.sessions:
            for message in session.events:
                if message.event in noise or (message.event or "").startswith("Bridge"):
                    assert calls.feed(message, at(NOW)) == []
        assert calls.tracker.tracked == 0


def test_without_timestamps_the_time_is_now() -> None:
    events = [
        AmiMessage([(k, v) for k, v in m.fields if k != "Timestamp"])
        for m in load_script("internal_answered").sessions[0].events
    ]
    got = play(Script([ScriptSession(steps=list(events))]))
    assert [e.time for e in got] == [at(NOW)] * 3


def test_a_stricter_numbering_makes_endpoints_trunks() -> None:
    """With --extensions '2\\d\\d', queue 300 is no extension: the queue's name is its number."""
    got = play(load_script("queue_ringall"), mapper(r"2\d\d"))
    assert got[0].callee == Party(None, "300")
    assert fire(got)[0] == ("1796043600.801", "210", DIAL_IN, "IN", "CALLING")


def test_reconcile_keeps_live_calls_and_ends_gone_ones_once() -> None:
    script = load_script("reconnect")
    calls = mapper()
    first = Script(script.sessions[:1])
    play(first, calls)
    assert calls.tracker.tracked == 3
    channels = script.sessions[1].channels
    events = calls.reconcile(channels, at(NOW))
    assert [(e.call_id, e.kind) for e in events] == [
        ("1796044800.1201", Kind.ENDED),
        ("1796044810.1211", Kind.ANSWERED),
        ("1796044830.1231", Kind.STARTED),
    ]
    # the same list again (a second reconnect with nothing changed) makes nothing new
    assert calls.reconcile(channels, at(NOW + 5)) == []
    assert calls.tracker.tracked == 3
    # an empty list after another drop: every followed call ended while the link was down
    gone = calls.reconcile([], at(NOW + 10))
    assert sorted(e.call_id for e in gone) == [
        "1796044805.1221",
        "1796044810.1211",
        "1796044830.1231",
    ]
    assert {e.reconstructed for e in gone} == {GONE}
    assert calls.legs == 0


def test_a_call_seen_first_in_the_list_and_waiting_in_a_queue() -> None:
    queue_wait = AmiMessage(
        [
            ("Event", "CoreShowChannel"),
            ("Channel", "PJSIP/telco-000000e0"),
            ("ChannelState", "6"),
            ("ChannelStateDesc", "Up"),
            ("CallerIDNum", "+15550001234"),
            ("Uniqueid", "1796045000.1301"),
            ("Linkedid", "1796045000.1301"),
            ("Application", "Queue"),
            ("ApplicationData", "300,t"),
            ("Duration", "00:01:05"),
            ("BridgeId", ""),
        ]
    )
    got = mapper().reconcile([queue_wait], at(NOW))
    assert got == [started("1796045000.1301", NOW - 65, P(number="+15550001234"), P(ext="300"))]


def test_expire_closes_a_call_whose_hangup_never_came() -> None:
    calls = AmiCalls(Numbering(3), CallTracker(max_age=timedelta(hours=1)))
    events = load_script("internal_answered").sessions[0].events
    hangups = [i for i, m in enumerate(events) if m.event == "Hangup"]
    for message in events[: hangups[0]]:
        calls.feed(message, at(NOW))
    late = at(1796041200 + 3601)
    (closed,) = calls.tracker.expire(late)
    assert closed.call_id == "1796041200.84"
    assert closed.reconstructed == "the call outlived the maximum call age of 1h"
    # the hangups that finally come change nothing
    for message in events[hangups[0] :]:
        assert calls.feed(message, late) == []
    assert calls.legs == 0


def test_a_late_event_does_not_bring_a_hung_up_channel_back() -> None:
    events = load_script("internal_answered").sessions[0].events
    calls = mapper()
    for message in events:
        calls.feed(message, at(NOW))
    newstate = next(m for m in events if m.event == "Newstate")
    assert calls.feed(newstate, at(NOW)) == []
    assert calls.legs == 0


# --- channels and numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "endpoint"),
    [
        ("PJSIP/210-0000002a", "210"),
        ("SIP/210-00000012", "210"),
        ("IAX2/210-4213", "210"),
        ("PJSIP/my-trunk-0000001f", "my-trunk"),
        ("SIP/203.0.113.5-0000001a", "203.0.113.5"),
        ("SIP/210-00000012<ZOMBIE>", "210"),
        ("Local/210@from-queue-0000001e;1", None),
        ("Local/210@from-queue-0000001e;2", None),
        ("CBAnn/1234-00000001", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_endpoint_of(channel: str, endpoint: str | None) -> None:
    assert endpoint_of(channel) == endpoint


@pytest.mark.parametrize(
    ("dial_string", "endpoint", "number"),
    [
        ("211", "211", None),
        ("+15551234567@telco", "telco", "+15551234567"),
        ("telco/+15551234567", "telco", "+15551234567"),
        ("telco/sip:+441632960123@sip.telco.example", "telco", "+441632960123"),
        ("telco/sips:0211234567@10.0.0.1;transport=tls", "telco", "0211234567"),
        ("PJSIP/210", "210", None),
        ("telco", "telco", None),
        ("", "telco", None),
    ],
)
def test_dialled_number(dial_string: str, endpoint: str, number: str | None) -> None:
    assert dialled_number(dial_string, endpoint) == number


def test_the_extension_comes_from_the_endpoint_not_the_caller_id() -> None:
    """A dialplan that rewrites CallerIDNum (to 999) does not change who calls."""
    events = [
        AmiMessage([(k, "999" if k == "CallerIDNum" else v) for k, v in m.fields])
        for m in load_script("internal_answered").sessions[0].events
    ]
    got = play(Script([ScriptSession(steps=list(events))]))
    assert got[0].caller == P(ext="210", number="999", name="Alice Smith")
    assert got[0].callee == P(ext="211")


def test_an_ivr_digit_or_a_did_is_not_taken_for_a_ring_group() -> None:
    """The number dialled becomes the callee only when it is as long as the extensions."""
    trunk = [
        ("Channel", "PJSIP/telco-000000f0"),
        ("CallerIDNum", "+15550009999"),
        ("Uniqueid", "1796046000.1"),
        ("Linkedid", "1796046000.1"),
    ]
    phone = [
        ("DestChannel", "PJSIP/210-000000f1"),
        ("DestUniqueid", "1796046000.2"),
        ("DestLinkedid", "1796046000.1"),
    ]
    calls = mapper()
    calls.feed(AmiMessage([("Event", "Newchannel"), *trunk, ("Exten", "5550001111")]), at(NOW))
    got = calls.feed(
        AmiMessage([("Event", "DialBegin"), *trunk, ("Exten", "2"), *phone, ("DialString", "210")]),
        at(NOW),
    )
    assert got[0].callee == P(ext="210")
    assert got[0].did == "5550001111"


def test_an_originated_first_leg_is_not_a_call_yet() -> None:
    """Originate dials its first channel with no caller channel (DialBegin without Channel)."""
    calls = mapper()
    dest = [
        ("DestChannel", "PJSIP/210-000000f2"),
        ("DestUniqueid", "1796046100.1"),
        ("DestLinkedid", "1796046100.1"),
    ]
    assert (
        calls.feed(AmiMessage([("Event", "DialBegin"), *dest, ("DialString", "210")]), at(NOW))
        == []
    )
    assert (
        calls.feed(AmiMessage([("Event", "DialEnd"), *dest, ("DialStatus", "ANSWER")]), at(NOW))
        == []
    )
    assert calls.tracker.tracked == 0


def test_a_caller_who_leaves_a_queue_before_any_agent_rings_cancelled() -> None:
    caller = [
        ("Channel", "PJSIP/telco-000000f3"),
        ("CallerIDNum", "+15550004444"),
        ("Exten", "+15550001111"),
        ("Uniqueid", "1796046200.1"),
        ("Linkedid", "1796046200.1"),
    ]
    calls = mapper()
    got = calls.feed(AmiMessage([("Event", "Newchannel"), *caller]), at(NOW))
    got += calls.feed(
        AmiMessage([("Event", "QueueCallerJoin"), *caller, ("Queue", "300")]), at(NOW)
    )
    got += calls.feed(
        AmiMessage([("Event", "QueueCallerAbandon"), *caller, ("Queue", "300")]), at(NOW)
    )
    got += calls.feed(AmiMessage([("Event", "Hangup"), *caller, ("Cause", "16")]), at(NOW + 40))
    assert got == [
        started(
            "1796046200.1",
            NOW,
            P(number="+15550004444"),
            P(ext="300"),
            did="+15550001111",
            dialled="+15550001111",
        ),
        ended("1796046200.1", NOW + 40, "CANCEL"),
    ]
    assert fire(got)[-1] == ("1796046200.1", "300", HANGUP, "IN", "CANCEL")
