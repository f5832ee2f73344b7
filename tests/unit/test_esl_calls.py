"""FreeSWITCH channel events -> callhook call events (sources/esl/calls.py), and the triggers
they fire (domain.calls.apply), for every scripted call shape in tests/data/esl.

The scripts are built from the documented event shapes, not captured from a real FreeSWITCH
(see tests/replay/esl_server.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from callhook.domain.calls import CallEvent, CallState, Kind, Party, Trigger, apply, fire_all
from callhook.sources.esl.calls import (
    EslCalls,
    channel_user,
    disposition,
    event_time,
    row_created,
)
from callhook.sources.esl.protocol import Parser, decode_event
from callhook.sources.tracking import GONE_AFTER_RECONNECT, CallTracker, Numbering
from tests.replay.esl_server import Script, encode_event, load_script

NOW = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
#: a realistic deployment: extensions and ring groups have 2 to 4 digits, trunk numbers more
NUMBERING = Numbering(3, r"\d{2,4}")

ALICE = Party("0003*1000", "1000", "Alice Martin")
JO = Party(None, "+15551234567", "JO DOE")

Step = tuple[str, Trigger, str, str]


def mapper(max_age: timedelta = timedelta(hours=4)) -> EslCalls:
    return EslCalls(NUMBERING, CallTracker(max_age=max_age))


def run(events: Iterable[dict[str, str]], calls: EslCalls | None = None) -> list[CallEvent]:
    calls = calls or mapper()
    made: list[CallEvent] = []
    for event in events:
        made += calls.feed(event, NOW)
    return made


def at(script: Script, seconds: float) -> datetime:
    first = int(script.events[0]["Event-Date-Timestamp"])
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=first + seconds * 1e6)


def started(
    call: str,
    time: datetime,
    caller: Party,
    callee: Party,
    *,
    did: str | None = None,
    dialled: str | None = None,
) -> CallEvent:
    return CallEvent(
        f"{call}:started", call, Kind.STARTED, time, caller, callee, did=did, dialled=dialled
    )


def ringing(call: str, time: datetime, extension: str) -> CallEvent:
    return CallEvent(f"{call}:ring:{extension}", call, Kind.RINGING, time, extension=extension)


def answered(call: str, time: datetime, extension: str | None) -> CallEvent:
    return CallEvent(f"{call}:answered", call, Kind.ANSWERED, time, extension=extension)


def ended(
    call: str, time: datetime, disposition: str | None = None, reconstructed: str | None = None
) -> CallEvent:
    return CallEvent(
        f"{call}:ended",
        call,
        Kind.ENDED,
        time,
        disposition=disposition,
        reconstructed=reconstructed,
    )


def triggers(events: Sequence[CallEvent]) -> list[Step]:
    """What the events fire, through the domain's own mapping (contract section 7)."""
    return [
        (f.extension, f.trigger, f.params["CallStatus"], f.params["CallFlow"])
        for _call, f in fire_all(events)
    ]


def out(ext: str, trigger: Trigger, status: str) -> Step:
    return (f"0003*{ext}", trigger, status, "OUT")


def inn(ext: str, trigger: Trigger, status: str) -> Step:
    return (f"0003*{ext}", trigger, status, "IN")


DIAL_IN, DIAL_OUT, ANSWER_IN, ANSWER_OUT, HANGUP = (
    Trigger.DIAL_IN,
    Trigger.DIAL_OUT,
    Trigger.ANSWER_IN,
    Trigger.ANSWER_OUT,
    Trigger.HANGUP,
)


# --- the call shapes --------------------------------------------------------------------------


def test_internal_call_answered() -> None:
    script = load_script("internal-answered")
    call = script.uuid("a")
    made = run(script.events)
    assert made == [
        started(call, at(script, 0), ALICE, Party("0003*1001"), dialled="1001"),
        answered(call, at(script, 4.211), "0003*1001"),
        ended(call, at(script, 65.431)),
    ]
    assert triggers(made) == [
        out("1000", DIAL_OUT, "CALLING"),
        inn("1001", DIAL_IN, "CALLING"),
        inn("1001", ANSWER_IN, "ANSWER"),
        out("1000", ANSWER_OUT, "ANSWER"),
        out("1000", HANGUP, "ANSWER"),
        inn("1001", HANGUP, "ANSWER"),
    ]


