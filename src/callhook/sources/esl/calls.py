"""FreeSWITCH channel events as callhook call events: the ESL mapper. Pure: no I/O.

FreeSWITCH reports channels (legs), not calls; ``EslCalls`` groups them into calls.

**Legs and who is who** (``legs.py``): the *caller leg* is the channel FreeSWITCH made for an
incoming call (``Call-Direction: inbound``); its ``Unique-ID`` is the call id. *Callee legs*
(``outbound``) join the call of the leg that dialled them; *loopback legs* (ring groups,
follow-me, queues) are never extensions and never answer for anyone. The call ends when the
last of its legs has sent CHANNEL_HANGUP_COMPLETE.

**Events.**

- CHANNEL_CREATE of a caller leg: ``call.started``. CHANNEL_CREATE or CHANNEL_OUTGOING
  (whichever comes first) of a callee leg towards an extension: ``leg.ringing`` for it (callhook
  drops the one of the callee itself, which rang by being called).
- CHANNEL_ANSWER of a callee leg: ``call.answered`` by its extension, or by nobody in
  particular for a gateway leg (the outside party answered). The caller leg's own answer (an
  IVR, voicemail, ``answer`` in the dialplan) answers nothing, nor does a loopback leg's.
- CHANNEL_BRIDGE: as the answer of the callee leg it bridges, should its CHANNEL_ANSWER have
  been missed.
- CHANNEL_HANGUP_COMPLETE: the leg is gone; the last one ends the call (``call.ended``).

**Disposition** of a call nobody answered: from the Hangup-Causes of its legs and the caller
leg's ``variable_originate_disposition`` (see ``causes.py``).

**Transfers** (``uuid_transfer``, a phone's blind transfer by REFER, ``att_xfer``): once a call
is answered, callhook ignores more ringing, so a leg dialled *after* the answer starts a new
call ``<call id>/t1`` (``/t2``... for the next ones). The answered part ends there (its
Hangup goes to everyone in it, the transferring extension included, with ANSWER); the new
part's caller is whoever the new leg was dialled for (the caller leg's party, or the
extension of the callee leg that was transferred), its callee the new leg's, its DID the
call's. ``deflect`` (a REFER sent to the phone) takes the call out of FreeSWITCH: its leg
hangs up and the redirected call comes back, if at all, as a new call.

**Reconnects** (``reconcile``, given the rows of ``show channels as json``): see
``reconcile.py``.

**Not followed**: calls placed by the originate API without a caller leg (click-to-call,
mod_callcenter agents), call pickup (the picked-up leg ends PICKED_OFF; the call ends
unanswered). Events of channels that belong to no followed call are ignored. Of a call that
began while the link was down, what happened during the outage is not known: a ring group
member that stopped ringing meanwhile never rang for callhook, a transfer made meanwhile is not
a new call, and a call that began and ended during the outage is not seen at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from callhook.domain.calls import CallEvent, Party
from callhook.sources.esl.causes import disposition
from callhook.sources.esl.legs import (
    Call,
    Leg,
    Role,
    callee_party,
    caller_party,
    channel_user,
    dialled_by,
    dialled_party,
    is_loopback,
    party_of,
)
from callhook.sources.esl.reconcile import reconcile as reconcile_channels
from callhook.sources.esl.reconcile import row_created
from callhook.sources.link import Message
from callhook.sources.tracking import CallTracker, Numbering

#: the mapper, and the helpers of legs.py, causes.py and reconcile.py tests read from here
__all__ = ["EslCalls", "channel_user", "disposition", "event_time", "row_created"]

#: state kept for calls the tracker no longer follows (expired) is dropped every so often
_SWEEP_EVERY = 500
#: legs of calls no longer followed, remembered so that a reconnect does not start them again
_GONE_LIMIT = 10_000


def event_time(message: Message, now: datetime) -> datetime:
    """Event-Date-Timestamp (microseconds since the epoch) when present, else ``now``."""
    raw = message.get("Event-Date-Timestamp", "")
    if raw.isdigit() and int(raw) > 0:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(raw))
    return now


class EslCalls:
    """The ``Mapper`` for FreeSWITCH: feed it ESL events, get callhook call events."""

    def __init__(self, numbering: Numbering, tracker: CallTracker) -> None:
        self.numbering = numbering
        self.tracker = tracker
        self._legs: dict[str, Leg] = {}
        self._calls: dict[str, Call] = {}
        #: uuids of the legs of calls no longer followed (oldest first, at most _GONE_LIMIT)
        self._gone: dict[str, None] = {}
        self._fed = 0
        self._steps: dict[str, Callable[[str, Message, datetime], list[CallEvent]]] = {
            "CHANNEL_CREATE": self._created,
            "CHANNEL_OUTGOING": self._created,
            "CHANNEL_ANSWER": self._answered,
            "CHANNEL_BRIDGE": self._bridged,
            "CHANNEL_HANGUP_COMPLETE": self._hung_up,
        }

    @property
    def legs(self) -> int:
        """Legs of the calls being followed (live or not)."""
        return len(self._legs)

    def feed(self, message: Message, now: datetime) -> list[CallEvent]:
        step = self._steps.get(message.get("Event-Name", ""))
        uuid = message.get("Unique-ID")
        if step is None or not uuid:
            return []
        self._fed += 1
        if self._fed % _SWEEP_EVERY == 0:
            self._sweep()
        return step(uuid, message, event_time(message, now))

    def reconcile(self, channels: Sequence[Message], now: datetime) -> list[CallEvent]:
        """After a (re)connect, given the rows of ``show channels`` (see ``reconcile.py``): calls
        that ended meanwhile are closed, calls that began meanwhile are started, and calls
        answered meanwhile are answered."""
        return reconcile_channels(self, channels, now)

    # --- the steps ----------------------------------------------------------------------------

    def _created(self, uuid: str, message: Message, time: datetime) -> list[CallEvent]:
        if uuid in self._legs:
            return self._known_again(self._legs[uuid], message, time)
        inbound = message.get("Call-Direction") == "inbound"
        if inbound and not is_loopback(message):
            return self._start(uuid, message, time)
        parent = dialled_by(self._legs, message)
        call = self._calls.get(parent.root) if parent else None
        if parent is None or call is None:
            return []  # dialled by no leg we follow: an API originate, or an unfollowed call
        role = Role.LOOPBACK if is_loopback(message) else Role.CALLEE
        party = (
            callee_party(self.numbering, message)
            if role is Role.CALLEE
            else dialled_party(self.numbering, message)
        )
        events: list[CallEvent] = []
        if call.answered:
            events += self._transfer(call, parent, party, message, time)
        self._legs[uuid] = Leg(uuid, call.root, role, call.segment, party, parent.uuid)
        call.legs.add(uuid)
        call.live.add(uuid)
        if role is Role.CALLEE and party.extension:
            events += self.tracker.ring(call.segment, time, party.extension)
        return events

    def _known_again(self, leg: Leg, message: Message, time: datetime) -> list[CallEvent]:
        """CHANNEL_CREATE after CHANNEL_OUTGOING: the variables (dialed_user) are known now."""
        call = self._calls.get(leg.root)
        if leg.role is not Role.CALLEE or leg.party.extension or call is None:
            return []
        party = callee_party(self.numbering, message)
        if not party.extension:
            return []
        leg.party = party
        if leg.segment != call.segment:
            return []
        return self.tracker.ring(call.segment, time, party.extension)

    def _start(self, uuid: str, message: Message, time: datetime) -> list[CallEvent]:
        caller = caller_party(self.numbering, message)
        dialled = message.get("Caller-Destination-Number") or None
        callee = self.numbering.party(dialled)
        did = dialled if caller.extension is None else None
        call = Call(uuid, caller, did, uuid, legs={uuid}, live={uuid})
        self._calls[uuid] = call
        self._legs[uuid] = Leg(uuid, uuid, Role.CALLER, uuid, caller)
        return self.tracker.start(uuid, time, caller, callee, did=did, dialled=dialled)

    def _transfer(
        self, call: Call, parent: Leg, callee: Party, message: Message, time: datetime
    ) -> list[CallEvent]:
        """A leg dialled after the answer: the answered part ends, a new call id begins."""
        events = self.tracker.end(call.segment, time)
        call.transfers += 1
        call.segment = f"{call.root}/t{call.transfers}"
        call.answered = False
        call.causes = []
        caller = party_of(self._legs, parent, call)
        dialled = message.get("Caller-Destination-Number") or None
        return events + self.tracker.start(
            call.segment, time, caller, callee, did=call.did, dialled=dialled
        )

    def _answered(self, uuid: str, message: Message, time: datetime) -> list[CallEvent]:
        leg = self._legs.get(uuid)
        if leg is None or leg.role is not Role.CALLEE:
            return []  # the caller leg answered by an IVR or voicemail; a loopback leg
        call = self._calls.get(leg.root)
        if call is None or call.answered or leg.segment != call.segment:
            return []
        call.answered = True
        return self.tracker.answer(call.segment, time, leg.party.extension)

    def _bridged(self, uuid: str, message: Message, time: datetime) -> list[CallEvent]:
        sides = (message.get("Bridge-B-Unique-ID"), message.get("Bridge-A-Unique-ID"), uuid)
        for side in sides:
            if side and (leg := self._legs.get(side)) and leg.role is Role.CALLEE:
                return self._answered(side, message, time)
        return []

    def _hung_up(self, uuid: str, message: Message, time: datetime) -> list[CallEvent]:
        leg = self._legs.get(uuid)
        call = self._calls.get(leg.root) if leg else None
        if leg is None or call is None or uuid not in call.live:
            return []
        call.live.discard(uuid)
        cause = message.get("Hangup-Cause") or message.get("variable_hangup_cause") or ""
        if leg.role is Role.CALLER:
            call.causes += [message.get("variable_originate_disposition", ""), cause]
        elif leg.segment == call.segment:
            call.causes.append(cause)
        if call.live:
            return []
        self._forget(call)
        return self.tracker.end(call.segment, time, disposition(call.causes))

    # --- housekeeping -------------------------------------------------------------------------

    def _forget(self, call: Call) -> None:
        self._calls.pop(call.root, None)
        for uuid in call.legs:
            self._legs.pop(uuid, None)
            self._gone[uuid] = None
        while len(self._gone) > _GONE_LIMIT:
            del self._gone[next(iter(self._gone))]

    def _sweep(self) -> None:
        """Drop calls the tracker stopped following (closed by the maximum call age)."""
        for call in [c for c in self._calls.values() if not self.tracker.follows(c.segment)]:
            self._forget(call)
