"""The Asterisk Manager Interface wire format, sans I/O: bytes in, messages out; actions out.

AMI is lines of text over TCP (port 5038). On connect the server sends one banner line,
``Asterisk Call Manager/5.0.1``; after that every message, in either direction, is ``Key: Value``
lines ended by an empty line. The first key says what it is: ``Action`` (client), ``Response``
or ``Event`` (server); ``ActionID`` ties a response, and the events of a list such as
``CoreShowChannels``, to the action that asked for them.

``AmiParser.feed`` takes whatever the socket gave and returns the messages it completed, so a
message split across reads at any byte, or several in one read, come out the same. Decisions:

- **Line ends**: CRLF (what Asterisk sends) or a bare LF (proxies, hand-written replays).
- **Keys without regard to case**: Asterisk 11 says ``UniqueID``, 12+ ``Uniqueid``; a lookup
  finds either. The key keeps its spelling in ``AmiMessage.fields``.
- **Repeated keys** (``ChanVariable``, ``Variable``): every value is kept (``AmiMessage.all``);
  as a mapping the message shows the last one.
- **A line without a colon** (the output of the legacy ``Command`` action) is kept as an
  ``Output`` value, which is how Asterisk 14+ frames command output itself.
- **Text**: UTF-8, invalid bytes replaced: a Latin-1 caller name must not take the link down.
- **Bounded**: a message over ``MAX_MESSAGE`` bytes, or a banner that does not come within
  ``MAX_BANNER`` bytes, is an ``AmiProtocolError``: a broken or foreign peer cannot make the
  parser hold an unbounded buffer. A real AMI message is well under 2 KiB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from callhook.sources.link import LinkError

BANNER_PREFIX = "Asterisk Call Manager"
MAX_BANNER = 1024
MAX_MESSAGE = 64 * 1024

_KEY = re.compile(r"[!-9;-~]+")  # printable ASCII without space or colon


class AmiProtocolError(LinkError):
    """The peer broke the AMI framing (or is not an AMI server); the message says how."""


class AmiMessage(Mapping[str, str]):
    """One AMI message: its ``Key: Value`` fields, looked up without regard to case."""

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: Iterable[tuple[str, str]]) -> None:
        self._fields = tuple(fields)
        index: dict[str, tuple[str, str]] = {}
        for key, value in self._fields:
            index[key.lower()] = (key, value)  # the last one wins
        self._index = index

    @classmethod
    def of(cls, message: Mapping[str, str]) -> AmiMessage:
        """``message`` itself when it is an AmiMessage, else one with its items."""
        return message if isinstance(message, AmiMessage) else cls(message.items())

    def __getitem__(self, key: str) -> str:
        return self._index[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return (key for key, _value in self._index.values())

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"AmiMessage({list(self._fields)!r})"

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every field in the order received, repeated keys included."""
        return self._fields

    def all(self, key: str) -> list[str]:
        """Every value of ``key`` in order (``ChanVariable`` may come many times)."""
        wanted = key.lower()
        return [value for k, value in self._fields if k.lower() == wanted]

    @property
    def event(self) -> str | None:
        """The event name (``DialBegin``), or None for a response."""
        return self.get("Event")

    @property
    def response(self) -> str | None:
        """``Success``, ``Error``, ``Goodbye``... for a response, else None."""
        return self.get("Response")


class AmiParser:
    """Bytes from the peer in, complete messages out. ``expect_banner`` is for the client side
    (the server greets first); the server side parses the client's actions without it."""

    def __init__(self, *, expect_banner: bool = True) -> None:
        self.banner: str | None = None
        self._want_banner = expect_banner
        self._buffer = bytearray()
        self._fields: list[tuple[str, str]] = []
        self._size = 0

    def feed(self, data: bytes) -> list[AmiMessage]:
        self._buffer += data
        messages: list[AmiMessage] = []
        start = 0
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start:end])
            start = end + 1
            if self._want_banner:
                self._take_banner(line)
                continue
            self._size += len(line) + 1
            if self._size > MAX_MESSAGE:
                raise AmiProtocolError(
                    f"AMI message longer than {MAX_MESSAGE} bytes without its end (an empty "
                    "line): the peer is broken or is not an Asterisk manager interface"
                )
            message = self._take_line(line)
            if message is not None:
                messages.append(message)
        del buffer[:start]
        pending = len(buffer)
        if self._want_banner and pending > MAX_BANNER:
            raise AmiProtocolError(
                f"no AMI banner line within {MAX_BANNER} bytes: the peer is not an Asterisk "
                "manager interface (check the host and port, usually 5038)"
            )
        if self._size + pending > MAX_MESSAGE:
            raise AmiProtocolError(
                f"AMI message longer than {MAX_MESSAGE} bytes without its end (an empty line): "
                "the peer is broken or is not an Asterisk manager interface"
            )
        return messages

    def _take_banner(self, raw: bytes) -> None:
        line = _text(raw).strip()
        if not line.startswith(BANNER_PREFIX):
            shown = line[:80] or "an empty line"
            raise AmiProtocolError(
                f"the peer is not an Asterisk manager interface: it greeted with {shown!r} "
                f"instead of '{BANNER_PREFIX}/<version>' (check the host and port, usually 5038)"
            )
        self.banner = line
        self._want_banner = False

    def _take_line(self, raw: bytes) -> AmiMessage | None:
        line = _text(raw)
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            if not self._fields:
                return None  # stray empty lines between messages
            message = AmiMessage(self._fields)
            self._fields = []
            self._size = 0
            return message
        key, colon, value = line.partition(":")
        if not colon or not key.strip() or " " in key.strip():
            self._fields.append(("Output", line))
        else:
            self._fields.append((key.strip(), value.lstrip(" ")))
        return None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def encode(fields: Iterable[tuple[str, str]]) -> bytes:
    """One message on the wire: ``Key: Value\\r\\n`` lines and the empty line that ends it.

    A key must be printable ASCII without spaces or colons; a value must not contain CR or LF
    (it would end the line, or the message, early: an injection). The error names the key,
    never the value (it may be a secret)."""
    lines: list[str] = []
    for key, value in fields:
        if not _KEY.fullmatch(key):
            raise ValueError(f"AMI key {key!r} is not printable ASCII without spaces or colons")
        if "\r" in value or "\n" in value:
            raise ValueError(f"AMI value of {key} contains a line break; AMI cannot carry it")
        lines.append(f"{key}: {value}\r\n")
    if not lines:
        raise ValueError("an AMI message needs at least one field")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


def encode_action(
    action: str,
    fields: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    *,
    action_id: str | None = None,
) -> bytes:
    """``Action: NAME``, then ``ActionID`` when given, then ``fields`` (pairs may repeat keys,
    e.g. several ``Variable``)."""
    pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    head = [("Action", action)]
    if action_id is not None:
        head.append(("ActionID", action_id))
    return encode(head + pairs)