def test_inbound_from_a_trunk_with_its_did() -> None:
    script = load_script("inbound-did")
    call = script.uuid("a")
    made = run(script.events)
    did = "15550001111"
    assert made == [
        started(call, at(script, 0), JO, Party(None, did), did=did, dialled=did),
        ringing(call, at(script, 0.015), "0003*1001"),
        answered(call, at(script, 7.502), "0003*1001"),
        ended(call, at(script, 188.030)),
    ]
    assert triggers(made) == [
        inn("1001", DIAL_IN, "CALLING"),
        inn("1001", ANSWER_IN, "ANSWER"),
        inn("1001", HANGUP, "ANSWER"),
    ]
    dial_in = apply(apply(CallState(), made[0]).state, made[1]).fired[0]
    assert dial_in.params == {
        "CallID": call,
        "CallerIDNum": "+15551234567",
        "CallerIDName": "JO DOE",
        "CalledDID": did,
        "CalledExtension": "0003*1001",
        "CalledNumber": did,
        "CallStatus": "CALLING",
        "CallFlow": "IN",
    }


def test_an_ivr_answering_the_caller_is_not_an_answer() -> None:
    script = load_script("inbound-ivr")
    call = script.uuid("a")
    made = run(script.events)
    did = "15550002222"
    assert made == [
        started(call, at(script, 0), JO, Party(None, did), did=did, dialled=did),
        ringing(call, at(script, 8.766), "0003*1001"),
        answered(call, at(script, 12.050), "0003*1001"),
        ended(call, at(script, 70.320)),
    ]


def test_outbound_to_a_trunk() -> None:
    script = load_script("outbound-gateway")
    call = script.uuid("a")
    made = run(script.events)
    number = "15559876543"
    assert made == [
        started(call, at(script, 0), ALICE, Party(None, number), dialled=number),
        answered(call, at(script, 9.877), None),
        ended(call, at(script, 140.338)),
    ]
    assert triggers(made) == [
        out("1000", DIAL_OUT, "CALLING"),
        out("1000", ANSWER_OUT, "ANSWER"),
        out("1000", HANGUP, "ANSWER"),
    ]


@pytest.mark.parametrize(
    ("name", "callee", "end_at", "status"),
    [
        ("busy", "1001", 0.430, "BUSY"),
        ("no-answer", "1001", 41.870, "NOANSWER"),
        ("caller-cancels", "1001", 6.141, "CANCEL"),
        ("unavailable", "1003", 0.021, "CHANUNAVAIL"),
    ],
)
def test_unanswered_internal_calls(name: str, callee: str, end_at: float, status: str) -> None:
    script = load_script(name)
    call = script.uuid("a")
    made = run(script.events)
    assert made == [
        started(call, at(script, 0), ALICE, Party(f"0003*{callee}"), dialled=callee),
        ended(call, at(script, end_at), status),
    ]
    assert triggers(made) == [
        out("1000", DIAL_OUT, "CALLING"),
        inn(callee, DIAL_IN, "CALLING"),
        out("1000", HANGUP, status),
        inn(callee, HANGUP, status),
    ]


def test_congestion_on_a_trunk() -> None:
    script = load_script("congestion")
    call = script.uuid("a")
    made = run(script.events)
    number = "15559876543"
    assert made == [
        started(call, at(script, 0), ALICE, Party(None, number), dialled=number),
        ended(call, at(script, 0.702), "CONGESTION"),
    ]
    assert triggers(made) == [out("1000", DIAL_OUT, "CALLING"), out("1000", HANGUP, "CONGESTION")]


