"""The call tracker shared by the AMI and ESL mappers, and the numbering of PBX endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callhook.domain.calls import CallState, Kind, Party, Trigger, apply
from callhook.sources.tracking import (
    GONE_AFTER_RECONNECT,
    CallTracker,
    Numbering,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
ALICE = Party("0003*210", "210", "Alice")
BOB = Party("0003*211", "211")


def test_numbering_turns_matching_endpoints_into_extensions() -> None:
    numbering = Numbering(3)
    assert numbering.extension("210") == "0003*210"
    assert numbering.extension("trunk-sip") is None
    assert numbering.extension("") is None
    assert numbering.extension(None) is None
    assert numbering.extension("1234567890123") is None  # 13 digits: not an extension number
    assert Numbering(12345, r"2\d\d").extension("250") == "12345*250"
    assert Numbering(3, r"2\d\d").extension("310") is None


def test_numbering_parties_keep_the_number_and_name_but_drop_placeholders() -> None:
    numbering = Numbering(3)
    assert numbering.party("210", "210", "Alice") == Party("0003*210", "210", "Alice")
    assert numbering.party("provider", "+15551234567", "<unknown>") == Party(
        None, "+15551234567", None
    )
    # an outside caller who withheld their number is anonymous (not the trunk's name)
    assert numbering.party("provider", "<unknown>") == Party(None, "anonymous", None)
    assert numbering.party("210", "21\x000", None).number == "210"
    assert len(numbering.party("210", "9" * 300).number or "") == 200


def test_numbering_refuses_a_bad_org_or_pattern() -> None:
    with pytest.raises(ValueError, match="organization code"):
        Numbering(1_000_000_000)
    with pytest.raises(Exception, match=r"unterminated|missing"):
        Numbering(3, "(")


def test_each_step_is_made_once_with_ids_derived_from_the_call() -> None:
    tracker = CallTracker()
    started = tracker.start("L1", T0, ALICE, BOB, dialled="211")
    assert [e.event_id for e in started] == ["L1:started"]
    assert started[0].caller == ALICE
    assert started[0].dialled == "211"
    assert tracker.start("L1", T0, ALICE, BOB) == []
    assert tracker.ring("L1", T0, "0003*211") == []  # the callee rang by being called
    assert [e.event_id for e in tracker.ring("L1", T0, "0003*212")] == ["L1:ring:0003*212"]
    assert tracker.ring("L1", T0, "0003*212") == []
    answered = tracker.answer("L1", T0, "0003*211")
    assert [(e.kind, e.extension) for e in answered] == [(Kind.ANSWERED, "0003*211")]
    assert tracker.answer("L1", T0, "0003*212") == []
    assert tracker.ring("L1", T0, "0003*213") == []  # after the answer: nothing rings
    assert tracker.tracked == 1
    ended = tracker.end("L1", T0, "BUSY")
    # an answered call's end lets callhook say ANSWER
    assert [(e.event_id, e.disposition) for e in ended] == [("L1:ended", None)]
    assert tracker.tracked == 0
    assert tracker.end("L1", T0) == []
    assert tracker.ring("L1", T0, "0003*214") == []  # not followed any more


def test_unanswered_end_keeps_its_disposition() -> None:
    tracker = CallTracker()
    tracker.start("L2", T0, ALICE, BOB)
    assert [e.disposition for e in tracker.end("L2", T0, "NOANSWER")] == ["NOANSWER"]


def test_reconcile_ends_the_calls_the_pbx_no_longer_has() -> None:
    tracker = CallTracker()
    tracker.start("gone", T0, ALICE, BOB)
    tracker.start("live", T0, ALICE, BOB)
    tracker.answer("gone", T0, None)
    ended = tracker.reconcile({"live", "unrelated"}, T0 + timedelta(minutes=2))
    assert [(e.call_id, e.kind, e.reconstructed) for e in ended] == [
        ("gone", Kind.ENDED, GONE_AFTER_RECONNECT)
    ]
    assert ended[0].time == T0 + timedelta(minutes=2)
    assert tracker.follows("live")
    assert not tracker.follows("gone")


def test_expire_closes_calls_older_than_the_maximum_age() -> None:
    tracker = CallTracker(max_age=timedelta(hours=4))
    tracker.start("old", T0, ALICE, BOB)
    tracker.start("young", T0 + timedelta(hours=3), ALICE, BOB)
    assert tracker.expire(T0 + timedelta(hours=4)) == []
    ended = tracker.expire(T0 + timedelta(hours=4, seconds=1))
    assert [(e.call_id, e.disposition) for e in ended] == [("old", "UNKNOWN")]
    assert ended[0].reconstructed == "the call outlived the maximum call age of 4h"
    assert tracker.tracked == 1


def test_a_reconstructed_hangup_fires_hangups_like_a_real_one() -> None:
    tracker = CallTracker()
    events = tracker.start("L3", T0, ALICE, BOB) + tracker.answer("L3", T0, "0003*211")
    events += tracker.reconcile(set(), T0 + timedelta(seconds=30))
    state, fired = CallState(), []
    for event in events:
        step = apply(state, event)
        state, fired = step.state, fired + step.fired
    hangups = [(f.extension, f.params["CallStatus"]) for f in fired if f.trigger is Trigger.HANGUP]
    assert hangups == [("0003*210", "ANSWER"), ("0003*211", "ANSWER")]


def test_event_ids_fit_the_ingest_limit() -> None:
    tracker = CallTracker()
    call_id = "c" * 200
    (event,) = tracker.start(call_id, T0, ALICE, BOB)
    assert len(event.event_id) == 200
    assert event.event_id.endswith(":started")
