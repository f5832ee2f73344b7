"""What a PBX connector knows about the calls it follows, as callhook call events. Pure: no I/O.

The AMI and ESL mappers (``sources/ami/calls.py``, ``sources/esl/calls.py``) read their PBX's
events and tell a ``CallTracker`` what happened to a call: it started, an extension rang, it was
answered, it ended. The tracker makes each step a ``CallEvent`` once (event ids are derived from
the PBX's call id and the step, so an event made twice, after a restart say, is a duplicate that
ingest ignores), and it closes calls the connector lost sight of:

- ``reconcile``: after a reconnect, the PBX's live calls are compared with the tracked ones; a
  tracked call the PBX no longer has ended while the link was down;
- ``expire``: a call older than the maximum call age is closed (a lost BYE, a stuck channel).

Both close a call with a ``call.ended`` whose ``reconstructed`` says why (shown in the delivery
log of every delivery it causes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from callhook.domain.calls import CallEvent, Kind, Party

#: an endpoint of 1 to 7 digits is an extension; anything else (a trunk, a DID of 8 or more
#: digits) is an outside party
DEFAULT_EXTENSION_PATTERN = r"\d{1,7}"
DEFAULT_MAX_CALL_AGE = timedelta(hours=4)

GONE_AFTER_RECONNECT = "the PBX no longer had the call when the source reconnected"
TOO_OLD = "the call outlived the maximum call age of {age}"

_TEXT_LIMIT = 200
_PHONE_NUMBER = re.compile(r"\+?[0-9*#]+")


def _clip(value: str | None) -> str | None:
    """Values from the PBX fit the ingest limits (200 characters, no control characters)."""
    if value is None:
        return None
    value = "".join(c for c in value if ord(c) >= 32).strip()
    return value[:_TEXT_LIMIT] or None


@dataclass(frozen=True, slots=True)
class Numbering:
    """Which PBX endpoints are callhook extensions, and in which organization.

    A PBX knows its extensions by their short number (``PJSIP/210-0000002a``); callhook by the
    extended form ``ORG*NUMBER``. An endpoint whose name matches ``pattern`` is the extension
    ``ORG*name`` of organization ``org``; any other endpoint (a trunk) is not an extension.
    """

    org: int
    pattern: str = DEFAULT_EXTENSION_PATTERN

    def __post_init__(self) -> None:
        if not 0 <= self.org <= 999_999_999:
            raise ValueError(f"organization code {self.org} must be 0 to 999999999")
        re.compile(self.pattern)

    def extension(self, endpoint: str | None) -> str | None:
        """``0003*210`` for endpoint ``210`` (when it matches the pattern), else None."""
        if not endpoint or not re.fullmatch(self.pattern, endpoint):
            return None
        if not endpoint.isdigit() or len(endpoint) > 12:
            return None
        return f"{self.org:04d}*{endpoint}"

    def party(
        self, endpoint: str | None, number: str | None = None, name: str | None = None
    ) -> Party:
        """A call's end: the extension when the endpoint is one, with its number and name."""
        ext = self.extension(endpoint)
        number = _clip(number)
        if number in ("", "<unknown>", "unknown", "anonymous"):
            number = None
        if ext is None and number is None:
            # the endpoint when it is a number (a dialled outside number); else an outside
            # caller who withheld theirs: the trunk's name is not their number
            dialled = _clip(endpoint)
            number = dialled if dialled and _PHONE_NUMBER.fullmatch(dialled) else "anonymous"
        return Party(ext, number, _clip(name) if name not in ("<unknown>", "") else None)


@dataclass(slots=True)
class TrackedCall:
    call_id: str
    first_seen: datetime
    started: bool = False
    answered: bool = False
    ended: bool = False
    #: extensions that got a leg.ringing (or were the callee of call.started)
    rang: set[str] = field(default_factory=set)