def test_ring_group_answered_by_one_member() -> None:
    script = load_script("ring-group")
    call = script.uuid("a")
    made = run(script.events)
    assert made == [
        started(call, at(script, 0), ALICE, Party("0003*2000"), dialled="2000"),
        ringing(call, at(script, 0.012), "0003*1001"),
        ringing(call, at(script, 0.013), "0003*1002"),
        ringing(call, at(script, 0.014), "0003*1003"),
        answered(call, at(script, 5.640), "0003*1002"),
        ended(call, at(script, 47.122)),
    ]
    assert triggers(made) == [
        out("1000", DIAL_OUT, "CALLING"),
        inn("2000", DIAL_IN, "CALLING"),
        inn("1001", DIAL_IN, "CALLING"),
        inn("1002", DIAL_IN, "CALLING"),
        inn("1003", DIAL_IN, "CALLING"),
        inn("1002", ANSWER_IN, "ANSWER"),
        inn("2000", ANSWER_IN, "ANSWER"),
        out("1000", ANSWER_OUT, "ANSWER"),
        out("1000", HANGUP, "ANSWER"),
        inn("2000", HANGUP, "ANSWER"),
        inn("1001", HANGUP, "CANCEL"),
        inn("1002", HANGUP, "ANSWER"),
        inn("1003", HANGUP, "CANCEL"),
    ]


def test_loopback_legs_lead_to_the_real_phones() -> None:
    script = load_script("loopback-ring-group")
    call = script.uuid("a")
    made = run(script.events)
    assert made == [
        started(call, at(script, 0), ALICE, Party("0003*2100"), dialled="2100"),
        ringing(call, at(script, 0.020), "0003*1001"),
        ringing(call, at(script, 0.022), "0003*1002"),
        answered(call, at(script, 4.801), "0003*1001"),
        ended(call, at(script, 95.421)),
    ]
    assert triggers(made)[-4:] == [
        out("1000", HANGUP, "ANSWER"),
        inn("2100", HANGUP, "ANSWER"),
        inn("1001", HANGUP, "ANSWER"),
        inn("1002", HANGUP, "CANCEL"),
    ]


def test_blind_transfer_starts_a_new_call_id() -> None:
    script = load_script("blind-transfer")
    call = script.uuid("a")
    made = run(script.events)
    did = "15550001111"
    assert made == [
        started(call, at(script, 0), JO, Party(None, did), did=did, dialled=did),
        ringing(call, at(script, 0.010), "0003*1001"),
        answered(call, at(script, 3.900), "0003*1001"),
        ended(call, at(script, 34.236)),
        started(f"{call}/t1", at(script, 34.236), JO, Party("0003*1002"), did=did, dialled="1002"),
        answered(f"{call}/t1", at(script, 39.011), "0003*1002"),
        ended(f"{call}/t1", at(script, 120.522)),
    ]
    assert triggers(made) == [
        inn("1001", DIAL_IN, "CALLING"),
        inn("1001", ANSWER_IN, "ANSWER"),
        inn("1001", HANGUP, "ANSWER"),
        inn("1002", DIAL_IN, "CALLING"),
        inn("1002", ANSWER_IN, "ANSWER"),
        inn("1002", HANGUP, "ANSWER"),
    ]


@pytest.mark.parametrize(
    "name",
    ["internal-answered", "ring-group", "loopback-ring-group", "blind-transfer", "no-answer"],
)
def test_json_events_map_like_plain_ones(name: str) -> None:
    events = load_script(name).events
    for event_format in ("plain", "json"):
        wire = b"".join(encode_event(e, event_format) for e in events)
        decoded = [decode_event(f) for f in Parser().feed(wire)]
        assert run(decoded) == run(events), event_format


def test_every_script_leaves_nothing_behind() -> None:
    for name in ["internal-answered", "blind-transfer", "loopback-ring-group", "unavailable"]:
        calls = mapper()
        run(load_script(name).events, calls)
        assert calls.legs == 0
        assert calls.tracker.tracked == 0


# --- reconnects and the maximum call age -------------------------------------------------------


def test_a_call_that_ended_while_the_link_was_down_is_closed_on_reconnect() -> None:
    script = load_script("internal-answered")
    call = script.uuid("a")
    calls = mapper()
    before = [e for e in script.events if e["Event-Name"] != "CHANNEL_HANGUP_COMPLETE"][:10]
    made = run(before, calls)
    assert [e.kind for e in made] == [Kind.STARTED, Kind.ANSWERED]
    # answered: callhook reports it ANSWER
    assert calls.reconcile([], NOW) == [ended(call, NOW, reconstructed=GONE_AFTER_RECONNECT)]
    assert calls.legs == 0
    # the hangups replayed late change nothing
    assert run(script.events[10:], calls) == []


