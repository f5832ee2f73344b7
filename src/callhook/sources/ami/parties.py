"""Who is who in an AMI call: the party a channel stands for, the DID a trunk channel was
called on, and the callee of a call that starts with a dial. Pure: no I/O.

An extension is only ever taken from a channel's endpoint (``PJSIP/210-...``, ``SIP/210-...``:
see ``channels.py``), never from CallerIDNum, which the dialplan rewrites.

- The caller is the channel that began the Linkedid (Uniqueid == Linkedid): an extension, or
  a trunk whose CallerIDNum is the external number and whose Exten (on ``Newchannel``) is the
  DID (``did``; ``dialled`` is that first Exten for every caller).
- A ``DialBegin`` to a trunk makes the callee that external number (from DialString, else
  DestExten). To an extension, the callee is that extension, unless the caller dialled another
  extension number of the same length first (a ring group ``600`` that rings ``210`` and
  ``211``: the number dialled, the Exten where the Dial ran, is the callee and the phones get
  ``leg.ringing``). "Same length" keeps IVR digits (``2``) and DIDs out under a loose
  ``--extensions`` pattern.
- A dialled channel's CallerIDNum is not its own: it stands for its extension, or for the
  number it was dialled with (a trunk).
"""

from __future__ import annotations

from callhook.domain.calls import Party
from callhook.sources.ami.channels import number_like
from callhook.sources.ami.legs import Leg, Segment, Tree
from callhook.sources.tracking import Numbering


def party(numbering: Numbering, leg: Leg) -> Party:
    """The party a leg stands for."""
    if leg.outgoing:
        # a dialled channel's caller id is not its own: the extension, or the number dialled
        ext = numbering.extension(leg.endpoint)
        return numbering.party(leg.endpoint, None if ext else leg.dialled)
    return numbering.party(leg.endpoint, leg.number, leg.name)


def did(numbering: Numbering, leg: Leg) -> str | None:
    """A trunk's incoming channel: its first Exten is the DID it was called on."""
    if leg.outgoing or leg.endpoint is None or numbering.extension(leg.endpoint):
        return None
    return number_like(leg.first_exten)


def callee(numbering: Numbering, tree: Tree, seg: Segment, caller: Leg, dst: Leg) -> Party:
    """Who the call is for when it starts with a dial to ``dst`` (see the module doc)."""
    ext = numbering.extension(dst.endpoint)
    endpoint = dst.endpoint or ""
    if ext is None:
        return party(numbering, dst)  # a trunk: the external number dialled
    caller_did = did(numbering, caller)
    candidates = [*seg.dial_extens, seg.dialled]
    if seg.call_id == tree.linkedid:
        candidates.append(caller.first_exten)
    for candidate in candidates:
        number = number_like(candidate)
        if number is None or number == caller_did or len(number) != len(endpoint):
            continue
        if numbering.extension(number):
            return numbering.party(number)
    return party(numbering, dst)
