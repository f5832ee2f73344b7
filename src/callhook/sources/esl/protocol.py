"""FreeSWITCH event socket (ESL) framing, sans I/O: bytes in, frames out; commands out as bytes.

The wire format, as ``mod_event_socket.c`` writes it:

- Every message from FreeSWITCH is a block of ``Name: value`` header lines ended by an empty
  line (``\\n\\n``); a ``Content-Length`` header announces that many bytes of body after it.
  ``Content-Type`` says what it is: ``auth/request`` (first thing on connect),
  ``command/reply`` (``Reply-Text: +OK ...`` or ``-ERR ...``), ``api/response`` (the body is the
  command's output), ``text/event-plain`` and ``text/event-json`` (the body is one event),
  ``text/disconnect-notice`` (the connection is about to close), ``text/rude-rejection`` (the
  ACL refused us; the connection closes).
- A plain event body is itself ``Name: value`` lines, values URL-encoded, ended by an empty line
  and possibly followed by the event's own body (``Content-Length`` inside the event). A JSON
  event is one object with the same header names and the body under ``_body``. Both decode to
  the same ``Message``: a dict of header names to decoded strings, the body as ``_body``.
- Every command is one line ended by an empty line: ``auth PASSWORD\\n\\n``, ``event plain
  CHANNEL_CREATE ...\\n\\n``, ``api show channels as json\\n\\n``, ``exit\\n\\n``. A line break
  inside a command would start another command, so arguments with one are refused.

A broken or hostile peer cannot make the parser hold unbounded memory: a header block longer
than ``max_header_bytes`` without its empty line, or a ``Content-Length`` over
``max_body_bytes`` (or not a number), raises ``EslProtocolError`` naming the problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

#: FreeSWITCH's own header blocks are a few hundred bytes; a plain event's outer block too
MAX_HEADER_BYTES = 64 * 1024
#: ``show channels as json`` on a busy switch is the largest body callhook asks for
MAX_BODY_BYTES = 32 * 1024 * 1024

AUTH_REQUEST = "auth/request"
COMMAND_REPLY = "command/reply"
API_RESPONSE = "api/response"
EVENT_PLAIN = "text/event-plain"
EVENT_JSON = "text/event-json"
DISCONNECT_NOTICE = "text/disconnect-notice"
RUDE_REJECTION = "text/rude-rejection"
EVENT_TYPES = (EVENT_PLAIN, EVENT_JSON)
FORMATS = ("plain", "json")

#: where a decoded event keeps its own body
BODY = "_body"

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_EVENT_NAME = re.compile(r"[A-Za-z0-9_:.\-]+")


class EslProtocolError(Exception):
    """The peer broke the ESL framing; the message says how."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One message from FreeSWITCH: its header block and its body."""

    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """A header by name, whatever its case."""
        if name in self.headers:
            return self.headers[name]
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "").strip().lower()

    @property
    def reply_text(self) -> str:
        """``+OK accepted``, ``-ERR invalid``... of a command/reply."""
        return (self.header("Reply-Text") or "").strip()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Parser:
    """Feed it bytes as they arrive; it returns the frames they complete, in order."""

    def __init__(
        self, *, max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._buffer = bytearray()
        #: headers of a frame whose body is still arriving, and the body's length
        self._pending: tuple[dict[str, str], int] | None = None
        #: where the search for the blank line resumes (bytes before it were searched)
        self._searched = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Frame | None:
        buffer = self._buffer
        if self._pending is not None:
            headers, length = self._pending
            if len(buffer) < length:
                return None
            body = bytes(buffer[:length])
            del buffer[:length]
            self._pending = None
            return Frame(headers, body)
        # FreeSWITCH itself skips stray line breaks between messages
        skip = 0
        while skip < len(buffer) and buffer[skip] in b"\r\n":
            skip += 1
        if skip:
            del buffer[:skip]
            self._searched = 0
        found = _BLANK_LINE.search(buffer, max(0, self._searched - 3))
        if found is None:
            self._searched = len(buffer)
            if len(buffer) > self.max_header_bytes:
                raise EslProtocolError(
                    f"a header block longer than {self.max_header_bytes} bytes without the empty "
                    "line that ends it: the peer is not speaking ESL, or is broken"
                )
            return None
        if found.start() > self.max_header_bytes:
            raise EslProtocolError(
                f"a header block of {found.start()} bytes (the limit is {self.max_header_bytes})"
            )
        block = bytes(buffer[: found.start()])
        del buffer[: found.end()]
        self._searched = 0
        headers = _header_block(block)
        length = _content_length(headers, self.max_body_bytes)
        if length:
            self._pending = (headers, length)
            return self._next()
        return Frame(headers)


def _header_block(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in block.split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise EslProtocolError(
                f"{line[:80]!r} is not a 'Name: value' header line: the peer is not speaking ESL"
            )
        headers[name.strip().decode("utf-8", "replace")] = value.lstrip(b" ").decode(
            "utf-8", "replace"
        )
    return headers


def _content_length(headers: Mapping[str, str], limit: int) -> int:
    raw = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
    if raw is None:
        return 0
    text = raw.strip()
    if not text.isdigit():
        raise EslProtocolError(f"Content-Length {raw[:40]!r} is not a number of bytes")
    length = int(text)
    if length > limit:
        raise EslProtocolError(
            f"Content-Length {length} is over the limit of {limit} bytes for one message"
        )
    return length


# --- event bodies -----------------------------------------------------------------------------


def decode_event(frame: Frame) -> dict[str, str]:
    """A ``text/event-plain`` or ``text/event-json`` frame as the event's headers."""
    if frame.content_type == EVENT_PLAIN:
        return parse_plain_event(frame.body)
    if frame.content_type == EVENT_JSON:
        return parse_json_event(frame.body)
    raise EslProtocolError(f"a {frame.content_type or 'untyped'} frame is not an event")


def parse_plain_event(body: bytes) -> dict[str, str]:
    """``Name: url-encoded value`` lines, an empty line, then the event's own body if it has
    a Content-Length (kept as ``_body``, the Content-Length dropped, as in JSON events)."""
    head, blank, rest = _split_blank(body)
    event: dict[str, str] = {}
    for name, value in _header_block(head).items():
        event[name] = unquote(value, errors="replace")
    length_text = event.pop("Content-Length", None)
    if length_text is not None and blank:
        if not length_text.strip().isdigit():
            raise EslProtocolError(
                f"an event's Content-Length {length_text[:40]!r} is not a number of bytes"
            )
        length = int(length_text)
        if length > len(rest):
            raise EslProtocolError(
                f"an event announces a body of {length} bytes and carries {len(rest)}"
            )
        event[BODY] = rest[:length].decode("utf-8", "replace")
    return event


def _split_blank(body: bytes) -> tuple[bytes, bool, bytes]:
    found = _BLANK_LINE.search(body)
    if found is None:
        return body, False, b""
    return body[: found.start()], True, body[found.end() :]


def parse_json_event(body: bytes) -> dict[str, str]:
    """One JSON object; arrays become FreeSWITCH's plain form ``ARRAY::a|:b``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EslProtocolError(f"a text/event-json body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EslProtocolError("a text/event-json body is not a JSON object")
    return {str(name): _text(value) for name, value in doc.items() if value is not None}


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "ARRAY::" + "|:".join(_text(v) for v in value)
    return json.dumps(value) if isinstance(value, dict | bool) else str(value)


def parse_channels(body: bytes) -> list[dict[str, str]]:
    """The rows of ``api show channels as json``: ``{"row_count": N, "rows": [...]}`` (no
    ``rows`` at all when there are none). An ``-ERR`` answer raises EslProtocolError."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("-ERR"):
        raise EslProtocolError(f"show channels failed: {text[:200]}")
    try:
        doc = json.loads(text)
    except ValueError:
        raise EslProtocolError(f"show channels did not answer JSON: {text[:80]!r}") from None
    rows = doc.get("rows", []) if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise EslProtocolError("show channels answered JSON without a list of rows")
    return [
        {str(k): "" if v is None else _text(v) for k, v in row.items()}
        for row in rows
        if isinstance(row, dict)
    ]


# --- commands ---------------------------------------------------------------------------------


def command(line: str) -> bytes:
    """One command on the wire. A line break would end it early and smuggle in another."""
    if "\n" in line or "\r" in line:
        raise ValueError(f"an ESL command must be one line: {line.splitlines()[0][:40]!r}...")
    return f"{line}\n\n".encode()


def auth(password: str) -> bytes:
    if "\n" in password or "\r" in password:
        # the message must not repeat the password
        raise ValueError("the ESL password must not contain a line break")
    return command(f"auth {password}")


def subscribe(event_format: str, names: Iterable[str]) -> bytes:
    """``event plain|json NAME ...`` (``ALL`` for every event)."""
    if event_format not in FORMATS:
        raise ValueError(f"event format {event_format!r}: use plain or json")
    chosen = list(names)
    if not chosen:
        raise ValueError("subscribe to at least one event")
    for name in chosen:
        if not _EVENT_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an event name")
    return command(f"event {event_format} {' '.join(chosen)}")


def api(line: str) -> bytes:
    """A synchronous API command; its output comes back as an ``api/response``."""
    return command(f"api {line}")


EXIT = command("exit")
