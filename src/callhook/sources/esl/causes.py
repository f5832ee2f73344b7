"""FreeSWITCH Hangup-Causes -> the disposition of a call nobody answered. Pure.

The disposition comes from the Hangup-Cause of the call's legs, the caller leg's
``variable_originate_disposition`` (the last ``bridge``'s outcome) and its own cause; when
they differ the first of CANCEL, NOANSWER, BUSY, CONGESTION, CHANUNAVAIL found wins (the caller
gave up; something rang; all were busy; the network failed; nobody could be reached), else
callhook's UNKNOWN. See ``CAUSES``: USER_BUSY and CALL_REJECTED (a phone's Decline) are BUSY;
NO_ANSWER, NO_USER_RESPONSE, ALLOTTED_TIMEOUT and PROGRESS_TIMEOUT are NOANSWER;
ORIGINATOR_CANCEL is CANCEL; USER_NOT_REGISTERED, SUBSCRIBER_ABSENT, UNALLOCATED_NUMBER,
NO_ROUTE_DESTINATION and the like are CHANUNAVAIL; NORMAL_TEMPORARY_FAILURE,
RECOVERY_ON_TIMER_EXPIRE, gateway and network failures are CONGESTION. LOSE_RACE and
PICKED_OFF (another leg won) and the transfer causes say nothing about the call.
"""

from __future__ import annotations

from collections.abc import Sequence

BUSY, NOANSWER, CANCEL = "BUSY", "NOANSWER", "CANCEL"
CONGESTION, CHANUNAVAIL = "CONGESTION", "CHANUNAVAIL"

#: Hangup-Cause (or originate_disposition) -> the disposition it means; others mean nothing
CAUSES: dict[str, str] = {
    "USER_BUSY": BUSY,
    "CALL_REJECTED": BUSY,
    "NO_ANSWER": NOANSWER,
    "NO_USER_RESPONSE": NOANSWER,
    "ALLOTTED_TIMEOUT": NOANSWER,
    "PROGRESS_TIMEOUT": NOANSWER,
    "ORIGINATOR_CANCEL": CANCEL,
    "USER_NOT_REGISTERED": CHANUNAVAIL,
    "SUBSCRIBER_ABSENT": CHANUNAVAIL,
    "UNALLOCATED_NUMBER": CHANUNAVAIL,
    "NO_ROUTE_DESTINATION": CHANUNAVAIL,
    "NO_ROUTE_TRANSIT_NET": CHANUNAVAIL,
    "DESTINATION_OUT_OF_ORDER": CHANUNAVAIL,
    "INVALID_NUMBER_FORMAT": CHANUNAVAIL,
    "NUMBER_CHANGED": CHANUNAVAIL,
    "INCOMPATIBLE_DESTINATION": CHANUNAVAIL,
    "INVALID_GATEWAY": CHANUNAVAIL,
    "NORMAL_TEMPORARY_FAILURE": CONGESTION,
    "RECOVERY_ON_TIMER_EXPIRE": CONGESTION,
    "SWITCH_CONGESTION": CONGESTION,
    "NORMAL_CIRCUIT_CONGESTION": CONGESTION,
    "NETWORK_OUT_OF_ORDER": CONGESTION,
    "REQUESTED_CHAN_UNAVAIL": CONGESTION,
    "EXCHANGE_ROUTING_ERROR": CONGESTION,
    "GATEWAY_DOWN": CONGESTION,
    "MEDIA_TIMEOUT": CONGESTION,
}
#: when the legs disagree, the first of these found is the call's disposition
PRECEDENCE = (CANCEL, NOANSWER, BUSY, CONGESTION, CHANUNAVAIL)


def disposition(causes: Sequence[str]) -> str | None:
    """The call's disposition from the causes heard; None lets callhook decide."""
    found = {CAUSES.get(cause.strip().upper()) for cause in causes if cause}
    return next((choice for choice in PRECEDENCE if choice in found), None)