def test_a_call_still_up_after_a_reconnect_goes_on() -> None:
    script = load_script("internal-answered")
    calls = mapper()
    cut = next(i for i, e in enumerate(script.events) if e["Event-Name"] == "CHANNEL_BRIDGE")
    run(script.events[:cut], calls)
    assert calls.reconcile([script.row("a"), script.row("b")], NOW) == []
    rest = run(script.events[cut:], calls)
    assert [e.kind for e in rest] == [Kind.ENDED]
    assert rest[0].reconstructed is None


def test_legs_gone_during_the_outage_are_forgotten() -> None:
    script = load_script("ring-group")
    calls = mapper()
    cut = next(i for i, e in enumerate(script.events) if e["Event-Name"] == "CHANNEL_ANSWER")
    run(script.events[:cut], calls)
    # 1001 and 1003 stopped ringing while the link was down; the caller and 1002 remain
    rows = [script.row("a", "RINGING"), script.row("b2", "RINGING")]
    assert calls.reconcile(rows, NOW) == []
    answer_and_after = [
        e
        for e in script.events[cut:]
        if e["Unique-ID"] not in (script.uuid("b1"), script.uuid("b3"))
    ]
    made = run(answer_and_after, calls)
    assert [e.kind for e in made] == [Kind.ANSWERED, Kind.ENDED]


def test_the_maximum_call_age_closes_a_call_and_its_state_goes() -> None:
    script = load_script("internal-answered")
    calls = mapper(max_age=timedelta(hours=1))
    run(script.events[:8], calls)
    later = at(script, 3 * 3600)
    (closed,) = calls.tracker.expire(later)
    assert closed.kind is Kind.ENDED
    assert closed.reconstructed == "the call outlived the maximum call age of 1h"
    assert calls.reconcile([script.row("a"), script.row("b")], later) == []
    assert calls.legs == 0
    assert run(script.events[8:], calls) == []


# --- calls that began, or were answered, while the link was down --------------------------------


def after(script: Script, name: str, ref: str) -> list[dict[str, str]]:
    """The script's events from ``name`` of channel ``ref`` on."""
    uuid = script.uuid(ref)
    cut = next(
        i
        for i, e in enumerate(script.events)
        if e["Event-Name"] == name and e.get("Unique-ID") == uuid
    )
    return script.events[cut:]


def test_a_call_begun_while_the_link_was_down_is_started_from_the_channels() -> None:
    """An outside call came in and 1001 answered it while the link was down: the reconnect
    starts it (back-dated to the caller leg's creation, with its DID), 1001 rings and answers;
    its legs' hangups end it as if it had been followed all along."""
    script = load_script("inbound-did")
    call, did = script.uuid("a"), "15550001111"
    calls, now = mapper(), at(script, 30)
    caught_up = calls.reconcile([script.row("a"), script.row("b")], now)
    assert caught_up == [
        started(call, at(script, 0), JO, Party(None, did), did=did, dialled=did),
        ringing(call, now, "0003*1001"),
        answered(call, now, "0003*1001"),
    ]
    assert calls.legs == 2
    rest = run(after(script, "CHANNEL_HANGUP_COMPLETE", "b"), calls)
    assert rest == [ended(call, at(script, 188.030))]
    assert triggers(caught_up + rest) == [
        inn("1001", DIAL_IN, "CALLING"),
        inn("1001", ANSWER_IN, "ANSWER"),
        inn("1001", HANGUP, "ANSWER"),
    ]
    assert calls.legs == 0
    assert calls.tracker.tracked == 0


def test_a_call_still_ringing_after_the_reconnect_goes_on_with_its_events() -> None:
    """1000 calls 1001, which is still ringing; the events that arrived while ``show
    channels`` was answered (its CHANNEL_CREATEs included) are fed after it: nothing twice."""
    script = load_script("internal-answered")
    call = script.uuid("a")
    calls, now = mapper(), at(script, 1)
    rows = [script.row("a", "RINGING"), script.row("b", "RINGING")]
    assert calls.reconcile(rows, now) == [
        started(call, at(script, 0), ALICE, Party("0003*1001"), dialled="1001"),
    ]
    assert run(script.events, calls) == [
        answered(call, at(script, 4.211), "0003*1001"),
        ended(call, at(script, 65.431)),
    ]


