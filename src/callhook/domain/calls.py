"""Call events from the PBX and the trigger mapping (contract section 7). Pure: no I/O.

A call is a sequence of events: ``call.started`` (caller, callee, DID, number dialled),
``leg.ringing`` (an extension rings: queues, ring groups), ``call.answered`` (by an extension,
or by an external callee) and ``call.ended`` (with a disposition). ``apply`` folds one event into
the call's state and returns the per-extension triggers it fires, in the order they happen:

- Dial-Out (1) for the calling extension and Dial-In (0) for the called extension when the call
  starts; Dial-In for each extension that rings afterwards;
- Answer incoming (3) for the answering extension and the called extension (a queue answered by
  an agent), Answer outgoing (4) for the calling extension;
- Hangup (2) for every extension that took part, each with CallStatus from its own point of view.

Events that arrive before the call's start are held and applied right after it; events of a
call that has ended change nothing (they are recorded, not acted on).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from callhook.domain.accounts import format_extended, parse_extension
from callhook.errors import CallEventInvalid as EventInvalid
from callhook.errors import ExtensionInvalid


class Kind(StrEnum):
    STARTED = "call.started"
    RINGING = "leg.ringing"
    ANSWERED = "call.answered"
    ENDED = "call.ended"


class Trigger(IntEnum):
    """PhoneCallEvent types (contract section 2)."""

    DIAL_IN = 0
    DIAL_OUT = 1
    HANGUP = 2
    ANSWER_IN = 3
    ANSWER_OUT = 4


DISPOSITIONS = ("ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "UNKNOWN")


@dataclass(frozen=True, slots=True)
class Party:
    """One end of a call: an extension (extended form ``0003*210``) or an external number."""

    extension: str | None = None
    number: str | None = None
    name: str | None = None

    def to_json(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (
                ("extension", self.extension),
                ("number", self.number),
                ("name", self.name),
            )
            if v
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Party | None:
        if not data:
            return None
        return cls(data.get("extension"), data.get("number"), data.get("name"))


@dataclass(frozen=True, slots=True)
class CallEvent:
    event_id: str
    call_id: str
    kind: Kind
    time: datetime
    caller: Party | None = None
    callee: Party | None = None
    did: str | None = None
    dialled: str | None = None
    api_id: str | None = None
    extension: str | None = None
    disposition: str | None = None
    #: why a source made up this ``call.ended`` instead of seeing the PBX say so (the call's
    #: channels were gone when the source reconnected; the call outlived the maximum call age)
    reconstructed: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "event_id": self.event_id,
            "call_id": self.call_id,
            "type": self.kind.value,
            "time": self.time.isoformat(),
        }
        if self.caller:
            doc["caller"] = self.caller.to_json()
        if self.callee:
            doc["callee"] = self.callee.to_json()
        for name in ("did", "dialled", "api_id", "extension", "disposition", "reconstructed"):
            if getattr(self, name):
                doc[name] = getattr(self, name)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CallEvent:
        return cls(
            event_id=doc["event_id"],
            call_id=doc["call_id"],
            kind=Kind(doc["type"]),
            time=datetime.fromisoformat(doc["time"]),
            caller=Party.from_json(doc.get("caller")),
            callee=Party.from_json(doc.get("callee")),
            did=doc.get("did"),
            dialled=doc.get("dialled"),
            api_id=doc.get("api_id"),
            extension=doc.get("extension"),
            disposition=doc.get("disposition"),
            reconstructed=doc.get("reconstructed"),
        )


@dataclass(frozen=True, slots=True)
class Fired:
    """One trigger for one extension, with the VoipNow parameters of its request."""

    extension: str
    trigger: Trigger
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class CallState:
    started: CallEvent | None = None
    #: events that arrived before the start, applied once it arrives
    held: tuple[CallEvent, ...] = ()
    #: extensions that got a Dial-In, in order
    ringing: tuple[str, ...] = ()
    answered: bool = False
    answered_by: str | None = None
    ended: bool = False
    disposition: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started.to_json() if self.started else None,
            "held": [e.to_json() for e in self.held],
            "ringing": list(self.ringing),
            "answered": self.answered,
            "answered_by": self.answered_by,
            "ended": self.ended,
            "disposition": self.disposition,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CallState:
        started = doc.get("started")
        return cls(
            started=CallEvent.from_json(started) if started else None,
            held=tuple(CallEvent.from_json(e) for e in doc.get("held", ())),
            ringing=tuple(doc.get("ringing", ())),
            answered=bool(doc.get("answered")),
            answered_by=doc.get("answered_by"),
            ended=bool(doc.get("ended")),
            disposition=doc.get("disposition"),
        )


@dataclass(frozen=True, slots=True)
class Applied:
    state: CallState
    fired: list[Fired] = field(default_factory=list)
    #: why the event changed nothing, if it did not
    ignored: str | None = None


# --- the mapping ------------------------------------------------------------------------------


def _params(state: CallState, ext: str, flow: str, status: str) -> dict[str, str]:
    start = state.started
    assert start is not None
    caller = start.caller or Party()
    callee = start.callee or Party()
    called_ext = ext if flow == "IN" else callee.extension
    dialled = (
        start.dialled
        or start.did
        or callee.number
        or (callee.extension and _short(callee.extension))
    )
    values = {
        "CallID": start.call_id,
        "CallerIDNum": caller.number or (caller.extension and _short(caller.extension)),
        "CallerIDName": caller.name,
        "CalledDID": start.did,
        "CalledExtension": called_ext,
        "CallerExtension": caller.extension,
        "CalledNumber": dialled,
        "CallStatus": status,
        "CallFlow": flow,
        "CallAPIID": start.api_id,
    }
    return {k: v for k, v in values.items() if v}


def _ends(state: CallState) -> tuple[str | None, str | None]:
    """The calling and the called extension, if they are extensions."""
    start = state.started
    if start is None:
        return None, None
    return (start.caller or Party()).extension, (start.callee or Party()).extension


def _short(extended: str) -> str:
    return extended.split("*", 1)[-1]


def _fire(state: CallState, ext: str, trigger: Trigger, flow: str, status: str) -> Fired:
    return Fired(ext, trigger, _params(state, ext, flow, status))


def _start(state: CallState, event: CallEvent) -> Applied:
    state = replace(state, started=event)
    fired: list[Fired] = []
    caller, callee = event.caller or Party(), event.callee or Party()
    if caller.extension:
        fired.append(_fire(state, caller.extension, Trigger.DIAL_OUT, "OUT", "CALLING"))
    if callee.extension and callee.extension != caller.extension:
        fired.append(_fire(state, callee.extension, Trigger.DIAL_IN, "IN", "CALLING"))
        state = replace(state, ringing=(callee.extension,))
    return Applied(state, fired)


def _ring(state: CallState, event: CallEvent) -> Applied:
    ext = event.extension
    if not ext or ext in state.ringing:
        return Applied(state, ignored=f"{ext or 'no extension'} already rang for this call")
    if state.answered:
        return Applied(state, ignored="the call was already answered")
    state = replace(state, ringing=(*state.ringing, ext))
    return Applied(state, [_fire(state, ext, Trigger.DIAL_IN, "IN", "CALLING")])


def _answer(state: CallState, event: CallEvent) -> Applied:
    if state.answered:
        return Applied(state, ignored="the call was already answered")
    ext = event.extension
    ringing = state.ringing
    if ext and ext not in ringing:
        ringing = (*ringing, ext)
    state = replace(state, answered=True, answered_by=ext, ringing=ringing)
    fired: list[Fired] = []
    caller, callee = _ends(state)
    if ext:
        fired.append(_fire(state, ext, Trigger.ANSWER_IN, "IN", "ANSWER"))
    if callee and callee != ext:
        # a queue or ring group: its call was answered by one of its agents
        fired.append(_fire(state, callee, Trigger.ANSWER_IN, "IN", "ANSWER"))
    if caller:
        fired.append(_fire(state, caller, Trigger.ANSWER_OUT, "OUT", "ANSWER"))
    return Applied(state, fired)


def _end(state: CallState, event: CallEvent) -> Applied:
    disposition = event.disposition or ("ANSWER" if state.answered else "UNKNOWN")
    state = replace(state, ended=True, disposition=disposition)
    fired: list[Fired] = []
    caller, callee = _ends(state)
    if caller:
        fired.append(_fire(state, caller, Trigger.HANGUP, "OUT", disposition))
    for ext in state.ringing:
        if ext == caller:
            continue
        # an agent that rang while another answered saw the call cancelled
        others_answered = state.answered and ext not in (state.answered_by, callee)
        status = "CANCEL" if others_answered and state.answered_by else disposition
        fired.append(_fire(state, ext, Trigger.HANGUP, "IN", status))
    return Applied(state, fired)


_STEPS = {Kind.STARTED: _start, Kind.RINGING: _ring, Kind.ANSWERED: _answer, Kind.ENDED: _end}


def apply(state: CallState, event: CallEvent) -> Applied:
    """Fold one event into the call; returns the new state and the triggers it fires."""
    if state.ended:
        return Applied(state, ignored="the call has already ended")
    if event.kind is Kind.STARTED:
        if state.started is not None:
            return Applied(state, ignored="the call has already started")
        first = _start(state, event)
        fired, current = list(first.fired), first.state
        for waiting in sorted(current.held, key=_order):
            step = apply(replace(current, held=()), waiting)
            current, fired = step.state, fired + step.fired
        return Applied(replace(current, held=()), fired)
    if state.started is None:
        held = (*state.held, event)
        return Applied(replace(state, held=held), ignored="held until the call's start arrives")
    return _STEPS[event.kind](state, event)


def fire_all(events: Iterable[CallEvent]) -> list[tuple[str, Fired]]:
    """Events of any number of calls, each folded into its own call from scratch: every
    trigger fired, with its call id, in order (what ingest does, without storage)."""
    states: dict[str, CallState] = {}
    fired: list[tuple[str, Fired]] = []
    for event in events:
        step = apply(states.get(event.call_id, CallState()), event)
        states[event.call_id] = step.state
        fired += [(event.call_id, f) for f in step.fired]
    return fired


def _order(event: CallEvent) -> tuple[int, datetime]:
    # the call's own order when held events are replayed: ringing, answered, then ended
    return (list(Kind).index(event.kind), event.time)


# --- validation of the ingest documents --------------------------------------------------------


_TEXT_LIMIT = 200
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})?")
_EVENT_FIELDS = {
    Kind.STARTED: {"caller", "callee", "did", "dialled", "api_id"},
    Kind.RINGING: {"extension"},
    Kind.ANSWERED: {"extension"},
    Kind.ENDED: {"disposition", "reconstructed"},
}
_COMMON = {"event_id", "call_id", "type", "time"}


def _text(doc: Mapping[str, Any], name: str, where: str, *, required: bool = False) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise EventInvalid(f"{where}{name}: required")
        return None
    if not isinstance(value, str):
        raise EventInvalid(f"{where}{name}: must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise EventInvalid(f"{where}{name}: must not be empty")
    if len(value) > _TEXT_LIMIT:
        raise EventInvalid(f"{where}{name}: longer than {_TEXT_LIMIT} characters")
    if any(ord(c) < 32 for c in value):
        raise EventInvalid(f"{where}{name}: contains control characters")
    return value


def _required(doc: Mapping[str, Any], name: str, where: str) -> str:
    value = _text(doc, name, where, required=True)
    assert value is not None
    return value


def _extension(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    try:
        ref = parse_extension(value)
    except ExtensionInvalid as exc:
        raise EventInvalid(f"{where}: {exc.message}") from None
    if ref.org_code is None:
        raise EventInvalid(
            f"{where}: {value!r} is a short number; use the extended form ORG*NUMBER, e.g. 0003*210"
        )
    return format_extended(ref.org_code, ref.short)


def _party(doc: Mapping[str, Any], name: str, where: str) -> Party:
    value = doc.get(name)
    if not isinstance(value, Mapping):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise EventInvalid(f"{where}{name}: required object with 'extension' or 'number' ({got})")
    here = f"{where}{name}."
    unknown = sorted(set(value) - {"extension", "number", "name"})
    if unknown:
        raise EventInvalid(f"{here}{unknown[0]}: unknown field (known: extension, number, name)")
    ext = _extension(_text(value, "extension", here), f"{here}extension")
    number = _text(value, "number", here)
    if ext is None and number is None:
        raise EventInvalid(f"{where}{name}: give 'extension' or 'number'")
    return Party(ext, number, _text(value, "name", here))


def _time(doc: Mapping[str, Any], where: str) -> datetime:
    raw = _required(doc, "time", where)
    if not _RFC3339.fullmatch(raw):
        raise EventInvalid(
            f"{where}time: {raw!r} is not an RFC 3339 date-time (e.g. 2026-11-27T18:16:12Z)"
        )
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise EventInvalid(
            f"{where}time: {raw!r} is not an RFC 3339 date-time (e.g. 2026-11-27T18:16:12Z)"
        ) from None
    if value.tzinfo is None:
        raise EventInvalid(f"{where}time: {raw!r} has no UTC offset; add Z or +HH:MM")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise EventInvalid(f"{where}time: {raw!r} is out of range") from None


def parse_event(doc: Any, where: str = "") -> CallEvent:
    """One ingest document as a CallEvent, or EventInvalid naming the field."""
    if not isinstance(doc, Mapping):
        raise EventInvalid(f"{where.rstrip('.') or 'body'}: must be a JSON object")
    raw_kind = _required(doc, "type", where)
    try:
        kind = Kind(raw_kind)
    except ValueError:
        known = ", ".join(k.value for k in Kind)
        raise EventInvalid(f"{where}type: {raw_kind!r} is not one of {known}") from None
    unknown = sorted(set(doc) - _COMMON - _EVENT_FIELDS[kind])
    if unknown:
        raise EventInvalid(f"{where}{unknown[0]}: not a field of a {kind.value} event")
    # the fields in the order they are checked (an error names the first bad one); the event
    # is built once (each dataclasses.replace built it anew)
    event_id = _required(doc, "event_id", where)
    call_id = _required(doc, "call_id", where)
    time = _time(doc, where)
    if kind is Kind.STARTED:
        return CallEvent(
            event_id,
            call_id,
            kind,
            time,
            caller=_party(doc, "caller", where),
            callee=_party(doc, "callee", where),
            did=_text(doc, "did", where),
            dialled=_text(doc, "dialled", where),
            api_id=_text(doc, "api_id", where),
        )
    if kind is Kind.ENDED:
        reconstructed = _text(doc, "reconstructed", where)
        disposition = _text(doc, "disposition", where)
        if disposition is not None:
            if disposition.upper() not in DISPOSITIONS:
                raise EventInvalid(
                    f"{where}disposition: {disposition!r} is not one of {', '.join(DISPOSITIONS)}"
                )
            disposition = disposition.upper()
        # no disposition: decided by the call (ANSWER if it was answered, else UNKNOWN)
        return CallEvent(
            event_id,
            call_id,
            kind,
            time,
            disposition=disposition,
            reconstructed=reconstructed,
        )
    ext = _extension(_text(doc, "extension", where), f"{where}extension")
    if kind is Kind.RINGING and ext is None:
        raise EventInvalid(f"{where}extension: required (the extension that rings)")
    return CallEvent(event_id, call_id, kind, time, extension=ext)


MAX_BATCH = 1000


def parse_batch(body: Any) -> list[CallEvent]:
    """One event object or an array of them."""
    if isinstance(body, list):
        if not body:
            raise EventInvalid("body: the array is empty; send at least one event")
        if len(body) > MAX_BATCH:
            raise EventInvalid(f"body: {len(body)} events; send at most {MAX_BATCH} per request")
        return [parse_event(doc, f"[{i}].") for i, doc in enumerate(body)]
    return [parse_event(body)]
