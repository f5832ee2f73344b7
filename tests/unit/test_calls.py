"""Call events -> per-extension triggers (contract section 7), and the ingest validation."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callhook.domain.accounts import format_extended
from callhook.domain.calls import (
    MAX_BATCH,
    CallEvent,
    CallState,
    Kind,
    Party,
    Trigger,
    apply,
    fire_all,
    parse_batch,
    parse_event,
)
from callhook.errors import CallEventInvalid

T0 = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)

EXT_201 = "0003*201"
EXT_210 = "0003*210"
EXT_211 = "0003*211"
EXT_212 = "0003*212"
QUEUE = "0003*300"

JANE = {"number": "+15551234567", "name": "Jane Roe"}

Step = tuple[str, Trigger, dict[str, str]]


# --- helpers -----------------------------------------------------------------------------------


def _at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def started_doc(
    caller: dict[str, str],
    callee: dict[str, str],
    *,
    call_id: str = "call-1",
    at: int = 0,
    event_id: str = "e-start",
    **extra: str,
) -> dict[str, Any]:
    return {
        "type": "call.started",
        "event_id": event_id,
        "call_id": call_id,
        "time": _at(at),
        "caller": caller,
        "callee": callee,
        **extra,
    }


def started(
    caller: dict[str, str], callee: dict[str, str], *, at: int = 0, **extra: str
) -> CallEvent:
    return parse_event(started_doc(caller, callee, at=at, **extra))


def ringing(ext: str, *, at: int = 1, event_id: str | None = None) -> CallEvent:
    return parse_event(
        {
            "type": "leg.ringing",
            "event_id": event_id or f"e-ring-{ext}",
            "call_id": "call-1",
            "time": _at(at),
            "extension": ext,
        }
    )


def answered(ext: str | None = None, *, at: int = 5, event_id: str = "e-answer") -> CallEvent:
    doc: dict[str, Any] = {
        "type": "call.answered",
        "event_id": event_id,
        "call_id": "call-1",
        "time": _at(at),
    }
    if ext is not None:
        doc["extension"] = ext
    return parse_event(doc)


def ended(disposition: str | None = None, *, at: int = 60, event_id: str = "e-end") -> CallEvent:
    doc: dict[str, Any] = {
        "type": "call.ended",
        "event_id": event_id,
        "call_id": "call-1",
        "time": _at(at),
    }
    if disposition is not None:
        doc["disposition"] = disposition
    return parse_event(doc)


def roundtrip(state: CallState) -> CallState:
    """The state as stored: JSON text and back; it must come back equal."""
    doc = state.to_json()
    restored = CallState.from_json(json.loads(json.dumps(doc)))
    assert restored == state
    assert restored.to_json() == doc
    return restored


def step(state: CallState, event: CallEvent) -> tuple[CallState, list[Step], str | None]:
    """Apply one event to the stored state; return the stored new state and what fired."""
    result = apply(roundtrip(state), event)
    fired = [(f.extension, f.trigger, f.params) for f in result.fired]
    return roundtrip(result.state), fired, result.ignored


def run(*events: CallEvent) -> tuple[CallState, list[list[Step]]]:
    state, all_fired = CallState(), []
    for event in events:
        state, fired, _ = step(state, event)
        all_fired.append(fired)
    return state, all_fired


def ext_to_ext_params(flow: str, status: str, *, called: str = EXT_210) -> dict[str, str]:
    """Parameters of the 0003*201 -> 0003*210 call (no name, DID or API id: omitted)."""
    return {
        "CallID": "call-1",
        "CallerIDNum": "201",
        "CalledExtension": called,
        "CallerExtension": EXT_201,
        "CalledNumber": "210",
        "CallStatus": status,
        "CallFlow": flow,
    }


# --- extension to extension --------------------------------------------------------------------


def test_extension_to_extension_answered() -> None:
    state = CallState()
    total: list[Step] = []

    state, fired, ignored = step(state, started({"extension": EXT_201}, {"extension": EXT_210}))
    assert ignored is None
    assert fired == [
        (EXT_201, Trigger.DIAL_OUT, ext_to_ext_params("OUT", "CALLING")),
        (EXT_210, Trigger.DIAL_IN, ext_to_ext_params("IN", "CALLING")),
    ]
    total += fired
    assert state.ringing == (EXT_210,)

    state, fired, ignored = step(state, answered(EXT_210))
    assert ignored is None
    assert fired == [
        (EXT_210, Trigger.ANSWER_IN, ext_to_ext_params("IN", "ANSWER")),
        (EXT_201, Trigger.ANSWER_OUT, ext_to_ext_params("OUT", "ANSWER")),
    ]
    total += fired
    assert state.answered
    assert state.answered_by == EXT_210

    state, fired, ignored = step(state, ended("ANSWER"))
    assert ignored is None
    assert fired == [
        (EXT_201, Trigger.HANGUP, ext_to_ext_params("OUT", "ANSWER")),
        (EXT_210, Trigger.HANGUP, ext_to_ext_params("IN", "ANSWER")),
    ]
    total += fired
    assert state.ended
    assert state.disposition == "ANSWER"

    assert len(total) == 6
    for _, _, params in total:
        assert set(params) <= {
            "CallID",
            "CallerIDNum",
            "CallerIDName",
            "CalledDID",
            "CalledExtension",
            "CallerExtension",
            "CalledNumber",
            "CallStatus",
            "CallFlow",
            "CallAPIID",
        }
        for omitted in ("CallerIDName", "CalledDID", "CallAPIID"):
            assert omitted not in params
        assert all(isinstance(v, str) and v for v in params.values())


def test_known_optional_parameters_are_passed() -> None:
    event = started(
        {"extension": EXT_201, "name": "Alice"},
        {"extension": EXT_210},
        dialled="3*210",
        api_id="api-77",
    )
    _, fired, _ = step(CallState(), event)
    assert fired == [
        (
            EXT_201,
            Trigger.DIAL_OUT,
            {
                "CallID": "call-1",
                "CallerIDNum": "201",
                "CallerIDName": "Alice",
                "CalledExtension": EXT_210,
                "CallerExtension": EXT_201,
                "CalledNumber": "3*210",
                "CallStatus": "CALLING",
                "CallFlow": "OUT",
                "CallAPIID": "api-77",
            },
        ),
        (
            EXT_210,
            Trigger.DIAL_IN,
            {
                "CallID": "call-1",
                "CallerIDNum": "201",
                "CallerIDName": "Alice",
                "CalledExtension": EXT_210,
                "CallerExtension": EXT_201,
                "CalledNumber": "3*210",
                "CallStatus": "CALLING",
                "CallFlow": "IN",
                "CallAPIID": "api-77",
            },
        ),
    ]


# --- external to extension ---------------------------------------------------------------------


def test_external_to_extension_with_did() -> None:
    def params(status: str) -> dict[str, str]:
        return {
            "CallID": "call-1",
            "CallerIDNum": "+15551234567",
            "CallerIDName": "Jane Roe",
            "CalledDID": "+18005550100",
            "CalledExtension": EXT_210,
            "CalledNumber": "+18005550100",
            "CallStatus": status,
            "CallFlow": "IN",
        }

    event = started(JANE, {"extension": EXT_210}, did="+18005550100", dialled="+18005550100")
    state, fired, _ = step(CallState(), event)
    assert fired == [(EXT_210, Trigger.DIAL_IN, params("CALLING"))]
    assert "CallerExtension" not in fired[0][2]

    state, fired, _ = step(state, answered(EXT_210))
    assert fired == [(EXT_210, Trigger.ANSWER_IN, params("ANSWER"))]

    state, fired, _ = step(state, ended("ANSWER"))
    assert fired == [(EXT_210, Trigger.HANGUP, params("ANSWER"))]


# --- extension to external ---------------------------------------------------------------------


def test_extension_to_external() -> None:
    def params(status: str) -> dict[str, str]:
        return {
            "CallID": "call-1",
            "CallerIDNum": "201",
            "CallerExtension": EXT_201,
            "CalledNumber": "+15551234567",
            "CallStatus": status,
            "CallFlow": "OUT",
        }

    state, fired, _ = step(CallState(), started({"extension": EXT_201}, {"number": "+15551234567"}))
    assert fired == [(EXT_201, Trigger.DIAL_OUT, params("CALLING"))]
    assert state.ringing == ()

    state, fired, ignored = step(state, answered())
    assert ignored is None
    assert fired == [(EXT_201, Trigger.ANSWER_OUT, params("ANSWER"))]
    assert state.answered
    assert state.answered_by is None

    state, fired, _ = step(state, ended("ANSWER"))
    assert fired == [(EXT_201, Trigger.HANGUP, params("ANSWER"))]


# --- unanswered --------------------------------------------------------------------------------


@pytest.mark.parametrize("disposition", ["BUSY", "NOANSWER", "CANCEL"])
def test_unanswered(disposition: str) -> None:
    state, fired = run(
        started({"extension": EXT_201}, {"extension": EXT_210}),
        ended(disposition),
    )
    assert fired[1] == [
        (EXT_201, Trigger.HANGUP, ext_to_ext_params("OUT", disposition)),
        (EXT_210, Trigger.HANGUP, ext_to_ext_params("IN", disposition)),
    ]
    all_triggers = [t for group in fired for _, t, _ in group]
    assert Trigger.ANSWER_IN not in all_triggers
    assert Trigger.ANSWER_OUT not in all_triggers
    assert not state.answered
    assert state.disposition == disposition


def test_ended_without_disposition_is_unknown() -> None:
    # the parser leaves it to the call: UNKNOWN unless it was answered
    assert ended().disposition is None
    state, fired = run(started({"extension": EXT_201}, {"extension": EXT_210}), ended())
    assert fired[1] == [
        (EXT_201, Trigger.HANGUP, ext_to_ext_params("OUT", "UNKNOWN")),
        (EXT_210, Trigger.HANGUP, ext_to_ext_params("IN", "UNKNOWN")),
    ]
    assert state.disposition == "UNKNOWN"


def test_ended_event_built_without_disposition_on_an_unanswered_call() -> None:
    start = started({"extension": EXT_201}, {"extension": EXT_210})
    end = CallEvent("e-end", "call-1", Kind.ENDED, T0 + timedelta(seconds=30))
    _, fired = run(start, end)
    assert [(e, t, p["CallStatus"]) for e, t, p in fired[1]] == [
        (EXT_201, Trigger.HANGUP, "UNKNOWN"),
        (EXT_210, Trigger.HANGUP, "UNKNOWN"),
    ]


def test_lowercase_disposition_is_uppercased() -> None:
    assert ended("noanswer").disposition == "NOANSWER"
    assert ended("Busy").disposition == "BUSY"
    _, fired = run(started({"extension": EXT_201}, {"extension": EXT_210}), ended("busy"))
    assert [p["CallStatus"] for _, _, p in fired[1]] == ["BUSY", "BUSY"]


# --- queues ------------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", [{"extension": EXT_201}, JANE], ids=["extension", "external"])
def test_queue_answered_by_one_agent(caller: dict[str, str]) -> None:
    caller_ext = caller.get("extension")

    def params(flow: str, status: str, called: str) -> dict[str, str]:
        values = {
            "CallID": "call-1",
            "CalledExtension": called,
            "CalledNumber": "300",
            "CallStatus": status,
            "CallFlow": flow,
        }
        if caller_ext:
            values |= {"CallerIDNum": "201", "CallerExtension": EXT_201}
        else:
            values |= {"CallerIDNum": "+15551234567", "CallerIDName": "Jane Roe"}
        return values

    state, fired, _ = step(CallState(), started(caller, {"extension": QUEUE}))
    expected = [(QUEUE, Trigger.DIAL_IN, params("IN", "CALLING", QUEUE))]
    if caller_ext:
        expected.insert(0, (EXT_201, Trigger.DIAL_OUT, params("OUT", "CALLING", QUEUE)))
    assert fired == expected

    for i, agent in enumerate((EXT_210, EXT_211, EXT_212)):
        state, fired, ignored = step(state, ringing(agent, at=1 + i))
        assert ignored is None
        assert fired == [(agent, Trigger.DIAL_IN, params("IN", "CALLING", agent))]
    assert state.ringing == (QUEUE, EXT_210, EXT_211, EXT_212)

    state, fired, _ = step(state, answered(EXT_211))
    expected = [
        (EXT_211, Trigger.ANSWER_IN, params("IN", "ANSWER", EXT_211)),
        (QUEUE, Trigger.ANSWER_IN, params("IN", "ANSWER", QUEUE)),
    ]
    if caller_ext:
        expected.append((EXT_201, Trigger.ANSWER_OUT, params("OUT", "ANSWER", QUEUE)))
    assert fired == expected

    state, fired, _ = step(state, ended("ANSWER"))
    expected = [
        (QUEUE, Trigger.HANGUP, params("IN", "ANSWER", QUEUE)),
        (EXT_210, Trigger.HANGUP, params("IN", "CANCEL", EXT_210)),
        (EXT_211, Trigger.HANGUP, params("IN", "ANSWER", EXT_211)),
        (EXT_212, Trigger.HANGUP, params("IN", "CANCEL", EXT_212)),
    ]
    if caller_ext:
        expected.insert(0, (EXT_201, Trigger.HANGUP, params("OUT", "ANSWER", QUEUE)))
    assert fired == expected


def test_queue_not_answered_every_agent_gets_the_disposition() -> None:
    _, fired = run(
        started({"extension": EXT_201}, {"extension": QUEUE}),
        ringing(EXT_210),
        ringing(EXT_211),
        ended("NOANSWER"),
    )
    assert [(e, t, p["CallFlow"], p["CallStatus"]) for e, t, p in fired[-1]] == [
        (EXT_201, Trigger.HANGUP, "OUT", "NOANSWER"),
        (QUEUE, Trigger.HANGUP, "IN", "NOANSWER"),
        (EXT_210, Trigger.HANGUP, "IN", "NOANSWER"),
        (EXT_211, Trigger.HANGUP, "IN", "NOANSWER"),
    ]


def test_ringing_after_the_answer_is_ignored() -> None:
    state, _ = run(
        started({"extension": EXT_201}, {"extension": QUEUE}),
        ringing(EXT_210),
        answered(EXT_210),
    )
    state, fired, ignored = step(state, ringing(EXT_211, at=6))
    assert fired == []
    assert ignored
    assert EXT_211 not in state.ringing


# --- duplicates --------------------------------------------------------------------------------


def test_duplicate_ringing_is_ignored() -> None:
    state, _ = run(started({"extension": EXT_201}, {"extension": QUEUE}), ringing(EXT_210))
    before = state
    state, fired, ignored = step(state, ringing(EXT_210, at=2, event_id="e-ring-again"))
    assert fired == []
    assert ignored
    assert state == before
    # the called extension already rang at the start
    state, fired, ignored = step(state, ringing(QUEUE, at=3))
    assert fired == []
    assert ignored
    assert state.ringing == (QUEUE, EXT_210)


def test_duplicate_answer_is_ignored() -> None:
    state, _ = run(started({"extension": EXT_201}, {"extension": EXT_210}), answered(EXT_210))
    before = state
    state, fired, ignored = step(state, answered(EXT_210, at=6))
    assert fired == []
    assert ignored
    assert state == before
    # another extension claiming the answer is a duplicate too
    state, fired, ignored = step(state, answered(EXT_211, at=7))
    assert fired == []
    assert ignored
    assert state == before


def test_duplicate_start_is_ignored() -> None:
    start = started({"extension": EXT_201}, {"extension": EXT_210})
    state, _ = run(start)
    before = state
    state, fired, ignored = step(state, start)
    assert fired == []
    assert ignored
    assert state == before


def test_duplicate_end_and_events_after_the_end_are_ignored() -> None:
    state, _ = run(
        started({"extension": EXT_201}, {"extension": QUEUE}),
        ended("NOANSWER"),
    )
    before = state
    for late in (
        ended("ANSWER", at=61),
        ended("NOANSWER", at=62, event_id="e-end-2"),
        ringing(EXT_210, at=63),
        answered(EXT_210, at=64),
        started({"extension": EXT_201}, {"extension": QUEUE}, at=65),
    ):
        state, fired, ignored = step(state, late)
        assert fired == []
        assert ignored
        assert state == before


def test_full_call_with_every_event_twice_fires_each_trigger_once() -> None:
    events = [
        started({"extension": EXT_201}, {"extension": QUEUE}),
        ringing(EXT_210),
        ringing(EXT_211, at=2),
        answered(EXT_211),
        ended("ANSWER"),
    ]
    state, all_fired = CallState(), []
    for event in events:
        for _ in range(2):
            state, fired, _ = step(state, event)
            all_fired += [(e, t) for e, t, _ in fired]
    assert len(all_fired) == len(set(all_fired))
    assert all_fired == [
        (EXT_201, Trigger.DIAL_OUT),
        (QUEUE, Trigger.DIAL_IN),
        (EXT_210, Trigger.DIAL_IN),
        (EXT_211, Trigger.DIAL_IN),
        (EXT_211, Trigger.ANSWER_IN),
        (QUEUE, Trigger.ANSWER_IN),
        (EXT_201, Trigger.ANSWER_OUT),
        (EXT_201, Trigger.HANGUP),
        (QUEUE, Trigger.HANGUP),
        (EXT_210, Trigger.HANGUP),
        (EXT_211, Trigger.HANGUP),
    ]


# --- out of order ------------------------------------------------------------------------------


def test_ended_before_started_is_held() -> None:
    state, fired, ignored = step(CallState(), ended("BUSY"))
    assert fired == []
    assert ignored
    assert state.started is None
    assert not state.ended
    assert len(state.held) == 1

    state, fired, ignored = step(state, started({"extension": EXT_201}, {"extension": EXT_210}))
    assert ignored is None
    assert fired == [
        (EXT_201, Trigger.DIAL_OUT, ext_to_ext_params("OUT", "CALLING")),
        (EXT_210, Trigger.DIAL_IN, ext_to_ext_params("IN", "CALLING")),
        (EXT_201, Trigger.HANGUP, ext_to_ext_params("OUT", "BUSY")),
        (EXT_210, Trigger.HANGUP, ext_to_ext_params("IN", "BUSY")),
    ]
    assert state.ended
    assert state.held == ()


def test_answered_and_ended_before_started_are_applied_in_call_order() -> None:
    state = CallState()
    # arrival order: ended, answered (both before the start)
    for early in (ended("ANSWER"), answered(EXT_210)):
        state, fired, ignored = step(state, early)
        assert fired == []
        assert ignored
    assert len(state.held) == 2

    state, fired, _ = step(state, started({"extension": EXT_201}, {"extension": EXT_210}))
    assert fired == [
        (EXT_201, Trigger.DIAL_OUT, ext_to_ext_params("OUT", "CALLING")),
        (EXT_210, Trigger.DIAL_IN, ext_to_ext_params("IN", "CALLING")),
        (EXT_210, Trigger.ANSWER_IN, ext_to_ext_params("IN", "ANSWER")),
        (EXT_201, Trigger.ANSWER_OUT, ext_to_ext_params("OUT", "ANSWER")),
        (EXT_201, Trigger.HANGUP, ext_to_ext_params("OUT", "ANSWER")),
        (EXT_210, Trigger.HANGUP, ext_to_ext_params("IN", "ANSWER")),
    ]
    assert state.ended
    assert state.held == ()

    state, fired, ignored = step(state, ringing(EXT_211, at=70))
    assert fired == []
    assert ignored


def test_ringing_answered_ended_before_started_in_reverse_order() -> None:
    state = CallState()
    for early in (ended("ANSWER"), answered(EXT_211), ringing(EXT_212, at=2), ringing(EXT_211)):
        state, fired, _ = step(state, early)
        assert fired == []
    state, fired, _ = step(state, started(JANE, {"extension": QUEUE}))
    assert [(e, t, p["CallStatus"]) for e, t, p in fired] == [
        (QUEUE, Trigger.DIAL_IN, "CALLING"),
        # ringing by time: 211 (1 s) before 212 (2 s)
        (EXT_211, Trigger.DIAL_IN, "CALLING"),
        (EXT_212, Trigger.DIAL_IN, "CALLING"),
        (EXT_211, Trigger.ANSWER_IN, "ANSWER"),
        (QUEUE, Trigger.ANSWER_IN, "ANSWER"),
        (QUEUE, Trigger.HANGUP, "ANSWER"),
        (EXT_211, Trigger.HANGUP, "ANSWER"),
        (EXT_212, Trigger.HANGUP, "CANCEL"),
    ]


# --- CallState JSON ----------------------------------------------------------------------------


def test_call_state_json_is_plain() -> None:
    state, _ = run(
        started(JANE, {"extension": EXT_210}, did="+18005550100", api_id="a-1"),
        answered(EXT_210),
    )
    doc = json.loads(json.dumps(state.to_json()))
    assert doc["started"]["caller"] == JANE
    assert doc["started"]["callee"] == {"extension": EXT_210}
    assert doc["started"]["time"] == T0.isoformat()
    assert doc["ringing"] == [EXT_210]
    assert doc["answered"] is True
    assert doc["answered_by"] == EXT_210
    assert CallState.from_json(doc) == state
    assert roundtrip(CallState()) == CallState()


# --- parse_event / parse_batch -----------------------------------------------------------------


def _error(body: Any) -> str:
    with pytest.raises(CallEventInvalid) as info:
        parse_batch(body)
    assert info.value.code == "call_event_invalid"
    assert info.value.status == 400
    return info.value.message


def test_parse_valid_started() -> None:
    event = parse_event(
        started_doc(
            {"extension": "3*201", "name": "Alice"},
            {"number": "+15551234567"},
            did="+18005550100",
            dialled="+15551234567",
            api_id="api-1",
        )
    )
    assert event == CallEvent(
        event_id="e-start",
        call_id="call-1",
        kind=Kind.STARTED,
        time=T0,
        caller=Party(extension=EXT_201, name="Alice"),
        callee=Party(number="+15551234567"),
        did="+18005550100",
        dialled="+15551234567",
        api_id="api-1",
    )


def test_parse_valid_ringing_answered_ended() -> None:
    base = {"event_id": "e", "call_id": "c", "time": "2026-11-27T18:00:00Z"}
    assert parse_event({**base, "type": "leg.ringing", "extension": "3*210"}) == CallEvent(
        "e", "c", Kind.RINGING, T0, extension=EXT_210
    )
    assert parse_event({**base, "type": "call.answered", "extension": EXT_210}) == CallEvent(
        "e", "c", Kind.ANSWERED, T0, extension=EXT_210
    )
    assert parse_event({**base, "type": "call.answered"}) == CallEvent("e", "c", Kind.ANSWERED, T0)
    assert parse_event({**base, "type": "call.ended", "disposition": "CONGESTION"}) == CallEvent(
        "e", "c", Kind.ENDED, T0, disposition="CONGESTION"
    )
    offset = parse_event({**base, "type": "call.ended", "time": "2026-11-27T20:00:00+02:00"})
    assert offset.time == T0


def test_extension_numbers_are_normalised() -> None:
    assert format_extended(3, "210") == EXT_210
    event = parse_event(started_doc({"extension": "3*201"}, {"extension": "0003*210"}))
    assert event.caller == Party(extension=EXT_201)
    assert event.callee == Party(extension=EXT_210)
    assert ringing("3*211").extension == EXT_211
    assert answered("03*211").extension == EXT_211
    assert ringing("12345*7").extension == format_extended(12345, "7") == "12345*7"


def test_parse_batch_one_or_many() -> None:
    one = started_doc({"extension": EXT_201}, {"extension": EXT_210})
    assert parse_batch(one) == [parse_event(one)]
    docs = [
        one,
        {
            "type": "leg.ringing",
            "event_id": "e2",
            "call_id": "call-1",
            "time": _at(1),
            "extension": EXT_211,
        },
        {"type": "call.ended", "event_id": "e3", "call_id": "call-1", "time": _at(9)},
    ]
    events = parse_batch(docs)
    assert [e.kind for e in events] == [Kind.STARTED, Kind.RINGING, Kind.ENDED]
    assert len(parse_batch([one] * MAX_BATCH)) == MAX_BATCH


def _valid() -> dict[str, Any]:
    return started_doc({"extension": EXT_201}, {"extension": EXT_210})


def _without(name: str) -> dict[str, Any]:
    doc = _valid()
    del doc[name]
    return doc


def _with(**fields: Any) -> dict[str, Any]:
    return {**_valid(), **fields}


def _ringing_doc(**fields: Any) -> dict[str, Any]:
    return {"type": "leg.ringing", "event_id": "e", "call_id": "c", "time": _at(0), **fields}


@pytest.mark.parametrize(
    ("body", "start"),
    [
        pytest.param(_without("type"), "type: required", id="missing-type"),
        pytest.param(_with(type="call.transferred"), "type: 'call.transferred'", id="bad-type"),
        pytest.param(_with(type=3), "type: must be a string", id="type-not-string"),
        pytest.param(_without("event_id"), "event_id: required", id="missing-event-id"),
        pytest.param(_with(event_id=""), "event_id: must not be empty", id="empty-event-id"),
        pytest.param(_with(call_id=42), "call_id: must be a string, got int", id="call-id-int"),
        pytest.param(_with(time="2026-11-27T18:00:00"), "time: ", id="time-no-offset"),
        pytest.param(_with(time="yesterday"), "time: 'yesterday' is not", id="bad-time"),
        pytest.param(_with(time=1795802400), "time: must be a string", id="time-number"),
        pytest.param(_with(colour="red"), "colour: not a field", id="unknown-field"),
        pytest.param(_with(disposition="BUSY"), "disposition: not a field", id="other-kind"),
        pytest.param(_without("caller"), "caller: required object", id="caller-missing"),
        pytest.param(_with(caller="201"), "caller: required object", id="caller-string"),
        pytest.param(_with(caller={}), "caller: give 'extension' or 'number'", id="caller-empty"),
        pytest.param(
            _with(caller={"name": "Alice"}), "caller: give 'extension' or 'number'", id="name-only"
        ),
        pytest.param(
            _with(caller={"extension": EXT_201, "id": 1}),
            "caller.id: unknown field",
            id="caller-unknown-field",
        ),
        pytest.param(_without("callee"), "callee: required object", id="callee-missing"),
        pytest.param(
            _with(callee={"extension": "210"}), "callee.extension: '210' is a short", id="short"
        ),
        pytest.param(
            _with(caller={"extension": "abc"}), "caller.extension: The extension", id="bad-ext"
        ),
        pytest.param(
            {**_ringing_doc(), "type": "call.ended", "disposition": "HUNGUP"},
            "disposition: 'HUNGUP' is not one of",
            id="bad-disposition",
        ),
        pytest.param(_ringing_doc(), "extension: required", id="ringing-without-extension"),
        pytest.param(
            _ringing_doc(extension="210"), "extension: '210' is a short", id="ringing-short"
        ),
        pytest.param([], "body: the array is empty", id="empty-array"),
        pytest.param([_valid()] * (MAX_BATCH + 1), "body: 1001 events", id="too-many"),
        pytest.param("call.started", "body: must be a JSON object", id="string-body"),
        pytest.param(None, "body: must be a JSON object", id="null-body"),
        pytest.param(
            [_valid(), _valid(), _without("event_id")], "[2].event_id: required", id="item"
        ),
        pytest.param(
            [_valid(), _valid(), _with(callee={"extension": "210"})],
            "[2].callee.extension: '210'",
            id="item-nested",
        ),
        pytest.param([_valid(), _valid(), 7], "[2]: must be a JSON object", id="item-not-object"),
    ],
)
def test_parse_errors_name_the_field(body: Any, start: str) -> None:
    assert _error(body).startswith(start)


def test_parse_error_details() -> None:
    assert "no UTC offset" in _error(_with(time="2026-11-27T18:00:00"))
    assert "RFC 3339" in _error(_with(time="yesterday"))
    message = _error(_with(callee={"extension": "210"}))
    assert "extended form" in message
    assert "0003*210" in message
    assert "call.started, leg.ringing, call.answered, call.ended" in _error(_with(type="x"))
    assert "ANSWER, BUSY, NOANSWER" in _error(
        {**_ringing_doc(), "type": "call.ended", "disposition": "HUNGUP"}
    )
    assert "1000" in _error([_valid()] * (MAX_BATCH + 1))
    assert _error([_valid(), _valid(), 7]).startswith("[2]")
    with pytest.raises(CallEventInvalid) as info:
        parse_event({**_valid(), "event_id": None})
    assert info.value.message == "event_id: required"


def test_answered_call_ended_without_disposition_is_answer() -> None:
    state, fired = run(
        started({"extension": EXT_201}, {"extension": EXT_210}), answered(EXT_210), ended()
    )
    assert [p["CallStatus"] for _, _, p in fired[2]] == ["ANSWER", "ANSWER"]
    assert state.disposition == "ANSWER"


def test_called_number_falls_back_to_the_did() -> None:
    caller = {"number": "+15551234567"}
    event = parse_event(
        {
            "type": "call.started",
            "event_id": "e1",
            "call_id": "call-1",
            "time": "2026-11-27T18:00:00Z",
            "caller": caller,
            "callee": {"extension": EXT_210},
            "did": "+18005550100",
        }
    )
    (fired,) = apply(CallState(), event).fired
    assert fired.params["CalledNumber"] == "+18005550100"


def test_fire_all_folds_each_call_on_its_own() -> None:
    one = started({"extension": "0003*210"}, {"extension": "0003*211"})
    two = replace(one, event_id="e2", call_id="call-2")
    end_one = CallEvent("e-end", "call-1", Kind.ENDED, one.time, disposition="BUSY")
    fired = fire_all([one, two, end_one])
    assert [(call, f.extension, f.trigger) for call, f in fired] == [
        ("call-1", "0003*210", Trigger.DIAL_OUT),
        ("call-1", "0003*211", Trigger.DIAL_IN),
        ("call-2", "0003*210", Trigger.DIAL_OUT),
        ("call-2", "0003*211", Trigger.DIAL_IN),
        ("call-1", "0003*210", Trigger.HANGUP),
        ("call-1", "0003*211", Trigger.HANGUP),
    ]
    assert fired[-1][1].params["CallStatus"] == "BUSY"