def test_a_call_begun_meanwhile_has_the_event_ids_it_had_before_a_restart() -> None:
    """callhook followed the call, was restarted, and finds it in ``show channels``: the same
    call.started (and ids for the rest), which ingest ignores as duplicates."""
    script = load_script("internal-answered")
    before = run(script.events[:6])
    restarted = mapper()
    caught_up = restarted.reconcile(
        [script.row("a", "RINGING"), script.row("b", "RINGING")], at(script, 2)
    )
    assert caught_up == before


def test_a_ring_group_behind_a_loopback_begun_meanwhile() -> None:
    """The loopback -b leg has no call_uuid of the caller's: it joins its -a partner by name,
    and the phones it dials join through it."""
    script = load_script("loopback-ring-group")
    call = script.uuid("a")
    calls, now = mapper(), at(script, 4.805)
    rows = [script.row("a"), script.row("la"), script.row("lb"), script.row("c1")]
    rows.append(script.row("c2", "RINGING"))
    assert calls.reconcile(rows, now) == [
        started(call, at(script, 0), ALICE, Party("0003*2100"), dialled="2100"),
        ringing(call, now, "0003*1001"),
        ringing(call, now, "0003*1002"),
        answered(call, now, "0003*1001"),
    ]
    assert calls.legs == 5
    rest = run(after(script, "CHANNEL_HANGUP_COMPLETE", "c2"), calls)
    assert rest == [ended(call, at(script, 95.421))]
    assert calls.legs == 0


def test_an_outgoing_call_answered_by_the_outside_party_meanwhile() -> None:
    script = load_script("outbound-gateway")
    call, number = script.uuid("a"), "15559876543"
    calls, now = mapper(), at(script, 20)
    assert calls.reconcile([script.row("a"), script.row("b")], now) == [
        started(call, at(script, 0), ALICE, Party(None, number), dialled=number),
        answered(call, now, None),
    ]
    assert run(after(script, "CHANNEL_HANGUP_COMPLETE", "b"), calls) == [
        ended(call, at(script, 140.338))
    ]


def test_a_followed_call_answered_while_the_link_was_down() -> None:
    script = load_script("internal-answered")
    call = script.uuid("a")
    calls, now = mapper(), at(script, 30)
    made = run(script.events[:6], calls)
    assert [e.kind for e in made] == [Kind.STARTED]
    assert calls.reconcile([script.row("a"), script.row("b")], now) == [
        answered(call, now, "0003*1001")
    ]
    rest = after(script, "CHANNEL_HANGUP_COMPLETE", "a")
    assert run(rest, calls) == [ended(call, at(script, 65.431))]


def test_a_leg_dialled_while_the_link_was_down_joins_its_followed_call() -> None:
    """The IVR answered the caller before the drop; meanwhile the caller pressed 1 and 1001
    answered. 1001's leg is registered: the caller hanging up first does not end the call."""
    script = load_script("inbound-ivr")
    call = script.uuid("a")
    calls, now = mapper(), at(script, 30)
    outgoing = len(script.events) - len(after(script, "CHANNEL_OUTGOING", "b"))
    made = run(script.events[:outgoing], calls)
    assert [e.kind for e in made] == [Kind.STARTED]
    assert calls.reconcile([script.row("a"), script.row("b")], now) == [
        ringing(call, now, "0003*1001"),
        answered(call, now, "0003*1001"),
    ]
    hangups = after(script, "CHANNEL_HANGUP_COMPLETE", "a")
    assert run(hangups[:1], calls) == []
    assert run(hangups[1:], calls) == [ended(call, at(script, 70.320))]


def row(uuid: str, name: str, direction: str = "outbound", **columns: str) -> dict[str, str]:
    return {"uuid": uuid, "name": name, "direction": direction, "call_uuid": uuid} | columns


