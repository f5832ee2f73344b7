"""What the AMI mapper keeps between events: channels (legs), the Linkedid trees they form, and
the callhook calls (segments) of each tree. Plain data: the decisions are in ``calls.py``,
``parties.py`` and ``reconcile.py``.

A tree is everything with one Linkedid. Its first segment is the callhook call with the
Linkedid as id; a transfer closes it and opens the next, ``<Linkedid>/t1``, ``/t2``..., in the
same tree (see ``calls.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callhook.sources.ami.channels import Snapshot, endpoint_of

#: DialEnd statuses that end a dial without an answer (CONTINUE, GOTO... are not outcomes)
FAILURES = frozenset({"BUSY", "NOANSWER", "CANCEL", "CHANUNAVAIL", "CONGESTION"})
#: how many hung-up Uniqueids are remembered, so a late event cannot bring a leg back
GONE_LIMIT = 10_000


@dataclass(slots=True)
class Leg:
    """One channel, as far as callhook follows it."""

    uniqueid: str
    linkedid: str
    channel: str
    number: str | None
    name: str | None
    #: the Exten when first seen: what a phone dialled, a trunk's DID (None: seen too late)
    first_exten: str | None
    exten: str | None
    #: dialled by a DialBegin (its CallerIDNum is then not its own number)
    outgoing: bool = False
    #: the number it was dialled with, for a trunk
    dialled: str | None = None

    @classmethod
    def of(cls, snap: Snapshot, linkedid: str, *, first_exten: str | None) -> Leg:
        return cls(
            snap.uniqueid, linkedid, snap.channel, snap.number, snap.name, first_exten, snap.exten
        )

    @property
    def endpoint(self) -> str | None:
        return endpoint_of(self.channel)


@dataclass(slots=True)
class Segment:
    """One callhook call within a Linkedid: the first, or one begun by a transfer."""

    call_id: str
    #: Uniqueid of the caller's leg (set at the start; a transfer sets it before)
    caller: str | None = None
    #: the number dialled, when known before the start (a blind transfer's Extension)
    dialled: str | None = None
    started: bool = False
    answered_by: str | None = None
    ended: bool = False
    outcome: str | None = None
    local_outcome: str | None = None
    #: the Exten of each dial before the start (a ring group's number)
    dial_extens: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return self.answered_by is not None


@dataclass(slots=True)
class Tree:
    """The legs of one Linkedid and the callhook call they are in now."""

    linkedid: str
    live: set[str] = field(default_factory=set)
    transfers: int = 0
    segment: Segment = field(init=False)

    def __post_init__(self) -> None:
        self.segment = Segment(self.linkedid)

    def next_segment(self, caller: str | None, dialled: str | None = None) -> Segment:
        self.transfers += 1
        self.segment = Segment(f"{self.linkedid}/t{self.transfers}", caller, dialled)
        return self.segment
