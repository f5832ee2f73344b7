"""Reading requests safely: bounded bodies, strict JSON, bearer tokens, the public origin."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.requests import ClientDisconnect, Request

from callhook.errors import OAuthError, PayloadTooLarge, RequestInvalid, Unauthenticated

MAX_JSON = 64 * 1024
MAX_BODY = 1024 * 1024


def header(request: Request, name: bytes) -> str | None:
    """The first value of the header ``name`` (lower case), as ``request.headers.get`` gives
    it, read straight from the scope (without building the request's ``Headers``)."""
    for key, value in request.scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _content_type(request: Request) -> str:
    return (header(request, b"content-type") or "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The whole body, read once, straight from the ASGI ``receive`` (``request.stream()`` is an
    async generator stepped three times for a one-message body, with bookkeeping for reading
    twice, which no caller does)."""
    declared = header(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit // 1024} KiB.")
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit // 1024} KiB.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: ``json.loads(text, parse_constant=_no_constants)`` makes a decoder per call; one made once
#: decodes the same (``_loads`` keeps ``json.loads``'s own refusal of a byte order mark)
_decode = json.JSONDecoder(parse_constant=_no_constants).decode


def _loads(text: str) -> Any:
    """``json.loads(text, parse_constant=_no_constants)``, the same values and errors."""
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _decode(text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a key or string holds a lone UTF-16 surrogate (``"\\ud800"`` in the JSON text).

    JSON allows such escapes but they are not Unicode text: they can be neither stored nor sent
    back as UTF-8. (A valid pair such as ``"\\ud83d\\ude00"`` is decoded to one character.)
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def json_value(request: Request, limit: int = MAX_JSON, what: str = "a JSON object") -> Any:
    """The body as JSON (any value), or a request_invalid error that says what is wrong."""
    raw = await read_body(request)
    ctype = _content_type(request)
    if ctype != "application/json" and not (
        ctype.startswith("application/") and ctype.endswith("+json")
    ):
        got = f"got {ctype!r}" if ctype else "none was sent"
        raise RequestInvalid(
            f"Send the body as JSON with 'Content-Type: application/json' ({got})."
        )
    if len(raw) > limit:
        raise RequestInvalid(f"The JSON body is {len(raw)} bytes; the limit is {limit}.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestInvalid(f"The body is not valid UTF-8 (byte {exc.start}).") from None
    if not text.strip():
        raise RequestInvalid(f"The body is empty; send {what}.")
    try:
        value = _loads(text)
    except (ValueError, RecursionError) as exc:
        raise RequestInvalid(f"The body is not valid JSON: {exc}.") from None
    # a lone surrogate can only come from a \\u escape (UTF-8 text holds none)
    if "\\u" in text and _has_lone_surrogate(value):
        raise RequestInvalid(
            "The body contains an unpaired UTF-16 surrogate escape (such as \\ud800), "
            "which is not Unicode text."
        )
    return value


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or a request_invalid error that says what is wrong."""
    value = await json_value(request)
    if not isinstance(value, dict):
        raise RequestInvalid(f"The body must be a JSON object, not a JSON {type(value).__name__}.")
    return value


async def form_fields(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as a dict (OAuth endpoints)."""
    ctype = _content_type(request)
    try:
        raw = await read_body(request, MAX_JSON)
    except PayloadTooLarge:
        raise OAuthError("invalid_request", "The request body is too large.") from None
    if ctype not in ("application/x-www-form-urlencoded", ""):
        raise OAuthError(
            "invalid_request", "Send the parameters as application/x-www-form-urlencoded."
        )
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "The form body is not valid UTF-8.") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            raise OAuthError("invalid_request", f"The parameter {key!r} contains a NUL character.")
        if key in fields and fields[key] != value:
            raise OAuthError("invalid_request", f"The parameter {key} is repeated.")
        fields[key] = value
    return fields


def basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = (header(request, b"authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(
            "invalid_client", "The HTTP Basic credentials are malformed.", 401
        ) from None
    client_id, sep, secret = decoded.partition(":")
    # RFC 6749 2.3.1: id and secret are form-encoded before Basic encoding
    client_id, secret = unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))
    if not sep or "\x00" in client_id or "\x00" in secret:
        raise OAuthError("invalid_client", "The HTTP Basic credentials are malformed.", 401)
    return client_id, secret


def bearer_token(request: Request) -> str | None:
    given = header(request, b"authorization")
    if given is not None:
        scheme, _, token = given.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("The Authorization header must be 'Bearer TOKEN'.")
        return token.strip()
    query = request.query_params.get("accessRequestToken")
    if query is not None:
        scheme, _, token = query.strip().partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else query.strip()
        return token or None
    return None


#: a Host header that is a plain name or IPv4 address with a port or none, which
#: ``request.url`` keeps as it is (anything else takes the long way)
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.\-]+(?::([1-9][0-9]{0,4}))?")


def origin(request: Request, public_url: str) -> str:
    """scheme://host[:port] of the request (``public_url`` if set): as ``request.url`` gives
    it, without building the whole URL when the Host header is a plain host[:port]."""
    if public_url:
        return public_url
    host = header(request, b"host")
    plain = _PLAIN_HOST.fullmatch(host) if host is not None else None
    if plain is not None and (plain[1] is None or int(plain[1]) <= 65535):
        scheme: str = request.scope.get("scheme", "http")
        return f"{scheme}://{host}"
    return f"{request.url.scheme}://{request.url.netloc}"
