"""FreeSWITCH channel events as callhook call events: the ESL mapper. Pure: no I/O.

FreeSWITCH reports channels (legs), not calls; ``EslCalls`` groups them into calls.

**Legs.** The *caller leg* is a channel FreeSWITCH made for an incoming call
(``Call-Direction: inbound``: the direction is FreeSWITCH's view); its ``Unique-ID`` is the
call id. *Callee legs* (``outbound``, made by ``bridge`` or ``originate``) join the call of the
leg that dialled them, found through ``variable_originating_leg_uuid``, ``Other-Leg-Unique-ID``,
``variable_originator``, ``variable_call_uuid`` or ``Channel-Call-UUID`` (the first that names a
followed leg). *Loopback legs* (``loopback/2000-a`` outbound, ``loopback/2000-b`` inbound; ring
groups, follow-me and queues use them) are never extensions and never answer for anyone: the -b
leg joins through ``variable_other_loopback_leg_uuid``, and the phones it dials join through it,
so they stay in the call after the loopback bows out. The call ends when the last of its legs
has sent CHANNEL_HANGUP_COMPLETE.

**Who is who.** The caller is the caller leg's ``variable_user_name`` (set when FreeSWITCH
authenticated the phone), else ``variable_sip_from_user`` or the Channel-Name's user
(``sofia/internal/1000@pbx``) unless the call came in the ``public`` context or through a
gateway (there the From user is an outside number); its number and name are
Caller-Caller-ID-Number/-Name. The callee of ``call.started`` is the number dialled
(Caller-Destination-Number), an extension when the numbering says so (a phone, a ring group, a
queue); when the caller is not an extension, that number is also the DID. A callee leg's
extension is ``variable_dialed_user`` (the ``user/`` endpoint), else the Channel-Name's user
(``sofia/internal/1001@10.0.0.5``, ``sofia/internal/sip:1001@10.0.0.5:5060``), never
Caller-Caller-ID-Number (the caller's number, on every leg). ``sofia/gateway/GW/NUMBER`` legs,
or legs with ``variable_sip_gateway_name``, are outside numbers.

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

**Disposition** of a call nobody answered, from the Hangup-Cause of its legs, the caller leg's
``variable_originate_disposition`` (the last ``bridge``'s outcome) and its own cause; when
they differ the first of CANCEL, NOANSWER, BUSY, CONGESTION, CHANUNAVAIL found wins (the caller
gave up; something rang; all were busy; the network failed; nobody could be reached), else
callhook's UNKNOWN. See ``CAUSES``: USER_BUSY and CALL_REJECTED (a phone's Decline) are BUSY;
NO_ANSWER, NO_USER_RESPONSE, ALLOTTED_TIMEOUT and PROGRESS_TIMEOUT are NOANSWER;
ORIGINATOR_CANCEL is CANCEL; USER_NOT_REGISTERED, SUBSCRIBER_ABSENT, UNALLOCATED_NUMBER,
NO_ROUTE_DESTINATION and the like are CHANUNAVAIL; NORMAL_TEMPORARY_FAILURE,
RECOVERY_ON_TIMER_EXPIRE, gateway and network failures are CONGESTION. LOSE_RACE and
PICKED_OFF (another leg won) and the transfer causes say nothing about the call.

**Transfers** (``uuid_transfer``, a phone's blind transfer by REFER, ``att_xfer``): once a call
is answered, callhook ignores more ringing, so a leg dialled *after* the answer starts a new
call ``<call id>/t1`` (``/t2``... for the next ones). The answered part ends there (its
Hangup goes to everyone in it, the transferring extension included, with ANSWER); the new
part's caller is whoever the new leg was dialled for (the caller leg's party, or the
extension of the callee leg that was transferred), its callee the new leg's, its DID the
call's. ``deflect`` (a REFER sent to the phone) takes the call out of FreeSWITCH: its leg
hangs up and the redirected call comes back, if at all, as a new call.

**Reconnects** (``reconcile``, given the rows of ``show channels as json``): legs FreeSWITCH
no longer has were missed while the link was down; a followed call none of whose legs is left
has ended, and the tracker ends it (``reconstructed``). Live channels callhook does not follow
are grouped as the events would have grouped them: an ``inbound`` non-loopback channel is a
caller leg; any other joins the leg its ``call_uuid`` names (FreeSWITCH sets it to the
originating leg's uuid when it dials a leg, and to the caller's on a bridge), and a loopback
``-b`` leg joins its ``-a`` partner (same name but the last letter). A leg that joins a followed
call is registered in it: ``leg.ringing`` when it is an extension, and the call is answered if
it is. A caller leg nobody follows began its call while the link was down (or before callhook
started): the call is started from the rows, back-dated to the caller leg's ``created_epoch``,
with the caller from its channel name and caller id (``initial_cid_num``, ``initial_context``)
and the number dialled (``initial_dest``; also the DID when the caller is not an extension) as
for a CHANNEL_CREATE, then ``leg.ringing`` for its callee legs that are extensions. Any followed
or started call one of whose callee legs (not a loopback) is answered (callstate ``ACTIVE``,
``HELD`` or ``UNHELD``) gets its ``call.answered``. These rings and answers are dated at the
reconnect (when they happened is not in the rows). The legs are
registered, so their CHANNEL_HANGUP_COMPLETE ends the call as usual; the event ids come from
the caller leg's uuid, so a call stored before a restart is a duplicate that ingest ignores. A
call older than the maximum call age is left alone (the tracker would close it at once), and so
are the channels of a call callhook closed already (by that age, say).

**Not followed**: calls placed by the originate API without a caller leg (click-to-call,
mod_callcenter agents), call pickup (the picked-up leg ends PICKED_OFF; the call ends
unanswered). Events of channels that belong to no followed call are ignored. Of a call that
began while the link was down, what happened during the outage is not known: a ring group
member that stopped ringing meanwhile never rang for callhook, a transfer made meanwhile is not
a new call, and a call that began and ended during the outage is not seen at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from callhook.domain.calls import CallEvent, Party
from callhook.sources.link import Message
from callhook.sources.tracking import CallTracker, Numbering

BUSY, NOANSWER, CANCEL = "BUSY", "NOANSWER", "CANCEL"
CONGESTION, CHANUNAVAIL = "CONGESTION", "CHANUNAVAIL"

#: Hangup-Cause (or originate_disposition) -> the disposition it means; others mean nothing
CAUSES: dict[str, str] = {
    "USER_BUSY": BUSY,
    "CALL_REJECTED": BUSY,
    "NO_ANSWER": NOANSWER,
    "NO_USER_RESPONSE": NOANSWER,
    "ALLOTTED_TIMEOUT": NOANSWER,
    "PROGRESS_TIMEOUT": NOANSWER,
    "ORIGINATOR_CANCEL": CANCEL,
    "USER_NOT_REGISTERED": CHANUNAVAIL,
    "SUBSCRIBER_ABSENT": CHANUNAVAIL,
    "UNALLOCATED_NUMBER": CHANUNAVAIL,
    "NO_ROUTE_DESTINATION": CHANUNAVAIL,
    "NO_ROUTE_TRANSIT_NET": CHANUNAVAIL,
    "DESTINATION_OUT_OF_ORDER": CHANUNAVAIL,
    "INVALID_NUMBER_FORMAT": CHANUNAVAIL,
    "NUMBER_CHANGED": CHANUNAVAIL,
    "INCOMPATIBLE_DESTINATION": CHANUNAVAIL,
    "INVALID_GATEWAY": CHANUNAVAIL,
    "NORMAL_TEMPORARY_FAILURE": CONGESTION,
    "RECOVERY_ON_TIMER_EXPIRE": CONGESTION,
    "SWITCH_CONGESTION": CONGESTION,
    "NORMAL_CIRCUIT_CONGESTION": CONGESTION,
    "NETWORK_OUT_OF_ORDER": CONGESTION,
    "REQUESTED_CHAN_UNAVAIL": CONGESTION,
    "EXCHANGE_ROUTING_ERROR": CONGESTION,
    "GATEWAY_DOWN": CONGESTION,
    "MEDIA_TIMEOUT": CONGESTION,
}
#: when the legs disagree, the first of these found is the call's disposition
PRECEDENCE = (CANCEL, NOANSWER, BUSY, CONGESTION, CHANUNAVAIL)

#: headers naming the leg that dialled a leg, most specific first
_PARENTS = (
    "variable_other_loopback_leg_uuid",
    "variable_originating_leg_uuid",
    "Other-Leg-Unique-ID",
    "variable_originator",
    "variable_loopback_from_uuid",
    "variable_other_loopback_from_uuid",
    "variable_call_uuid",
    "Channel-Call-UUID",
)
#: FreeSWITCH's context for calls from unauthenticated peers (trunks) in its stock dialplan
_PUBLIC_CONTEXT = "public"
#: state kept for calls the tracker no longer follows (expired) is dropped every so often
_SWEEP_EVERY = 500
#: legs of calls no longer followed, remembered so that a reconnect does not start them again
_GONE_LIMIT = 10_000
#: ``show channels`` callstates of a channel that was answered
_ANSWERED = frozenset({"ACTIVE", "HELD", "UNHELD"})
#: how far a chain of legs (callee, loopback, callee...) is followed to its caller leg
_MAX_DEPTH = 16
_SOFIA_USER = re.compile(r"sofia/(?P<profile>[^/]+)/(?:sips?:)?(?P<user>[^@;:/]+)")


class Role(StrEnum):
    CALLER = "caller"
    CALLEE = "callee"
    LOOPBACK = "loopback"


@dataclass(slots=True)
class Leg:
    uuid: str
    #: the caller leg's uuid: the call this leg belongs to
    root: str
    role: Role
    #: the call id (the root, or ``root/tN`` after a transfer) the leg was dialled in
    segment: str
    party: Party
    parent: str | None = None


@dataclass(slots=True)
class Call:
    root: str
    caller: Party
    did: str | None
    #: the call id callhook sees now (``root``, then ``root/t1``... after transfers)
    segment: str
    #: every leg the call has had; ``live``: those that have not hung up
    legs: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)
    answered: bool = False
    transfers: int = 0
    #: Hangup-Causes heard in this segment, for its disposition should nobody answer
    causes: list[str] = field(default_factory=list)


def event_time(message: Message, now: datetime) -> datetime:
    """Event-Date-Timestamp (microseconds since the epoch) when present, else ``now``."""
    raw = message.get("Event-Date-Timestamp", "")
    if raw.isdigit() and int(raw) > 0:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(raw))
    return now


def disposition(causes: Sequence[str]) -> str | None:
    """The call's disposition from the causes heard; None lets callhook decide."""
    found = {CAUSES.get(cause.strip().upper()) for cause in causes if cause}
    return next((choice for choice in PRECEDENCE if choice in found), None)