def test_channels_that_lead_to_no_caller_leg_are_not_followed() -> None:
    rows = [
        # an API originate: no caller leg (call_uuid is its own uuid)
        row("o-1", "sofia/internal/1001@192.0.2.11", callstate="ACTIVE"),
        # a leg whose originator is gone
        row("o-2", "sofia/internal/1002@192.0.2.12", call_uuid="gone", callstate="RINGING"),
        # a loopback -b leg without its -a partner, and the phone it dials
        row("lb-1", "loopback/ring-2100-b", "inbound"),
        row("o-3", "sofia/internal/1003@192.0.2.13", call_uuid="lb-1", callstate="RINGING"),
    ]
    calls = mapper()
    assert calls.reconcile(rows, NOW) == []
    assert calls.legs == 0


def test_the_same_loopback_in_two_calls_is_told_apart_by_its_creation() -> None:
    calls = mapper()
    rows: list[dict[str, str]] = []
    for call, second, ext in (("a-1", "1795803372", "1001"), ("a-2", "1795803390", "1002")):
        rows += [
            row(call, "sofia/internal/1000@pbx", "inbound", dest="2100", created_epoch=second),
            row(f"{call}-la", "loopback/ring-2100-a", call_uuid=call, created_epoch=second),
            row(f"{call}-lb", "loopback/ring-2100-b", "inbound", created_epoch=second),
            row(f"{call}-c", f"sofia/internal/{ext}@192.0.2.1", call_uuid=f"{call}-lb"),
        ]
    made = calls.reconcile(rows, datetime(2026, 11, 27, 18, 17, tzinfo=UTC))
    assert [(e.call_id, e.kind, e.extension) for e in made] == [
        ("a-1", Kind.STARTED, None),
        ("a-1", Kind.RINGING, "0003*1001"),
        ("a-2", Kind.STARTED, None),
        ("a-2", Kind.RINGING, "0003*1002"),
    ]


def test_a_call_older_than_the_maximum_call_age_is_not_started() -> None:
    script = load_script("inbound-did")
    calls = mapper(max_age=timedelta(hours=1))
    assert calls.reconcile([script.row("a"), script.row("b")], at(script, 3 * 3600)) == []
    assert calls.legs == 0


def test_a_call_that_ended_is_not_started_again_from_stale_rows() -> None:
    """FreeSWITCH writes its channels table behind its events: rows of a call that just ended
    may still be listed."""
    script = load_script("internal-answered")
    calls = mapper()
    run(script.events, calls)
    assert calls.reconcile([script.row("a"), script.row("b")], at(script, 66)) == []
    assert calls.legs == 0


def test_without_the_number_dialled_the_callee_is_the_leg_that_answered() -> None:
    rows = [
        row("a-1", "sofia/internal/1000@pbx", "inbound", cid_num="1000"),
        row("b-1", "sofia/internal/1001@192.0.2.11", call_uuid="a-1", callstate="RINGING"),
        row("b-2", "sofia/internal/1002@192.0.2.12", call_uuid="a-1", callstate="ACTIVE"),
    ]
    made = mapper().reconcile(rows, NOW)
    assert [(e.kind, e.extension) for e in made] == [
        (Kind.STARTED, None),
        (Kind.RINGING, "0003*1001"),
        (Kind.ANSWERED, "0003*1002"),
    ]
    assert made[0].time == NOW  # no created_epoch
    assert made[0].caller == Party("0003*1000", "1000")
    assert made[0].callee == Party("0003*1002")
    assert made[0].dialled is None


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        ("1795803372", datetime(2026, 11, 27, 18, 16, 12, tzinfo=UTC)),
        ("", None),
        ("0", None),
        ("soon", None),
    ],
)
def test_when_a_row_was_created(epoch: str, expected: datetime | None) -> None:
    assert row_created({"created_epoch": epoch}) == expected


# --- who is who, and odd sequences -------------------------------------------------------------


def names(headers: dict[str, str]) -> dict[str, str]:
    """Keyword arguments as header names: ``Caller_Context`` is ``Caller-Context``."""
    return {k if k.startswith("variable_") else k.replace("_", "-"): v for k, v in headers.items()}


def event(name: str, uuid: str, **headers: str) -> dict[str, str]:
    return {"Event-Name": name, "Unique-ID": uuid} | names(headers)


