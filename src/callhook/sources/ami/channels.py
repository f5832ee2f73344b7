"""What an AMI event says about a channel: its endpoint, its snapshot fields, the event's time.
Pure: no I/O.

Asterisk names a channel ``TECH/RESOURCE-SEQ``: ``PJSIP/210-0000002a`` (chan_pjsip),
``SIP/210-00000012`` (chan_sip), ``IAX2/210-4213``. The resource is the *endpoint* (the
``[210]`` section of pjsip.conf or sip.conf) and callhook takes the extension from it, never
from CallerIDNum, which the dialplan may rewrite. ``Local/210@from-queue-0000001f;1`` and
``;2`` are the two halves of a Local channel and other pseudo channels (ConfBridge announcers,
snoops, recorders) are no endpoint at all: they are never extensions, never callees; the mapper
follows their dials to a real endpoint.

Channel events carry a *snapshot* of the channel, once per channel they name, each with a
prefix: none for the channel itself, ``Dest`` for the dialled one in DialBegin and DialEnd,
``Transferer``/``Transferee`` in transfers. ``Snapshot.read`` takes one of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: channel technologies that are no endpoint (never an extension, never a trunk)
PSEUDO_TECHS = frozenset(
    {
        "local",
        "announcer",
        "cbann",
        "cbrec",
        "recorder",
        "bridgemedia",
        "snoop",
        "multicastrtp",
        "unicastrtp",
        "message",
        "surrogate",
    }
)
#: the ``-0000002a`` sequence Asterisk appends to a channel's endpoint
_SEQUENCE = re.compile(r"-[0-9a-fA-F]{1,16}$")
#: what a DID, a dialled number or an extension looks like (not ``s``, ``h``, ``i``...)
_NUMBER = re.compile(r"\+?[0-9*#]{1,32}")
_UNIQUEID = re.compile(r"(\d+)\.(\d+)$")
_DURATION = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})")


def endpoint_of(channel: str | None) -> str | None:
    """``210`` for ``PJSIP/210-0000002a`` or ``SIP/210-00000012``; ``telco`` for
    ``PJSIP/telco-00000031``; None for Local and other pseudo channels."""
    if not channel or "/" not in channel:
        return None
    tech, resource = channel.split("/", 1)
    if tech.lower() in PSEUDO_TECHS:
        return None
    resource = resource.split("<", 1)[0]  # Asterisk <= 11: <ZOMBIE>, <MASQ>
    resource = _SEQUENCE.sub("", resource)
    return resource or None


def number_like(value: str | None) -> str | None:
    """The value when it looks like a phone number or extension, else None (``s``, ``h``)."""
    if value and _NUMBER.fullmatch(value.strip()):
        return value.strip()
    return None


def dialled_number(dial_string: str | None, endpoint: str | None) -> str | None:
    """The number a dial string sends to its endpoint: ``+15551234567`` for
    ``+15551234567@telco`` (chan_pjsip), ``telco/+15551234567`` (chan_sip) or
    ``telco/sip:+15551234567@203.0.113.5`` (chan_pjsip with a URI); None when the dial
    string names only the endpoint."""
    if not dial_string:
        return None
    text = dial_string.strip()
    if "/" in text:
        text = text.split("/", 1)[1]
    for scheme in ("sips:", "sip:", "tel:"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    text = text.split("@", 1)[0].split(";", 1)[0].strip()
    if not text or text == endpoint:
        return None
    return text


def uniqueid_order(uniqueid: str) -> tuple[int, int, str]:
    """Uniqueids are ``[system-]EPOCH.SEQ``: this orders them by creation, as Asterisk does
    when it picks the oldest Linkedid for channels it bridges."""
    found = _UNIQUEID.search(uniqueid)
    if not found:
        return (2**62, 0, uniqueid)
    return (int(found[1]), int(found[2]), uniqueid)


def event_time(message: Mapping[str, str], now: datetime) -> datetime:
    """The event's ``Timestamp`` (manager.conf ``timestampevents=yes``: epoch seconds with
    microseconds), else ``now``: when callhook received it."""
    raw = message.get("Timestamp")
    if raw:
        try:
            return datetime.fromtimestamp(float(raw), UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return now


def channel_age(message: Mapping[str, str]) -> timedelta | None:
    """A CoreShowChannel's ``Duration`` (``HH:MM:SS``) as a timedelta."""
    found = _DURATION.fullmatch((message.get("Duration") or "").strip())
    if not found:
        return None
    hours, minutes, seconds = (int(part) for part in found.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One channel as an event shows it."""

    uniqueid: str
    #: None when the event does not say (Asterisk 12 leaves it out of some events)
    linkedid: str | None
    channel: str
    number: str | None
    name: str | None
    exten: str | None

    @classmethod
    def read(cls, message: Mapping[str, str], prefix: str = "") -> Snapshot | None:
        uniqueid = message.get(f"{prefix}Uniqueid")
        channel = message.get(f"{prefix}Channel")
        if not uniqueid or not channel:
            return None
        return cls(
            uniqueid=uniqueid,
            linkedid=message.get(f"{prefix}Linkedid") or None,
            channel=channel,
            number=message.get(f"{prefix}CallerIDNum") or None,
            name=message.get(f"{prefix}CallerIDName") or None,
            exten=message.get(f"{prefix}Exten") or None,
        )
