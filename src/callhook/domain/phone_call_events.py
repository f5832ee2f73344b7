"""The PhoneCallEvent resource: validation (to UAPI error codes), rendering and ids."""

from __future__ import annotations

import os
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from callhook.errors import (
    CreateTypeInvalid,
    EventIdInvalid,
    MethodInvalid,
    NoteInvalid,
    RequestInvalid,
    ServiceError,
    StatusInvalid,
    TypeInvalid,
    UrlInvalid,
)


class EventType(IntEnum):
    DIAL_IN = 0
    DIAL_OUT = 1
    HANGUP = 2
    ANSWER_IN = 3
    ANSWER_OUT = 4


#: a type's number as the contract shows it, and each type by its number
_TYPE_TEXT = {t: str(t.value) for t in EventType}
TYPES_BY_NUMBER = tuple(EventType)
MAX_URL = 2048
MAX_NOTE = 1024
ID_LENGTH = 30
ID_ALPHABET = string.ascii_letters + string.digits
_ID_RE = re.compile(r"[A-Za-z0-9]{30}")
#: fields a client may send; "id", "modified" and "links" are read-only and ignored
WRITABLE = ("type", "method", "url", "status", "note")
READ_ONLY = ("id", "modified", "links")
FIELDS = ("type", "id", "method", "note", "url", "status", "modified", "links")

# RFC 3986: unreserved, reserved (gen-delims and sub-delims) and "%" for pct-encoding
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: the strings a small number may be given as (one ASCII digit)
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class PhoneCallEvent:
    id: str
    extension_id: int
    type: EventType
    method: int
    url: str
    status: int
    note: str
    modified: datetime


#: a random byte below 248 (4 x 62) maps to one character of the alphabet, uniformly; the
#: bytes from 248 up are dropped
_ID_TABLE = bytes.maketrans(
    bytes(range(248)), "".join(ID_ALPHABET[b % len(ID_ALPHABET)] for b in range(248)).encode()
)
_ID_DROPPED = bytes(range(248, 256))


class _ReadAhead:
    """The system's random bytes, read 4 KiB ahead: each read gives up the GIL, and on the
    event loop's thread, with another thread wanting it (the store's commit threads), each
    give-up is a wait to get it back (a Create paid ~5 % of its time in ``os.urandom(40)``).
    A forked child drops what its parent read ahead, so the two never share bytes; two threads
    never get the same bytes either (a lock around each take)."""

    SIZE = 4096

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bytes:
        with self._lock:
            end = self._at + n
            if end > len(self._buffer):
                self._buffer, self._at, end = os.urandom(max(self.SIZE, n)), 0, n
            taken = self._buffer[self._at : end]
            self._at = end
            return taken

    def drop(self) -> None:
        self._buffer, self._at = b"", 0
        self._lock = threading.Lock()  # a lock held by another thread at the fork stays held


_random = _ReadAhead()
os.register_at_fork(after_in_child=_random.drop)


#: an id's first characters: the time it was made, in milliseconds, in base 62 with the digits
#: in byte order (0-9, A-Z, a-z), so that ids sort as they were made (8 characters last until
#: the year 8900); the other 22 are random (131 bits)
TIME_CHARS = 8
_TIME_DIGITS = string.digits + string.ascii_uppercase + string.ascii_lowercase


@lru_cache(maxsize=4)
def _time_prefix(milliseconds: int) -> str:
    """``milliseconds`` as ``TIME_CHARS`` base-62 digits (kept: many ids share one)."""
    digits = []
    for _ in range(TIME_CHARS):
        milliseconds, digit = divmod(milliseconds, 62)
        digits.append(_TIME_DIGITS[digit])
    return "".join(reversed(digits))


def new_event_id(
    choice: Callable[[str], str] | None = None,
    randbytes: Callable[[int], bytes] = _random.take,
    clock: Callable[[], float] = time.time,
) -> str:
    """30 letters and digits: the time (``TIME_CHARS``), then random ones, from ``choice`` (one
    character at a time) if given, else from the system's random bytes (read ahead).

    Ids that grow with time are what the rules' primary key is built for: a new rule's id
    lands at the end of the index, where the last ones are, instead of on a page of its own
    somewhere in it (random ids made a group commit of 15 Creates on a 120,000-rule table
    write ~15 index pages: INSERT 152 us and COMMIT 430 us, against 27 and 156 us)."""
    prefix = _time_prefix(int(clock() * 1000))
    size = ID_LENGTH - TIME_CHARS
    if choice is not None:
        return prefix + "".join(choice(ID_ALPHABET) for _ in range(size))
    text = ""
    while len(text) < size:
        text += randbytes(size + 8).translate(_ID_TABLE, _ID_DROPPED).decode("ascii")
    return prefix + text[:size]


def check_event_id(text: str) -> str:
    if not _ID_RE.fullmatch(text):
        raise EventIdInvalid("The PhoneCallEvent id must be 30 letters and digits.")
    return text


def _small_int(value: Any, allowed: range, error: type[ServiceError], what: str) -> int:
    """Accept 0 or "0" (contract decision); refuse booleans, floats and padded strings."""
    if isinstance(value, bool):
        raise error(f"{what} must be one of {_spell(allowed)}, not a boolean.")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value in _DIGITS:
        number = int(value)
    else:
        raise error(
            f"{what} must be one of {_spell(allowed)} (a number or a string), got {value!r}."
        )
    if number not in allowed:
        raise error(f"{what} must be one of {_spell(allowed)}, got {number}.")
    return number


def _spell(allowed: range) -> str:
    items = [str(i) for i in allowed]
    return ", ".join(items[:-1]) + " or " + items[-1]