def caller_leg(uuid: str = "a-1", **headers: str) -> dict[str, str]:
    base = {
        "Call-Direction": "inbound",
        "Channel-Name": "sofia/internal/1000@pbx.example.com",
        "Caller-Caller-ID-Number": "1000",
        "Caller-Destination-Number": "1001",
        "Caller-Context": "default",
    }
    return event("CHANNEL_CREATE", uuid) | base | names(headers)


def callee_leg(name: str, uuid: str, parent: str = "a-1", **headers: str) -> dict[str, str]:
    base = {
        "Call-Direction": "outbound",
        "Other-Leg-Unique-ID": parent,
        "Channel-Name": "sofia/internal/1001@192.0.2.11",
        "Caller-Destination-Number": "1001",
    }
    return event(name, uuid) | base | names(headers)


@pytest.mark.parametrize(
    ("headers", "caller"),
    [
        ({}, Party("0003*1000", "1000")),
        ({"variable_user_name": "1002"}, Party("0003*1002", "1000")),
        ({"variable_user_name": "alice"}, Party(None, "1000")),
        ({"variable_sip_from_user": "1004"}, Party("0003*1004", "1000")),
        ({"Caller-Context": "public"}, Party(None, "1000")),
        ({"Channel-Name": "sofia/gateway/carrier1/1000"}, Party(None, "1000")),
        ({"Caller-Caller-ID-Number": "anonymous"}, Party("0003*1000")),
    ],
)
def test_who_the_caller_is(headers: dict[str, str], caller: Party) -> None:
    (start,) = run([caller_leg(**headers)])
    assert start.caller == caller


def test_the_callee_leg_is_never_named_by_its_caller_id() -> None:
    made = run(
        [
            caller_leg(Caller_Destination_Number="2000"),
            callee_leg(
                "CHANNEL_CREATE",
                "b-1",
                Caller_Caller_ID_Number="1005",
                variable_dialed_user="1007",
            ),
        ]
    )
    assert made[1] == ringing("a-1", NOW, "0003*1007")


def test_channel_create_after_channel_outgoing_names_the_extension() -> None:
    made = run(
        [
            caller_leg(Caller_Destination_Number="2000"),
            callee_leg("CHANNEL_OUTGOING", "b-1", Channel_Name="verto.rtc/1001@pbx.example.com"),
            callee_leg(
                "CHANNEL_CREATE",
                "b-1",
                Channel_Name="verto.rtc/1001@pbx.example.com",
                variable_dialed_user="1001",
            ),
            callee_leg("CHANNEL_CREATE", "b-1", variable_dialed_user="1001"),
        ]
    )
    assert [e.kind for e in made] == [Kind.STARTED, Kind.RINGING]
    assert made[1].extension == "0003*1001"


def test_a_missed_answer_is_taken_from_the_bridge() -> None:
    made = run(
        [
            caller_leg(),
            callee_leg("CHANNEL_CREATE", "b-1"),
            event("CHANNEL_BRIDGE", "a-1", Bridge_A_Unique_ID="a-1", Bridge_B_Unique_ID="b-1"),
            event("CHANNEL_ANSWER", "b-1"),
        ]
    )
    assert [(e.kind, e.extension) for e in made[1:]] == [(Kind.ANSWERED, "0003*1001")]


