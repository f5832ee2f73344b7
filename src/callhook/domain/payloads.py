"""The VoipNow request: parameters, GET/POST encodings, URL options and signatures (contract 7).

Everything here is a function of its inputs; ``new_secret`` is the only use of randomness.
Signatures follow Standard Webhooks: ``v1,<base64 HMAC-SHA256 of "id.timestamp.payload">``,
where the payload is the form body (POST) or the appended query string (GET).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from secrets import token_bytes
from urllib.parse import parse_qsl, quote_plus

#: the VoipNow parameter names, in the order they are sent
PARAM_ORDER = (
    "CallID",
    "CallerIDNum",
    "CallerIDName",
    "CalledDID",
    "CalledExtension",
    "CallerExtension",
    "CalledNumber",
    "CallStatus",
    "CallFlow",
    "CallAPIID",
)
METHOD_GET = 0
METHOD_POST = 1
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
#: URL fragment options: name -> (lowest, highest) accepted value
_FRAGMENT_LIMITS = {"ct": (100, 10_000), "rt": (100, 60_000), "rc": (0, 100)}


_KNOWN = frozenset(PARAM_ORDER)
#: what quote_plus leaves as it is: such values need no quoting (most of them)
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


def _quote(value: str) -> str:
    return value if _UNQUOTED.fullmatch(value) else quote_plus(value)


def encode_params(params: Mapping[str, str | None]) -> str:
    """The form/query string of ``params`` in ``PARAM_ORDER``; unknown (None or "") are omitted.

    Byte for byte what ``urlencode(pairs, quote_via=quote_plus)`` gives, faster.
    """
    if not _KNOWN.issuperset(params):
        unknown = sorted(set(params) - _KNOWN)
        raise ValueError(f"unknown call event parameter(s): {', '.join(unknown)}")
    return "&".join(
        f"{name}={_quote(value)}" for name in PARAM_ORDER if (value := params.get(name))
    )


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to connect and for the whole attempt; ``max_attempts`` None means no limit."""

    connect: float = 3.0
    total: float = 10.0
    max_attempts: int | None = None


def _fragment_option(name: str, raw: str) -> int | None:
    limits = _FRAGMENT_LIMITS.get(name)
    if limits is None or not raw.isascii() or not raw.isdigit():
        return None
    low, high = limits
    return min(max(int(raw), low), high)


def split_url(url: str, default: Timeouts) -> tuple[str, Timeouts]:
    """Strip the fragment; its Twilio-style ``ct``/``rt``/``rc`` options override ``default``.

    ``ct`` is the connect timeout and ``rt`` the total timeout, both in milliseconds; ``rc`` is
    the number of retries (so at most ``rc + 1`` attempts). Unknown or invalid options are ignored.
    """
    base, _, fragment = url.partition("#")
    timeouts = default
    for name, raw in parse_qsl(fragment, keep_blank_values=True):
        value = _fragment_option(name, raw)
        if value is None:
            continue
        if name == "ct":
            timeouts = replace(timeouts, connect=value / 1000)
        elif name == "rt":
            timeouts = replace(timeouts, total=value / 1000)
        else:
            timeouts = replace(timeouts, max_attempts=value + 1)
    return base, timeouts


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """One HTTP request, byte for byte as it is to be sent."""

    method: str
    url: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...]


def with_query(url: str, query: str) -> str:
    """``url`` with ``query`` appended after any query it already has."""
    if not query:
        return url
    if "?" not in url:
        return f"{url}?{query}"
    if url.endswith(("?", "&")):
        return url + query
    return f"{url}&{query}"


def build_request(
    method: int,
    url: str,
    payload: str,
    *,
    webhook_id: str,
    timestamp: int,
    signatures: str,
    seq: int,
    user_agent: str,
) -> OutgoingRequest:
    """The request for a fragment-free ``url``: 0 = GET (query string), 1 = POST (form body)."""
    headers = [
        ("webhook-id", webhook_id),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-signature", signatures),
        ("X-Callhook-Seq", str(seq)),
        ("User-Agent", user_agent),
    ]
    if method == METHOD_GET:
        return OutgoingRequest("GET", with_query(url, payload), None, tuple(headers))
    if method == METHOD_POST:
        headers.append(("Content-Type", FORM_CONTENT_TYPE))
        return OutgoingRequest("POST", url, payload.encode(), tuple(headers))
    raise ValueError(f"method must be 0 (GET) or 1 (POST), not {method!r}")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (decode it once, sign many messages with it)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("a signing secret must be whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a signing secret must not be empty")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, payload: str) -> str:
    """The Standard Webhooks signature ``v1,<base64>`` of one message."""
    return sign_with((signing_key(secret),), webhook_id, timestamp, payload)


def sign_all(secrets: Sequence[str], webhook_id: str, timestamp: int, payload: str) -> str:
    """One signature per secret, space separated (several while a secret is being rotated)."""
    return sign_with([signing_key(s) for s in secrets], webhook_id, timestamp, payload)


def sign_with(keys: Sequence[bytes], webhook_id: str, timestamp: int, payload: str) -> str:
    """``sign_all`` with the secrets' keys decoded already (``signing_key``)."""
    content = f"{webhook_id}.{timestamp}.{payload}".encode()
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(key, content, "sha256")).decode("ascii")
        for key in keys
    )


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(24)).decode("ascii")