@dataclass(slots=True)
class CallTracker:
    """The calls a connector follows; each method returns the call events to send, in order."""

    max_age: timedelta = DEFAULT_MAX_CALL_AGE
    calls: dict[str, TrackedCall] = field(default_factory=dict)

    @property
    def tracked(self) -> int:
        """Calls started and not yet ended."""
        return len(self.calls)

    def follows(self, call_id: str) -> bool:
        return call_id in self.calls

    def is_answered(self, call_id: str) -> bool:
        call = self.calls.get(call_id)
        return bool(call and call.answered)

    def start(
        self,
        call_id: str,
        time: datetime,
        caller: Party,
        callee: Party,
        *,
        did: str | None = None,
        dialled: str | None = None,
    ) -> list[CallEvent]:
        """The call begins (once per call id; later calls of ``start`` change nothing)."""
        call = self.calls.get(call_id)
        if call is not None and call.started:
            return []
        call = self.calls[call_id] = TrackedCall(call_id, time, started=True)
        if callee.extension:
            call.rang.add(callee.extension)
        return [
            CallEvent(
                _event_id(call_id, "started"),
                call_id,
                Kind.STARTED,
                time,
                caller=caller,
                callee=callee,
                did=_clip(did),
                dialled=_clip(dialled),
            )
        ]

    def ring(self, call_id: str, time: datetime, extension: str) -> list[CallEvent]:
        """An extension rings for the call (a queue agent, a ring group member, a transfer
        target); nothing when the call is not followed, answered already, or it rang before."""
        call = self.calls.get(call_id)
        if call is None or call.answered or extension in call.rang:
            return []
        call.rang.add(extension)
        event_id = _event_id(call_id, f"ring:{extension}")
        return [CallEvent(event_id, call_id, Kind.RINGING, time, extension=extension)]

    def answer(self, call_id: str, time: datetime, extension: str | None) -> list[CallEvent]:
        """The call is answered, by ``extension`` or (None) by an external callee; once."""
        call = self.calls.get(call_id)
        if call is None or call.answered:
            return []
        call.answered = True
        if extension:
            call.rang.add(extension)
        event_id = _event_id(call_id, "answered")
        return [CallEvent(event_id, call_id, Kind.ANSWERED, time, extension=extension)]

    def end(
        self,
        call_id: str,
        time: datetime,
        disposition: str | None = None,
        *,
        reconstructed: str | None = None,
    ) -> list[CallEvent]:
        """The call is over; it is forgotten. ``disposition`` None lets callhook decide
        (ANSWER when it was answered)."""
        call = self.calls.pop(call_id, None)
        if call is None:
            return []
        return [
            CallEvent(
                _event_id(call_id, "ended"),
                call_id,
                Kind.ENDED,
                time,
                disposition=None if call.answered else disposition,
                reconstructed=reconstructed,
            )
        ]

    def reconcile(self, live: Iterable[str], now: datetime) -> list[CallEvent]:
        """After a reconnect: end every followed call whose id is not among the PBX's live calls."""
        alive = set(live)
        events: list[CallEvent] = []
        for call_id in [c for c in self.calls if c not in alive]:
            events += self.end(call_id, now, "UNKNOWN", reconstructed=GONE_AFTER_RECONNECT)
        return events

    def expire(self, now: datetime) -> list[CallEvent]:
        """End every call followed for longer than the maximum call age."""
        limit = now - self.max_age
        reason = TOO_OLD.format(age=_duration(self.max_age))
        events: list[CallEvent] = []
        for call_id in [c.call_id for c in self.calls.values() if c.first_seen < limit]:
            events += self.end(call_id, now, "UNKNOWN", reconstructed=reason)
        return events


def _event_id(call_id: str, step: str) -> str:
    """Derived from the PBX's call id and the step: the same step made twice is a duplicate."""
    return f"{call_id}:{step}"[-_TEXT_LIMIT:]


def _duration(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
