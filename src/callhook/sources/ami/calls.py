"""Asterisk AMI events (Asterisk 12 and newer) -> callhook call events. Pure: no I/O.

``AmiCalls`` follows channels and turns what happens to them into ``call.started``,
``leg.ringing``, ``call.answered`` and ``call.ended`` through a ``CallTracker``.

**Calls and legs.** Every channel (a *leg*) carries a ``Uniqueid`` and a ``Linkedid``, the
Uniqueid of the oldest channel of its call tree. Legs are kept by Uniqueid and grouped by
Linkedid; the callhook call id is the Linkedid. A call ends (``call.ended``) when the last live
channel of its Linkedid hangs up: legs are counted from the first event that names them
(``Newchannel``, or any other channel event) to their ``Hangup``.

**Who is who** (the caller, the callee, a trunk's DID): see ``parties.py``; extensions come
only from channel endpoints, never from CallerIDNum.

- A call starts at its first ``DialBegin`` to a real endpoint (the callee: the extension or
  external number dialled, or a ring group's number), or at ``QueueCallerJoin``, which makes
  the queue the callee: an extension when its name matches the numbering (FreePBX names
  queues by number), else its name as a number.
- Every further ``DialBegin`` (or ``AgentCalled``) to an extension is a ``leg.ringing``;
  ``DialEnd`` with DialStatus ANSWER (or ``AgentConnect``) from a real endpoint answers the
  call: by that extension, or with no extension for a trunk (an outgoing call picked up).
- A call that ends unanswered takes the last failed DialStatus of a real endpoint (BUSY,
  NOANSWER, CANCEL, CHANUNAVAIL, CONGESTION), else of a Local channel; a caller that hangs up
  before any dial failed ended it with CANCEL (it left a queue, say); else callhook decides.

**Local channels** (``Local/210@from-queue-...;1`` and ``;2``, used by queues, ring groups and
follow-me) are legs of the call (same Linkedid) but never extensions and never callees: a
``DialBegin`` to a Local channel only notes the Exten it was dialled from; the ``;2`` half's own
``DialBegin`` to ``PJSIP/210`` is what rings 210, and its ``DialEnd`` ANSWER is the answer. An
answer by a Local channel alone (voicemail or an IVR behind it) is not an answer. Local
optimization (``LocalBridge``, ``LocalOptimizationBegin/End``) needs nothing: the Local halves
hang up, the real channels stay.

**Queues and ring-all.** One ``DialBegin`` per agent: each rings; the first ANSWER wins; the
others end with DialEnd CANCEL, which changes nothing here. callhook's domain gives the agents
that rang but did not answer their Hangup with CallStatus CANCEL.

**Transfers: each transfer starts a new call** ``<Linkedid>/t1``, ``/t2``... callhook's
domain ignores ringing after an answer, so the transfer target could not get its Dial-In in the
old call; a new call gives it Dial-In, Answer and Hangup of its own, with the party that was
transferred as the caller.

- *Blind* (``BlindTransfer`` Result=Success): the answered call ends now (the transferer, and
  the other party, get their Hangup with ANSWER); the next call's caller is the transferee and
  its number dialled the transfer's Extension. When Asterisk publishes the transferee's
  ``DialBegin`` to the target before the ``BlindTransfer`` (it may: the two run on different
  threads), the rule below has already done the same and the ``BlindTransfer`` changes nothing.
- Any ``DialBegin`` in a call that is already answered likewise ends it and starts the next
  (the caller going on after its callee left, a transfer made through the dialplan).
- *Attended* (``AttendedTransfer`` Result=Success): both calls of the transferer end now; the
  transferee and the target, now bridged, are a new call ``<Linkedid>/tN`` in the older of the
  two Linkedids (the one Asterisk keeps when it merges them), answered at once when the target
  had answered the consultation call. A transfer to an application (voicemail, parking) only
  ends the two calls.

**Reconnects** (``reconcile``, given the ``CoreShowChannel`` list): see ``reconcile.py``.

**Not covered**: Asterisk 11 and older (``Dial``/``Bridge`` events, no Linkedid); a dial that
Asterisk refuses before creating the callee's channel (PJSIP endpoint without a contact) has no
``DialBegin``, so callhook sees no call; DTMF attended transfers (``atxfer``) keep one Linkedid
and map as a dial after the answer; call pickup is seen as the picker's own call; a parked call
ends for the extension that parked it (a blind transfer) and its retrieval dials no one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from callhook.domain.calls import CallEvent, Party
from callhook.sources.ami import parties
from callhook.sources.ami.channels import (
    Snapshot,
    dialled_number,
    event_time,
    number_like,
    uniqueid_order,
)
from callhook.sources.ami.legs import FAILURES, GONE_LIMIT, Leg, Segment, Tree
from callhook.sources.ami.protocol import AmiMessage
from callhook.sources.ami.reconcile import reconcile as reconcile_channels
from callhook.sources.tracking import CallTracker, Numbering

Handler = Callable[["AmiCalls", AmiMessage, "Leg | None", "Leg | None", datetime], list[CallEvent]]


class AmiCalls:
    """The AMI ``Mapper``: ``feed`` one event at a time, ``reconcile`` after each connect."""

    def __init__(self, numbering: Numbering, tracker: CallTracker) -> None:
        self.numbering = numbering
        self.tracker = tracker
        self._legs: dict[str, Leg] = {}
        self._trees: dict[str, Tree] = {}
        self._gone: dict[str, None] = {}

    @property
    def legs(self) -> int:
        """Channels followed now."""
        return len(self._legs)

    # --- events ---------------------------------------------------------------------------

    def feed(self, message: Mapping[str, str], now: datetime) -> list[CallEvent]:
        msg = AmiMessage.of(message)
        name = (msg.event or "").lower()
        if not name or name.startswith("coreshowchannel"):
            return []
        time = event_time(msg, now)
        if name == "hangup":
            return self._hangup(msg, time)
        out: list[CallEvent] = []
        src = self._see(Snapshot.read(msg), time, out)
        dst = self._see(Snapshot.read(msg, "Dest"), time, out, parent=src)
        handler = _HANDLERS.get(name)
        if handler is not None:
            out += handler(self, msg, src, dst, time)
        return out

    def _see(
        self, snap: Snapshot | None, time: datetime, out: list[CallEvent], parent: Leg | None = None
    ) -> Leg | None:
        """The leg an event shows, registered on first sight and kept up to date."""
        if snap is None or snap.uniqueid in self._gone:
            return None
        leg = self._legs.get(snap.uniqueid)
        linkedid = (
            snap.linkedid
            or (leg.linkedid if leg else None)
            or (parent.linkedid if parent else None)
            or snap.uniqueid
        )
        if leg is None:
            leg = Leg.of(snap, linkedid, first_exten=snap.exten)
            self._legs[leg.uniqueid] = leg
            self._tree(linkedid).live.add(leg.uniqueid)
            return leg
        leg.channel = snap.channel
        leg.exten = snap.exten or leg.exten
        leg.number = snap.number or leg.number
        leg.name = snap.name or leg.name
        if linkedid != leg.linkedid:
            # Asterisk gives bridged channels the oldest Linkedid among them (transfers)
            out += self._move(leg, linkedid, time)
        return leg

    def _tree(self, linkedid: str) -> Tree:
        tree = self._trees.get(linkedid)
        if tree is None:
            tree = self._trees[linkedid] = Tree(linkedid)
        return tree

    def _move(self, leg: Leg, linkedid: str, time: datetime) -> list[CallEvent]:
        old = self._trees.get(leg.linkedid)
        leg.linkedid = linkedid
        self._tree(linkedid).live.add(leg.uniqueid)
        if old is None:
            return []
        old.live.discard(leg.uniqueid)
        return [] if old.live else self._finish(old, time)

    def _hangup(self, msg: AmiMessage, time: datetime) -> list[CallEvent]:
        uniqueid = msg.get("Uniqueid") or ""
        leg = self._legs.pop(uniqueid, None)
        if leg is None:
            return []
        self._gone[uniqueid] = None
        if len(self._gone) > GONE_LIMIT:
            del self._gone[next(iter(self._gone))]
        out: list[CallEvent] = []
        linkedid = msg.get("Linkedid")
        if linkedid and linkedid != leg.linkedid:
            out += self._move(leg, linkedid, time)
        tree = self._trees.get(leg.linkedid)
        if tree is None:
            return out
        seg = tree.segment
        if seg.started and not seg.answered and seg.caller == uniqueid and not _failed(seg):
            seg.outcome = "CANCEL"  # the caller gave up before any dial failed
        tree.live.discard(uniqueid)
        if not tree.live:
            out += self._finish(tree, time)
        return out

    def _finish(self, tree: Tree, time: datetime) -> list[CallEvent]:
        """The Linkedid's last channel is gone: its call is over."""
        self._trees.pop(tree.linkedid, None)
        return self._close(tree, time)

    def _close(self, tree: Tree, time: datetime) -> list[CallEvent]:
        seg = tree.segment
        if not seg.started or seg.ended:
            return []
        seg.ended = True
        return self.tracker.end(seg.call_id, time, seg.outcome or seg.local_outcome)

    # --- dials and answers ----------------------------------------------------------------

    def _dial_begin(
        self, msg: AmiMessage, src: Leg | None, dst: Leg | None, time: datetime
    ) -> list[CallEvent]:
        if src is None or dst is None:
            return []  # Originate dials its first channel from nowhere: not a call yet
        tree = self._trees[dst.linkedid]
        out, seg = self._fresh(tree, src, time)
        if not seg.started and src.exten:
            seg.dial_extens.append(src.exten)
        if dst.endpoint is None:
            return out  # a Local channel: its ;2 half's own dial rings the real endpoint
        dst.outgoing = True
        dst.dialled = dialled_number(msg.get("DialString"), dst.endpoint) or number_like(
            msg.get("DestExten")
        )
        if not seg.started:
            caller = self._caller(tree, seg, src)
            out += self._start(
                tree, seg, src, time, parties.callee(self.numbering, tree, seg, caller, dst)
            )
        ext = self.numbering.extension(dst.endpoint)
        if ext and seg.started:
            out += self.tracker.ring(seg.call_id, time, ext)
        return out

    def _fresh(self, tree: Tree, src: Leg, time: datetime) -> tuple[list[CallEvent], Segment]:
        """The segment a new dial belongs to: a dial in an answered call begins the next."""
        seg = tree.segment
        if not seg.answered:
            return [], seg
        out = self._close(tree, time)
        if src.endpoint is not None or seg.caller not in tree.live:
            caller = src.uniqueid
        else:  # a Local channel dials for someone: the party still in the call
            caller = seg.caller
        return out, tree.next_segment(caller)

    def _dial_end(
        self, msg: AmiMessage, src: Leg | None, dst: Leg | None, time: datetime
    ) -> list[CallEvent]:
        if src is None or dst is None:
            return []
        tree = self._trees.get(dst.linkedid)
        if tree is None:
            return []
        status = (msg.get("DialStatus") or "").upper()
        if status == "ANSWER":
            return self._answer(tree, dst, time) if dst.endpoint else []
        seg = tree.segment
        if status in FAILURES and not seg.answered:
            if dst.endpoint:
                seg.outcome = status
            else:
                seg.local_outcome = status
        return []

    def _answer(self, tree: Tree, leg: Leg, time: datetime) -> list[CallEvent]:
        seg = tree.segment
        if not seg.started or seg.answered or leg.uniqueid == seg.caller:
            return []
        seg.answered_by = leg.uniqueid
        return self.tracker.answer(seg.call_id, time, self.numbering.extension(leg.endpoint))

    def _queue_join(
        self, msg: AmiMessage, src: Leg | None, _dst: Leg | None, time: datetime
    ) -> list[CallEvent]:
        if src is None:
            return []
        tree = self._trees[src.linkedid]
        out, seg = self._fresh(tree, src, time)
        queue = (msg.get("Queue") or "").strip()
        if seg.started or not queue:
            return out
        return out + self._start(tree, seg, src, time, self.numbering.party(queue))

    def _agent_called(
        self, _msg: AmiMessage, src: Leg | None, dst: Leg | None, time: datetime
    ) -> list[CallEvent]:
        if src is None or dst is None:
            return []
        seg = self._trees[dst.linkedid].segment
        ext = self.numbering.extension(dst.endpoint)
        if not ext or not seg.started:
            return []
        return self.tracker.ring(seg.call_id, time, ext)

    def _agent_connect(
        self, _msg: AmiMessage, src: Leg | None, dst: Leg | None, time: datetime
    ) -> list[CallEvent]:
        if src is None or dst is None or dst.endpoint is None:
            return []
        return self._answer(self._trees[dst.linkedid], dst, time)

    # --- starting a call --------------------------------------------------------------------

    def _start(
        self, tree: Tree, seg: Segment, src: Leg, time: datetime, callee: Party
    ) -> list[CallEvent]:
        caller = self._caller(tree, seg, src)
        seg.caller = caller.uniqueid
        seg.started = True
        did = parties.did(self.numbering, caller)
        first = seg.call_id == tree.linkedid
        dialled = seg.dialled or (number_like(caller.first_exten) if first else None)
        party = parties.party(self.numbering, caller)
        return self.tracker.start(seg.call_id, time, party, callee, did=did, dialled=dialled)

    def _caller(self, tree: Tree, seg: Segment, src: Leg) -> Leg:
        """The segment's caller, else the channel that began the Linkedid, else ``src``."""
        return self._legs.get(seg.caller or "") or self._legs.get(tree.linkedid) or src

    # --- transfers --------------------------------------------------------------------------

    def _blind_transfer(
        self, msg: AmiMessage, _src: Leg | None, _dst: Leg | None, time: datetime
    ) -> list[CallEvent]:
        if (msg.get("Result") or "").lower() != "success":
            return []
        transferer = self._legs.get(msg.get("TransfererUniqueid") or "")
        tree = self._trees.get(transferer.linkedid) if transferer else None
        if transferer is None or tree is None or not tree.segment.answered:
            return []  # not followed, or the transferee's dial came first and began its call
        transferee = msg.get("TransfereeUniqueid")
        if transferee not in tree.live:
            transferee = self._other_party(tree, transferer.uniqueid)
        out = self._close(tree, time)
        tree.next_segment(transferee, number_like(msg.get("Extension")))
        return out

    def _attended_transfer(
        self, msg: AmiMessage, _src: Leg | None, _dst: Leg | None, time: datetime
    ) -> list[CallEvent]:
        if (msg.get("Result") or "").lower() != "success":
            return []
        first = self._legs.get(msg.get("OrigTransfererUniqueid") or "")
        second = self._legs.get(msg.get("SecondTransfererUniqueid") or "")
        one = self._trees.get(first.linkedid) if first else None
        two = self._trees.get(second.linkedid) if second else None
        if first is None or second is None or one is None or two is None:
            return []
        transferee = self._legs.get(msg.get("TransfereeUniqueid") or "") or self._legs.get(
            self._other_party(one, first.uniqueid) or ""
        )
        target = self._legs.get(msg.get("TransferTargetUniqueid") or "") or self._legs.get(
            self._other_party(two, second.uniqueid) or ""
        )
        answered = target is not None and target.uniqueid in (
            one.segment.answered_by,
            two.segment.answered_by,
        )
        out = self._close(one, time)
        one.next_segment(None)
        if two is not one:
            out += self._close(two, time)
            two.next_segment(None)
        if transferee is None or target is None or target.endpoint is None:
            return out  # to an application (voicemail, parking): the two calls just end
        host = min(one, two, key=lambda t: uniqueid_order(t.linkedid))
        for leg in (transferee, target):
            if leg.linkedid != host.linkedid:
                out += self._move(leg, host.linkedid, time)
        seg = host.segment
        seg.caller = transferee.uniqueid
        out += self._start(host, seg, transferee, time, parties.party(self.numbering, target))
        if answered:
            out += self._answer(host, target, time)
        return out

    def _other_party(self, tree: Tree, not_this: str) -> str | None:
        """The leg left talking when ``not_this`` leaves: the segment's other end, else any
        other real channel of the tree."""
        seg = tree.segment
        for uniqueid in (seg.caller, seg.answered_by):
            if uniqueid and uniqueid != not_this and uniqueid in tree.live:
                return uniqueid
        for uniqueid in sorted(tree.live, key=uniqueid_order):
            leg = self._legs.get(uniqueid)
            if uniqueid != not_this and leg is not None and leg.endpoint is not None:
                return uniqueid
        return None

    # --- reconnects -------------------------------------------------------------------------

    def reconcile(self, channels: Sequence[Mapping[str, str]], now: datetime) -> list[CallEvent]:
        """After a (re)connect, given the ``CoreShowChannel`` list (see ``reconcile.py``)."""
        return reconcile_channels(self, channels, now)


def _failed(seg: Segment) -> bool:
    return bool(seg.outcome or seg.local_outcome)


_HANDLERS: dict[str, Handler] = {
    "dialbegin": AmiCalls._dial_begin,
    "dialend": AmiCalls._dial_end,
    "queuecallerjoin": AmiCalls._queue_join,
    "agentcalled": AmiCalls._agent_called,
    "agentconnect": AmiCalls._agent_connect,
    "blindtransfer": AmiCalls._blind_transfer,
    "attendedtransfer": AmiCalls._attended_transfer,
}