def channel_user(channel_name: str) -> str | None:
    """``1001`` of ``sofia/internal/1001@host`` or ``sofia/internal/sip:1001@host:5060``;
    None for gateways, loopback and other endpoints."""
    found = _SOFIA_USER.match(channel_name)
    if found is None or found["profile"] == "gateway":
        return None
    return found["user"]


def row_headers(row: Message) -> dict[str, str]:
    """A row of ``show channels as json`` under the event headers the mapper reads. The
    ``initial_*`` columns are what the channel's CHANNEL_CREATE said (FreeSWITCH 1.10)."""
    columns = {
        "Unique-ID": ("uuid",),
        "Channel-Name": ("name",),
        "Call-Direction": ("direction",),
        "Caller-Caller-ID-Number": ("initial_cid_num", "cid_num"),
        "Caller-Caller-ID-Name": ("initial_cid_name", "cid_name"),
        "Caller-Destination-Number": ("initial_dest", "dest"),
        "Caller-Context": ("initial_context", "context"),
    }
    headers: dict[str, str] = {}
    for header, names in columns.items():
        value = next((row[n] for n in names if row.get(n)), "")
        if value:
            headers[header] = value
    return headers


def row_created(row: Message) -> datetime | None:
    """When the row's channel was created (``created_epoch``, in seconds), if it says."""
    raw = row.get("created_epoch", "").strip()
    if not raw.isdigit() or int(raw) <= 0:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=int(raw))


