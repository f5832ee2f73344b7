"""What ``EslCalls`` does after the link (re)connects, given the rows of ``show channels as
json``. Pure: no I/O.

Legs FreeSWITCH no longer has were missed while the link was down; a followed call none of
whose legs is left has ended, and the tracker ends it (``reconstructed``). Live channels
callhook does not follow are grouped as the events would have grouped them: an ``inbound``
non-loopback channel is a caller leg; any other joins the leg its ``call_uuid`` names
(FreeSWITCH sets it to the originating leg's uuid when it dials a leg, and to the caller's on a
bridge), and a loopback ``-b`` leg joins its ``-a`` partner (same name but the last letter). A
leg that joins a followed call is registered in it: ``leg.ringing`` when it is an extension,
and the call is answered if it is. A caller leg nobody follows began its call while the link
was down (or before callhook started): the call is started from the rows, back-dated to the
caller leg's ``created_epoch``, with the caller from its channel name and caller id
(``initial_cid_num``, ``initial_context``) and the number dialled (``initial_dest``; also the
DID when the caller is not an extension) as for a CHANNEL_CREATE, then ``leg.ringing`` for its
callee legs that are extensions. Any followed or started call one of whose callee legs (not a
loopback) is answered (callstate ``ACTIVE``, ``HELD`` or ``UNHELD``) gets its
``call.answered``. These rings and answers are dated at the reconnect (when they happened is
not in the rows). The legs are registered, so their CHANNEL_HANGUP_COMPLETE ends the call as
usual; the event ids come from the caller leg's uuid, so a call stored before a restart is a
duplicate that ingest ignores. A call older than the maximum call age is left alone (the
tracker would close it at once), and so are the channels of a call callhook closed already (by
that age, say).

These functions read and update the legs and calls of the ``EslCalls`` they are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from callhook.domain.calls import CallEvent, Party
from callhook.sources.esl.legs import (
    Call,
    Leg,
    Role,
    callee_party,
    caller_party,
    dialled_party,
    is_loopback,
)
from callhook.sources.link import Message

if TYPE_CHECKING:
    from callhook.sources.esl.calls import EslCalls

#: ``show channels`` callstates of a channel that was answered
_ANSWERED = frozenset({"ACTIVE", "HELD", "UNHELD"})
#: how far a chain of legs (callee, loopback, callee...) is followed to its caller leg
_MAX_DEPTH = 16


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


def reconcile(calls: EslCalls, channels: Sequence[Message], now: datetime) -> list[CallEvent]:
    """After a (re)connect, given the rows of ``show channels`` (see the module doc): calls
    that ended meanwhile are closed, calls that began meanwhile are started, and calls
    answered meanwhile are answered."""
    rows = {row["uuid"]: row for row in channels if row.get("uuid")}
    for call in list(calls._calls.values()):
        call.live &= rows.keys()
        if not call.live:
            calls._forget(call)
    events = calls.tracker.reconcile([c.segment for c in calls._calls.values()], now)
    calls._sweep()
    return events + _catch_up(calls, rows, now)


def _catch_up(calls: EslCalls, rows: dict[str, Message], now: datetime) -> list[CallEvent]:
    """Calls that began, or were answered, while the link was down."""
    unknown = {
        uuid: row_headers(row)
        for uuid, row in rows.items()
        if uuid not in calls._legs and uuid not in calls._gone
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
        if uuid not in callers and (parent := _row_parent(calls, uuid, rows, loopbacks)) is not None
    }
    joining: dict[str, list[str]] = {root: [] for root in callers}
    for uuid in parents:
        root = _row_root(calls, uuid, parents, callers)
        if root is not None:
            joining.setdefault(root, []).append(uuid)
    events: list[CallEvent] = []
    for call in list(calls._calls.values()):
        added = [
            _join(calls, call, uuid, unknown[uuid], parents[uuid])
            for uuid in joining.get(call.root, [])
        ]
        events += _rings(calls, call, added, now)
    for root in [uuid for uuid in rows if uuid in callers]:
        events += _begin(calls, root, unknown, rows, parents, joining[root], now)
    for uuid, row in rows.items():
        if row_answered(row):  # a callee leg answered while the link was down
            events += calls._answered(uuid, row, now)
    return events


def _row_parent(
    calls: EslCalls, uuid: str, rows: Mapping[str, Message], loopbacks: Mapping[str, list[str]]
) -> str | None:
    """The channel that dialled a row's channel: its ``call_uuid``, else (a loopback -b
    leg) the -a leg of the same name, if there is exactly one."""
    row = rows[uuid]
    named = row.get("call_uuid", "")
    if named and named != uuid and (named in rows or named in calls._legs):
        return named
    name = row.get("name", "")
    if not (name.startswith("loopback/") and name.endswith("-b")):
        return None
    partners = loopbacks.get(f"{name[:-2]}-a", [])
    if len(partners) > 1:  # the same loopback in two calls: the one created with it
        partners = [u for u in partners if rows[u].get("created_epoch") == row.get("created_epoch")]
    return partners[0] if len(partners) == 1 else None


def _row_root(
    calls: EslCalls, uuid: str, parents: Mapping[str, str], callers: set[str]
) -> str | None:
    """The call a row's channel belongs to: a followed call's root or a new caller leg."""
    for _ in range(_MAX_DEPTH):
        leg = calls._legs.get(uuid)
        if leg is not None:
            return leg.root if leg.root in calls._calls else None
        if uuid in callers:
            return uuid
        parent = parents.get(uuid)
        if parent is None:
            return None
        uuid = parent
    return None


def _join(calls: EslCalls, call: Call, uuid: str, headers: Message, parent: str) -> Leg:
    """A leg seen first in ``show channels`` joins the call its parent belongs to."""
    role = Role.LOOPBACK if is_loopback(headers) else Role.CALLEE
    party = (
        callee_party(calls.numbering, headers)
        if role is Role.CALLEE
        else dialled_party(calls.numbering, headers)
    )
    leg = calls._legs[uuid] = Leg(uuid, call.root, role, call.segment, party, parent)
    call.legs.add(uuid)
    call.live.add(uuid)
    return leg


def _rings(calls: EslCalls, call: Call, legs: Sequence[Leg], now: datetime) -> list[CallEvent]:
    events: list[CallEvent] = []
    for leg in legs:
        if leg.role is Role.CALLEE and leg.party.extension:
            events += calls.tracker.ring(call.segment, now, leg.party.extension)
    return events


def _begin(
    calls: EslCalls,
    root: str,
    unknown: Mapping[str, Message],
    rows: Mapping[str, Message],
    parents: Mapping[str, str],
    members: Sequence[str],
    now: datetime,
) -> list[CallEvent]:
    """A caller leg callhook does not follow: its call began while the link was down."""
    time = row_created(rows[root]) or now
    if now - time > calls.tracker.max_age:
        return []  # the tracker would close it at once
    headers = unknown[root]
    caller = caller_party(calls.numbering, headers)
    dialled = headers.get("Caller-Destination-Number") or None
    did = dialled if caller.extension is None else None
    call = Call(root, caller, did, root, legs={root}, live={root})
    calls._calls[root] = call
    calls._legs[root] = Leg(root, root, Role.CALLER, root, caller)
    legs = [_join(calls, call, uuid, unknown[uuid], parents[uuid]) for uuid in members]
    callee = calls.numbering.party(dialled) if dialled else _callee_of(calls, legs, rows)
    events = calls.tracker.start(root, time, caller, callee, did=did, dialled=dialled)
    return events + _rings(calls, call, legs, now)


def _callee_of(calls: EslCalls, legs: Sequence[Leg], rows: Mapping[str, Message]) -> Party:
    """Without the number dialled: the callee leg that answered, else the first that is
    an extension, else the first."""
    callees = [leg for leg in legs if leg.role is Role.CALLEE]
    pick = next((leg for leg in callees if row_answered(rows[leg.uuid])), None)
    pick = pick or next((leg for leg in callees if leg.party.extension), None)
    pick = pick or (callees[0] if callees else None)
    return pick.party if pick else calls.numbering.party(None)