def parse_type(value: Any, error: type[ServiceError] = TypeInvalid) -> EventType:
    return TYPES_BY_NUMBER[_small_int(value, range(5), error, "type")]


def check_url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise UrlInvalid("url is required and must be a string.")
    return _check_url_text(str(value))


@lru_cache(maxsize=4096)
def _check_url_text(value: str) -> str:
    """``check_url`` of a non-empty string: a function of the text alone, so kept for the
    URLs seen last (clients create rules for the same few URLs; a refused one is judged again
    each time, as ``lru_cache`` keeps no exception)."""
    if len(value) > MAX_URL:
        raise UrlInvalid(f"url is {len(value)} characters long; the limit is {MAX_URL}.")
    if not _URL_CHARS.fullmatch(value) or _BAD_PCT.search(value):
        raise UrlInvalid(
            "url contains characters that must be percent-encoded (RFC 3986), e.g. a space as %20."
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise UrlInvalid("url is not a valid URL (check the host and port).") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlInvalid("url must start with http:// or https://.")
    if not parts.hostname:
        raise UrlInvalid("url must name a host, e.g. https://crm.example.com/hook.")
    if port == 0:
        raise UrlInvalid("url has port 0.")
    return value


def check_note(value: Any) -> str:
    if not isinstance(value, str):
        raise NoteInvalid("note must be a string.")
    if len(value) > MAX_NOTE:
        raise NoteInvalid(f"note is {len(value)} characters long; the limit is {MAX_NOTE}.")
    if "\x00" in value:
        raise NoteInvalid("note must not contain the NUL character (U+0000).")
    return value


def _check_unknown(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    if body.keys() <= _KNOWN.get(allowed, _NONE):
        return
    unknown = sorted(k for k in body if k not in allowed and k not in READ_ONLY)
    if unknown:
        raise RequestInvalid(
            f"Unknown field(s): {', '.join(unknown)}. Allowed: {', '.join(allowed)}."
        )


#: the fields a body may hold, by the tuple of writable ones (the usual case, checked at once)
_KNOWN: dict[tuple[str, ...], frozenset[str]] = {WRITABLE: frozenset(WRITABLE + READ_ONLY)}
_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class EventFields:
    type: EventType
    method: int
    url: str
    status: int
    note: str


def validate_create(body: Mapping[str, Any], path_type: str | None) -> EventFields:
    """Validate a Create body; reports the first failing of type, method, url, status, note."""
    if path_type is not None:
        etype = parse_type(path_type, CreateTypeInvalid)
        body_type = body.get("type")
        if body_type is not None and parse_type(body_type, CreateTypeInvalid) != etype:
            raise CreateTypeInvalid(
                f"The body's type ({body_type}) differs from the path's type ({etype.value})."
            )
    else:
        if "type" not in body or body["type"] is None:
            raise CreateTypeInvalid(
                "type is required: 0 Dial-In, 1 Dial-Out, 2 Hangup, 3 or 4 Answer."
            )
        etype = parse_type(body["type"], CreateTypeInvalid)
    method = _small_int(body.get("method", 0), range(2), MethodInvalid, "method")
    url = check_url(body.get("url"))
    status = _small_int(body.get("status", 1), range(2), StatusInvalid, "status")
    note = check_note(body.get("note", ""))
    _check_unknown(body, WRITABLE)
    return EventFields(type=etype, method=method, url=url, status=status, note=note)


def validate_update(body: Mapping[str, Any], path_type: EventType) -> dict[str, Any]:
    """Validate a partial Update body; returns only the fields to change."""
    changes: dict[str, Any] = {}
    if "type" in body and body["type"] is not None and parse_type(body["type"]) != path_type:
        raise TypeInvalid(
            f"type cannot be changed: the body's type ({body['type']}) differs from the path's "
            f"({path_type.value}). Delete the event and create one of the new type."
        )
    if "method" in body:
        changes["method"] = _small_int(body["method"], range(2), MethodInvalid, "method")
    if "url" in body:
        changes["url"] = check_url(body["url"])
    if "status" in body:
        changes["status"] = _small_int(body["status"], range(2), StatusInvalid, "status")
    if "note" in body:
        changes["note"] = check_note(body["note"])
    _check_unknown(body, WRITABLE)
    return changes


def apply_update(
    event: PhoneCallEvent, changes: Mapping[str, Any], now: datetime
) -> PhoneCallEvent:
    return replace(event, modified=now, **changes)


@lru_cache(maxsize=8192)
def format_modified(moment: datetime) -> str:
    """ISO 8601 with the offset, to the second (kept for the times seen last: a List shows
    the same rules' times again and again)."""
    return moment.isoformat(timespec="seconds")


def render(event: PhoneCallEvent, self_link: str) -> dict[str, Any]:
    """The resource as the contract shows it: every value a string."""
    return {
        "type": _TYPE_TEXT[event.type],
        "id": event.id,
        "method": str(event.method),
        "note": event.note,
        "url": event.url,
        "status": str(event.status),
        "modified": format_modified(event.modified),
        "links": {"self": self_link},
    }


_DIGIT = ("0", "1")


def render_all(events: Iterable[PhoneCallEvent], base: str) -> list[dict[str, Any]]:
    """``render`` of each event, its self link ``base/TYPE/ID`` (a List renders many: this is
    the same in one loop)."""
    types, modified = _TYPE_TEXT, format_modified
    return [
        {
            "type": (kind := types[e.type]),
            "id": e.id,
            "method": _DIGIT[e.method] if 0 <= e.method <= 1 else str(e.method),
            "note": e.note,
            "url": e.url,
            "status": _DIGIT[e.status] if 0 <= e.status <= 1 else str(e.status),
            "modified": modified(e.modified),
            "links": {"self": f"{base}/{kind}/{e.id}"},
        }
        for e in events
    ]