def row_answered(row: Message) -> bool:
    return row.get("callstate", "").strip().upper() in _ANSWERED


def is_loopback(message: Message) -> bool:
    return message.get("Channel-Name", "").startswith("loopback/") or bool(
        message.get("variable_loopback_leg")
    )


def is_gateway(message: Message) -> bool:
    return message.get("Channel-Name", "").startswith("sofia/gateway/") or bool(
        message.get("variable_sip_gateway_name") or message.get("variable_sip_gateway")
    )


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
        """After a (re)connect, given the rows of ``show channels`` (see the module doc): calls
        that ended meanwhile are closed, calls that began meanwhile are started, and calls
        answered meanwhile are answered."""
        rows = {row["uuid"]: row for row in channels if row.get("uuid")}
        for call in list(self._calls.values()):
            call.live &= rows.keys()
            if not call.live:
                self._forget(call)
        events = self.tracker.reconcile([c.segment for c in self._calls.values()], now)
        self._sweep()
        return events + self._catch_up(rows, now)

    # --- calls that began or were answered while the link was down --------------------------

    def _catch_up(self, rows: dict[str, Message], now: datetime) -> list[CallEvent]:
        unknown = {
            uuid: row_headers(row)
            for uuid, row in rows.items()
            if uuid not in self._legs and uuid not in self._gone
        }
        callers = {
            uuid
            for uuid, headers in unknown.items()
            if headers.get("Call-Direction") == "inbound" and not is_loopback(headers)
        }
        loopbacks: dict[str, list[str]] = {}
        for uuid, row in rows.items():
            if row.get("name", "").startswith("loopback/"):
                loopbacks.setdefault(row["name"], []).append(uuid)
        parents = {
            uuid: parent
            for uuid in unknown
            if uuid not in callers
            and (parent := self._row_parent(uuid, rows, loopbacks)) is not None
        }
        joining: dict[str, list[str]] = {root: [] for root in callers}
        for uuid in parents:
            root = self._row_root(uuid, parents, callers)
            if root is not None:
                joining.setdefault(root, []).append(uuid)
        events: list[CallEvent] = []
        for call in list(self._calls.values()):
            added = [
                self._join(call, uuid, unknown[uuid], parents[uuid])
                for uuid in joining.get(call.root, [])
            ]
            events += self._rings(call, added, now)
        for root in [uuid for uuid in rows if uuid in callers]:
            events += self._begin(root, unknown, rows, parents, joining[root], now)
        for uuid, row in rows.items():
            if row_answered(row):  # a callee leg answered while the link was down
                events += self._answered(uuid, row, now)
        return events

    def _row_parent(
        self, uuid: str, rows: Mapping[str, Message], loopbacks: Mapping[str, list[str]]
    ) -> str | None:
        """The channel that dialled a row's channel: its ``call_uuid``, else (a loopback -b
        leg) the -a leg of the same name, if there is exactly one."""
        row = rows[uuid]
        named = row.get("call_uuid", "")
        if named and named != uuid and (named in rows or named in self._legs):
            return named
        name = row.get("name", "")
        if not (name.startswith("loopback/") and name.endswith("-b")):
            return None
        partners = loopbacks.get(f"{name[:-2]}-a", [])
        if len(partners) > 1:  # the same loopback in two calls: the one created with it
            partners = [
                u for u in partners if rows[u].get("created_epoch") == row.get("created_epoch")
            ]
        return partners[0] if len(partners) == 1 else None

    def _row_root(self, uuid: str, parents: Mapping[str, str], callers: set[str]) -> str | None:
        """The call a row's channel belongs to: a followed call's root or a new caller leg."""
        for _ in range(_MAX_DEPTH):
            leg = self._legs.get(uuid)
            if leg is not None:
                return leg.root if leg.root in self._calls else None
            if uuid in callers:
                return uuid
            parent = parents.get(uuid)
            if parent is None:
                return None
            uuid = parent
        return None

    def _join(self, call: Call, uuid: str, headers: Message, parent: str) -> Leg:
        """A leg seen first in ``show channels`` joins the call its parent belongs to."""
        role = Role.LOOPBACK if is_loopback(headers) else Role.CALLEE
        party = self._callee(headers) if role is Role.CALLEE else self._dialled(headers)
        leg = self._legs[uuid] = Leg(uuid, call.root, role, call.segment, party, parent)
        call.legs.add(uuid)
        call.live.add(uuid)
        return leg

    def _rings(self, call: Call, legs: Sequence[Leg], now: datetime) -> list[CallEvent]:
        events: list[CallEvent] = []
        for leg in legs:
            if leg.role is Role.CALLEE and leg.party.extension:
                events += self.tracker.ring(call.segment, now, leg.party.extension)
        return events

    def _begin(
        self,
        root: str,
        unknown: Mapping[str, Message],
        rows: Mapping[str, Message],
        parents: Mapping[str, str],
        members: Sequence[str],
        now: datetime,
    ) -> list[CallEvent]:
        """A caller leg callhook does not follow: its call began while the link was down."""
        time = row_created(rows[root]) or now
        if now - time > self.tracker.max_age:
            return []  # the tracker would close it at once
        headers = unknown[root]
        caller = self._caller(headers)
        dialled = headers.get("Caller-Destination-Number") or None
        did = dialled if caller.extension is None else None
        call = Call(root, caller, did, root, legs={root}, live={root})
        self._calls[root] = call
        self._legs[root] = Leg(root, root, Role.CALLER, root, caller)
        legs = [self._join(call, uuid, unknown[uuid], parents[uuid]) for uuid in members]
        callee = self.numbering.party(dialled) if dialled else self._callee_of(legs, rows)
        events = self.tracker.start(root, time, caller, callee, did=did, dialled=dialled)
        return events + self._rings(call, legs, now)

    def _callee_of(self, legs: Sequence[Leg], rows: Mapping[str, Message]) -> Party:
        """Without the number dialled: the callee leg that answered, else the first that is
        an extension, else the first."""
        callees = [leg for leg in legs if leg.role is Role.CALLEE]
        pick = next((leg for leg in callees if row_answered(rows[leg.uuid])), None)
        pick = pick or next((leg for leg in callees if leg.party.extension), None)
        pick = pick or (callees[0] if callees else None)
        return pick.party if pick else self.numbering.party(None)

    # --- the steps ----------------------------------------------------------------------------

    def _created(self, uuid: str, message: Message, time: datetime) -> list[CallEvent]:
        if uuid in self._legs:
            return self._known_again(self._legs[uuid], message, time)
        inbound = message.get("Call-Direction") == "inbound"
        if inbound and not is_loopback(message):
            return self._start(uuid, message, time)
        parent = next(
            (self._legs[v] for h in _PARENTS if (v := message.get(h, "")) in self._legs), None
        )
        call = self._calls.get(parent.root) if parent else None
        if parent is None or call is None:
            return []  # dialled by no leg we follow: an API originate, or an unfollowed call
        role = Role.LOOPBACK if is_loopback(message) else Role.CALLEE
        party = self._callee(message) if role is Role.CALLEE else self._dialled(message)
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
        party = self._callee(message)
        if not party.extension:
            return []
        leg.party = party
        if leg.segment != call.segment:
            return []
        return self.tracker.ring(call.segment, time, party.extension)

    def _start(self, uuid: str, message: Message, time: datetime) -> list[CallEvent]:
        caller = self._caller(message)
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
        caller = self._party_of(parent, call)
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

    # --- who is who ---------------------------------------------------------------------------

    def _caller(self, message: Message) -> Party:
        number = message.get("Caller-Caller-ID-Number")
        name = message.get("Caller-Caller-ID-Name")
        user = message.get("variable_user_name")
        trusted = message.get("Caller-Context") != _PUBLIC_CONTEXT and not is_gateway(message)
        if not user and trusted:
            user = message.get("variable_sip_from_user") or channel_user(
                message.get("Channel-Name", "")
            )
        if user and self.numbering.extension(user):
            return self.numbering.party(user, number, name)
        outside = number or message.get("variable_sip_from_user")
        return self.numbering.party(None, outside, name)

    def _callee(self, message: Message) -> Party:
        """Who a callee leg rings: an extension, or an outside number."""
        dialled = message.get("Caller-Destination-Number")
        if not is_gateway(message):
            user = message.get("variable_dialed_user") or channel_user(
                message.get("Channel-Name", "")
            )
            extension = self.numbering.extension(user)
            if extension:
                return Party(extension)
        if not dialled and message.get("Channel-Name", "").startswith("sofia/gateway/"):
            dialled = message["Channel-Name"].split("/", 3)[-1].split("@", 1)[0]
        return self.numbering.party(None, dialled)

    def _dialled(self, message: Message) -> Party:
        """What a loopback leg was dialled for (a ring group, a queue): only used as the
        callee of a call transferred to it."""
        return self.numbering.party(message.get("Caller-Destination-Number") or None)

    def _party_of(self, leg: Leg, call: Call) -> Party:
        """Whom a leg stands for, through loopback legs: the caller, or a callee leg's party."""
        seen = 0
        while leg.role is Role.LOOPBACK and leg.parent in self._legs and seen < 16:
            leg, seen = self._legs[leg.parent], seen + 1
        return call.caller if leg.role is Role.CALLER else leg.party

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
