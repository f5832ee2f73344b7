"""The PhoneCallEvent resource: validation (to UAPI error codes), rendering and ids."""

from __future__ import annotations

import os
import re
import string
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


def new_event_id(
    choice: Callable[[str], str] | None = None, randbytes: Callable[[int], bytes] = os.urandom
) -> str:
    """30 random letters and digits; from ``choice`` (one character at a time) if given, else
    from random bytes (one read of the system's random source, not 30)."""
    if choice is not None:
        return "".join(choice(ID_ALPHABET) for _ in range(ID_LENGTH))
    text = ""
    while len(text) < ID_LENGTH:
        text += randbytes(ID_LENGTH + 10).translate(_ID_TABLE, _ID_DROPPED).decode("ascii")
    return text[:ID_LENGTH]


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
    return EventType(_small_int(value, range(5), error, "type"))


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
    unknown = sorted(k for k in body if k not in allowed and k not in READ_ONLY)
    if unknown:
        raise RequestInvalid(
            f"Unknown field(s): {', '.join(unknown)}. Allowed: {', '.join(allowed)}."
        )


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