def test_the_transferred_callee_becomes_the_caller() -> None:
    """1000 calls 1001, then 1000 blind-transfers 1001 to 1002: the new leg is dialled by
    1001's leg, so the new call is 1001 calling 1002; 1000 (the transferrer) got its Hangup."""
    made = run(
        [
            caller_leg(),
            callee_leg("CHANNEL_CREATE", "b-1", variable_dialed_user="1001"),
            event("CHANNEL_ANSWER", "b-1"),
            event("CHANNEL_HANGUP_COMPLETE", "a-1", Hangup_Cause="BLIND_TRANSFER"),
            callee_leg("CHANNEL_CREATE", "c-1", parent="b-1", variable_dialed_user="1002"),
            event("CHANNEL_ANSWER", "c-1"),
            event("CHANNEL_HANGUP_COMPLETE", "c-1", Hangup_Cause="NORMAL_CLEARING"),
            event("CHANNEL_HANGUP_COMPLETE", "b-1", Hangup_Cause="NORMAL_CLEARING"),
        ]
    )
    assert [(e.call_id, e.kind) for e in made] == [
        ("a-1", Kind.STARTED),
        ("a-1", Kind.ANSWERED),
        ("a-1", Kind.ENDED),
        ("a-1/t1", Kind.STARTED),
        ("a-1/t1", Kind.ANSWERED),
        ("a-1/t1", Kind.ENDED),
    ]
    assert made[3].caller == Party("0003*1001")
    assert made[3].callee == Party("0003*1002")
    assert triggers(made) == [
        out("1000", DIAL_OUT, "CALLING"),
        inn("1001", DIAL_IN, "CALLING"),
        inn("1001", ANSWER_IN, "ANSWER"),
        out("1000", ANSWER_OUT, "ANSWER"),
        out("1000", HANGUP, "ANSWER"),
        inn("1001", HANGUP, "ANSWER"),
        out("1001", DIAL_OUT, "CALLING"),
        inn("1002", DIAL_IN, "CALLING"),
        inn("1002", ANSWER_IN, "ANSWER"),
        out("1001", ANSWER_OUT, "ANSWER"),
        out("1001", HANGUP, "ANSWER"),
        inn("1002", HANGUP, "ANSWER"),
    ]


def test_channels_of_no_followed_call_are_ignored() -> None:
    # an API originate (no caller leg), events of unknown channels, a second hangup
    assert (
        run(
            [
                callee_leg("CHANNEL_CREATE", "x-1", parent="nobody"),
                event("CHANNEL_ANSWER", "x-1"),
                event("CHANNEL_HANGUP_COMPLETE", "x-1"),
                event("CHANNEL_CREATE", ""),
                {"Event-Name": "HEARTBEAT"},
                {"Unique-ID": "a-1"},
            ]
        )
        == []
    )
    calls = mapper()
    run([caller_leg(), event("CHANNEL_HANGUP_COMPLETE", "a-1")], calls)
    assert run([event("CHANNEL_HANGUP_COMPLETE", "a-1")], calls) == []


def test_event_time_is_freeswitchs_when_given() -> None:
    assert event_time({"Event-Date-Timestamp": "1795803372250000"}, NOW) == datetime(
        2026, 11, 27, 18, 16, 12, 250000, tzinfo=UTC
    )
    assert event_time({}, NOW) == NOW
    assert event_time({"Event-Date-Timestamp": "0"}, NOW) == NOW


@pytest.mark.parametrize(
    ("causes", "expected"),
    [
        (["USER_BUSY", "USER_BUSY"], "BUSY"),
        (["CALL_REJECTED"], "BUSY"),
        (["USER_BUSY", "NO_ANSWER"], "NOANSWER"),
        (["USER_BUSY", "ORIGINATOR_CANCEL", "ORIGINATOR_CANCEL"], "CANCEL"),
        (["LOSE_RACE", "NO_USER_RESPONSE"], "NOANSWER"),
        (["SUBSCRIBER_ABSENT"], "CHANUNAVAIL"),
        (["RECOVERY_ON_TIMER_EXPIRE", "USER_NOT_REGISTERED"], "CONGESTION"),
        (["", "NORMAL_CLEARING", "SUCCESS"], None),
        (["LOSE_RACE", "PICKED_OFF", "BLIND_TRANSFER"], None),
    ],
)
def test_disposition_from_causes(causes: list[str], expected: str | None) -> None:
    assert disposition(causes) == expected


@pytest.mark.parametrize(
    ("name", "user"),
    [
        ("sofia/internal/1001@192.0.2.11:5060", "1001"),
        ("sofia/internal/sip:1001@192.0.2.11:5060", "1001"),
        ("sofia/internal/sips:1001@192.0.2.11:5061;transport=tls", "1001"),
        ("sofia/internal/1001", "1001"),
        ("sofia/gateway/carrier1/15559876543", None),
        ("loopback/1001-a", None),
        ("verto.rtc/1001@pbx.example.com", None),
        ("", None),
    ],
)
def test_the_user_of_a_channel_name(name: str, user: str | None) -> None:
    assert channel_user(name) == user
