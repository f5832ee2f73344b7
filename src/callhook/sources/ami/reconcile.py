"""What ``AmiCalls`` does after the link (re)connects, given the ``CoreShowChannel`` list.
Pure: no I/O.

Legs the PBX no longer has are forgotten; calls followed before the drop whose channels are all
gone are ended by the tracker (``reconstructed``). A followed call whose callee's channel is now
up and bridged was answered meanwhile and gets its ``call.answered`` now. A call the PBX has
that callhook did not follow (it began while the link was down, or before callhook started) is
started from the channel list, back-dated by its channels' Duration, with no DID (what was
dialled is not in the list): its event ids are derived from the Linkedid, so a call already
stored before a restart is a duplicate that ingest ignores, and it then gets its Hangup like any
other.

These functions read and update the legs and trees of the ``AmiCalls`` they are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from callhook.domain.calls import CallEvent, Party
from callhook.sources.ami import parties
from callhook.sources.ami.channels import Snapshot, channel_age, number_like, uniqueid_order
from callhook.sources.ami.legs import Leg, Tree
from callhook.sources.ami.protocol import AmiMessage
from callhook.sources.tracking import Numbering

if TYPE_CHECKING:
    from callhook.sources.ami.calls import AmiCalls


def reconcile(
    calls: AmiCalls, channels: Sequence[Mapping[str, str]], now: datetime
) -> list[CallEvent]:
    """After a (re)connect, given the ``CoreShowChannel`` list (see the module doc)."""
    shown: dict[str, tuple[Snapshot, AmiMessage]] = {}
    for channel in channels:
        msg = AmiMessage.of(channel)
        snap = Snapshot.read(msg)
        if snap is not None:
            shown[snap.uniqueid] = (snap, msg)
    for uniqueid in [u for u in calls._legs if u not in shown]:
        del calls._legs[uniqueid]
    for tree in calls._trees.values():
        tree.live.clear()
    for snap, _msg in shown.values():
        leg = calls._legs.get(snap.uniqueid)
        linkedid = snap.linkedid or (leg.linkedid if leg else snap.uniqueid)
        if leg is None:
            # seen first in the list: what it dialled is unknown (no first Exten)
            leg = Leg.of(snap, linkedid, first_exten=None)
            calls._legs[snap.uniqueid] = leg
        leg.channel, leg.linkedid = snap.channel, linkedid
        leg.exten = snap.exten or leg.exten
        calls._tree(linkedid).live.add(snap.uniqueid)
    for linkedid in [k for k, tree in calls._trees.items() if not tree.live]:
        del calls._trees[linkedid]
    live = {
        tree.segment.call_id
        for tree in calls._trees.values()
        if tree.segment.started and not tree.segment.ended
    }
    out = calls.tracker.reconcile(live, now)
    states = {uniqueid: msg for uniqueid, (_snap, msg) in shown.items()}
    for tree in list(calls._trees.values()):
        out += _catch_up(calls, tree, states, now)
    return out


def _catch_up(
    calls: AmiCalls, tree: Tree, states: Mapping[str, AmiMessage], now: datetime
) -> list[CallEvent]:
    """Start a call the PBX has and callhook does not follow; answer one answered meanwhile."""
    seg = tree.segment
    if seg.ended:
        return []
    numbering = calls.numbering
    legs = [calls._legs[u] for u in sorted(tree.live, key=uniqueid_order)]
    out: list[CallEvent] = []
    if not seg.started:
        origin = calls._legs.get(tree.linkedid) or legs[0]
        others = [leg for leg in legs if leg.endpoint is not None and leg is not origin]
        callee = _callee_from_list(numbering, origin, others, states)
        if callee is None:
            return []  # not dialling anyone yet: its next DialBegin starts it
        for leg in others:
            leg.outgoing = True
        age = max(channel_age(states[leg.uniqueid]) or timedelta() for leg in legs)
        seg.caller, seg.started = origin.uniqueid, True
        caller = parties.party(numbering, origin)
        out += calls.tracker.start(seg.call_id, now - age, caller, callee)
        for leg in others:
            ext = numbering.extension(leg.endpoint)
            if ext:
                out += calls.tracker.ring(seg.call_id, now, ext)
    if not seg.answered:
        for leg in legs:
            if leg.endpoint is not None and _bridged_up(states[leg.uniqueid]):
                out += calls._answer(tree, leg, now)
                if seg.answered:
                    break
    return out


def _callee_from_list(
    numbering: Numbering, origin: Leg, others: list[Leg], states: Mapping[str, AmiMessage]
) -> Party | None:
    state = states[origin.uniqueid]
    if (state.get("Application") or "").lower() == "queue":
        queue = (state.get("ApplicationData") or "").split(",", 1)[0].strip()
        if queue:
            return numbering.party(queue)
    if not others:
        return None
    pick = next((leg for leg in others if _bridged_up(states[leg.uniqueid])), None)
    pick = pick or next((g for g in others if numbering.extension(g.endpoint)), others[0])
    if numbering.extension(pick.endpoint):
        return numbering.party(pick.endpoint)
    # a trunk: the caller's connected line is the number it reached
    return numbering.party(pick.endpoint, number_like(state.get("ConnectedLineNum")))


def _bridged_up(state: AmiMessage) -> bool:
    up = state.get("ChannelState") == "6" or (state.get("ChannelStateDesc") or "").lower() == "up"
    return up and bool(state.get("BridgeId"))
