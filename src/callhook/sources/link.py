"""What the connector runner needs from a PBX protocol (AMI, ESL): the shapes, no behaviour.

A ``Link`` opens ``Session``s to one PBX (connect, authenticate, subscribe to call events). A
session lists the PBX's live channels, then yields its events until the connection drops. A
``Mapper`` (pure) turns those messages into callhook call events through a ``CallTracker``.
``sources/runner.py`` drives them: reconnects with backoff, reconciles after each reconnect,
closes calls older than the maximum call age, hands the events to ingest and reports status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from callhook.domain.calls import CallEvent
from callhook.sources.tracking import CallTracker

#: how long a PBX may take to list its live channels; one that does not answer (a replay of a
#: PBX that ignores the request) is followed without reconciling, its events held meanwhile
CHANNELS_TIMEOUT = 5.0

#: one PBX message: AMI ``Key: Value`` lines, or an ESL event's headers (values decoded)
Message = Mapping[str, str]


class LinkError(Exception):
    """The link failed in a way worth telling the operator (bad credentials, protocol error):
    the message says what went wrong and how to fix it. Connection errors are ``OSError``."""


class LinkLost(LinkError):
    """The PBX closed the connection, or stopped answering keepalives."""


class ChannelsUnavailable(LinkError):
    """The PBX would not list its live channels (no permission, no answer, an answer that
    could not be read). The link stays up and follows new events; what it could not reconcile
    is closed by the maximum call age instead."""


class Session(Protocol):
    async def live_channels(self) -> Sequence[Message]:
        """The PBX's channels now (AMI CoreShowChannels, ESL ``show channels``); events that
        arrive meanwhile are kept and yielded by ``events`` afterwards, in order.
        ChannelsUnavailable when the PBX will not say (the session stays usable)."""
        ...

    def events(self) -> AsyncIterator[Message]:
        """Call events until the link drops (then LinkLost or OSError)."""
        ...

    async def close(self) -> None: ...


class Link(Protocol):
    #: "ami" or "esl"
    kind: str
    #: host:port of the PBX
    target: str

    async def open(self) -> Session:
        """Connect, authenticate and subscribe (LinkError on refusal, OSError, TimeoutError)."""
        ...


class Mapper(Protocol):
    tracker: CallTracker

    def feed(self, message: Message, now: datetime) -> list[CallEvent]:
        """One PBX event in, the call events it makes out (often none)."""
        ...

    def reconcile(self, channels: Sequence[Message], now: datetime) -> list[CallEvent]:
        """After a (re)connect, given the PBX's live channels: end the followed calls that are
        gone (``CallTracker.reconcile``); may also start following calls begun meanwhile."""
        ...
