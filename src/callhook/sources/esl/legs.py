"""Who is who among FreeSWITCH channels: the legs of a call, the call they belong to, and the
party each stands for. Pure: no I/O.

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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from callhook.domain.calls import Party
from callhook.sources.link import Message
from callhook.sources.tracking import Numbering

#: headers naming the leg that dialled a leg, most specific first
PARENTS = (
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
PUBLIC_CONTEXT = "public"
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


def channel_user(channel_name: str) -> str | None:
    """``1001`` of ``sofia/internal/1001@host`` or ``sofia/internal/sip:1001@host:5060``;
    None for gateways, loopback and other endpoints."""
    found = _SOFIA_USER.match(channel_name)
    if found is None or found["profile"] == "gateway":
        return None
    return found["user"]


def is_loopback(message: Message) -> bool:
    return message.get("Channel-Name", "").startswith("loopback/") or bool(
        message.get("variable_loopback_leg")
    )


def is_gateway(message: Message) -> bool:
    return message.get("Channel-Name", "").startswith("sofia/gateway/") or bool(
        message.get("variable_sip_gateway_name") or message.get("variable_sip_gateway")
    )


def dialled_by(legs: Mapping[str, Leg], message: Message) -> Leg | None:
    """The followed leg that dialled a new leg: the first its ``PARENTS`` headers name."""
    return next((legs[v] for h in PARENTS if (v := message.get(h, "")) in legs), None)


def caller_party(numbering: Numbering, message: Message) -> Party:
    """Who a caller leg stands for: an extension, or an outside number."""
    number = message.get("Caller-Caller-ID-Number")
    name = message.get("Caller-Caller-ID-Name")
    user = message.get("variable_user_name")
    trusted = message.get("Caller-Context") != PUBLIC_CONTEXT and not is_gateway(message)
    if not user and trusted:
        user = message.get("variable_sip_from_user") or channel_user(
            message.get("Channel-Name", "")
        )
    if user and numbering.extension(user):
        return numbering.party(user, number, name)
    outside = number or message.get("variable_sip_from_user")
    return numbering.party(None, outside, name)


def callee_party(numbering: Numbering, message: Message) -> Party:
    """Who a callee leg rings: an extension, or an outside number."""
    dialled = message.get("Caller-Destination-Number")
    if not is_gateway(message):
        user = message.get("variable_dialed_user") or channel_user(message.get("Channel-Name", ""))
        extension = numbering.extension(user)
        if extension:
            return Party(extension)
    if not dialled and message.get("Channel-Name", "").startswith("sofia/gateway/"):
        dialled = message["Channel-Name"].split("/", 3)[-1].split("@", 1)[0]
    return numbering.party(None, dialled)


def dialled_party(numbering: Numbering, message: Message) -> Party:
    """What a loopback leg was dialled for (a ring group, a queue): only used as the
    callee of a call transferred to it."""
    return numbering.party(message.get("Caller-Destination-Number") or None)


def party_of(legs: dict[str, Leg], leg: Leg, call: Call) -> Party:
    """Whom a leg stands for, through loopback legs: the caller, or a callee leg's party."""
    seen = 0
    while leg.role is Role.LOOPBACK and leg.parent in legs and seen < 16:
        leg, seen = legs[leg.parent], seen + 1
    return call.caller if leg.role is Role.CALLER else leg.party
