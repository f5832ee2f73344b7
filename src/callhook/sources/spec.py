"""Which PBX to follow and how: one ``SourceSpec`` per AMI or ESL link. Pure: no I/O.

The same spec comes from ``callhook source ami|esl`` options or from a source URL given to
``callhook serve --source`` (or ``CALLHOOK_SOURCES``)::

    ami://USER:SECRET@HOST:5038?org=3&name=asterisk
    esl://:PASSWORD@HOST:8021?org=3&name=freeswitch&format=json

Query parameters: ``org`` (organization code of the PBX's extensions, required), ``name``
(the callhook source, default ``asterisk``/``freeswitch``), ``extensions`` (a regular
expression for the endpoints that are extensions, default all digits), ``max_call_age`` (e.g.
``4h``, ``90m``), ``format`` (ESL only: ``plain`` or ``json``). Secrets in the URL are
percent-encoded (``p%40ss`` for ``p@ss``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

from callhook.errors import ConfigError
from callhook.sources.tracking import (
    DEFAULT_EXTENSION_PATTERN,
    DEFAULT_MAX_CALL_AGE,
    Numbering,
)

KINDS = {"ami": ("asterisk", 5038), "esl": ("freeswitch", 8021)}
FORMATS = ("plain", "json")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_AGE = re.compile(r"(\d+)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PARAMS = {"org", "name", "extensions", "max_call_age", "format"}


@dataclass(frozen=True, slots=True)
class SourceSpec:
    #: "ami" or "esl"
    kind: str
    host: str
    port: int
    #: AMI user (empty for ESL)
    username: str
    #: AMI secret or ESL password; never printed
    secret: str = ""
    name: str = ""
    org: int = 0
    extension_pattern: str = DEFAULT_EXTENSION_PATTERN
    max_call_age: timedelta = DEFAULT_MAX_CALL_AGE
    #: ESL event format
    event_format: str = "plain"

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def numbering(self) -> Numbering:
        return Numbering(self.org, self.extension_pattern)

    def describe(self) -> str:
        """For logs and status: everything but the secret."""
        who = f"{self.username}@" if self.username else ""
        return f"{self.kind}://{who}{self.target} (source {self.name}, org {self.org})"


def parse_age(text: str, where: str = "--max-call-age") -> timedelta:
    """``90s``, ``30m``, ``4h``, ``1d`` or plain seconds; at least one minute."""
    found = _AGE.fullmatch(text.strip().lower())
    if not found:
        raise ConfigError(f"{where}={text!r} is not a duration; write e.g. 4h, 90m or 3600")
    age = timedelta(seconds=int(found[1]) * _UNITS[found[2]])
    if not timedelta(minutes=1) <= age <= timedelta(days=30):
        raise ConfigError(f"{where}={text!r} is out of range; use 1m to 30d")
    return age


def make_spec(
    kind: str,
    host: str,
    port: int | None,
    *,
    username: str = "",
    secret: str = "",
    name: str | None = None,
    org: int | None,
    extension_pattern: str = DEFAULT_EXTENSION_PATTERN,
    max_call_age: timedelta = DEFAULT_MAX_CALL_AGE,
    event_format: str = "plain",
    where: str = "",
) -> SourceSpec:
    """A checked spec; ``where`` prefixes error messages (e.g. the URL's position)."""
    if kind not in KINDS:
        raise ConfigError(f"{where}unknown source kind {kind!r}; use ami or esl")
    default_name, default_port = KINDS[kind]
    if not host:
        raise ConfigError(f"{where}the PBX host is missing")
    if org is None:
        raise ConfigError(
            f"{where}the organization code is missing: give the org whose extended numbers the "
            "PBX's extensions are (--org 3 for 0003*210; org=3 in a source URL)"
        )
    if not 0 <= org <= 999_999_999:
        raise ConfigError(f"{where}organization code {org} is out of range (0 to 999999999)")
    chosen_port = default_port if port is None else port
    if not 1 <= chosen_port <= 65535:
        raise ConfigError(f"{where}port {chosen_port} is out of range (1 to 65535)")
    name = name or default_name
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}source name {name!r}: use 1 to 100 letters, digits, '.', '_' or '-'"
        )
    try:
        re.compile(extension_pattern)
    except re.error as exc:
        raise ConfigError(
            f"{where}the extension pattern {extension_pattern!r} is not a regular expression: {exc}"
        ) from None
    if event_format not in FORMATS:
        raise ConfigError(f"{where}format {event_format!r}: use plain or json")
    if kind == "ami" and not username:
        raise ConfigError(f"{where}the AMI username is missing (manager.conf's [user])")
    if not secret:
        what = "AMI secret" if kind == "ami" else "ESL password"
        raise ConfigError(f"{where}the {what} is missing")
    return SourceSpec(
        kind,
        host,
        chosen_port,
        username,
        secret,
        name,
        org,
        extension_pattern,
        max_call_age,
        event_format,
    )


def parse_source_url(text: str, where: str = "") -> SourceSpec:
    """``ami://user:secret@host:5038?org=3`` or ``esl://:password@host:8021?org=3``."""
    parts = urlsplit(text.strip())
    hint = f"{where}source URL {_redacted(text)!r}: "
    if parts.scheme not in KINDS:
        raise ConfigError(
            hint + "use ami://USER:SECRET@HOST:5038?org=N or esl://:PASSWORD@HOST:8021?org=N"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(hint + "the port is not a number from 1 to 65535") from None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _PARAMS)
    if unknown:
        raise ConfigError(hint + f"unknown parameter {unknown[0]!r} ({', '.join(sorted(_PARAMS))})")
    org_text = query.get("org")
    if org_text is not None and not org_text.isdigit():
        raise ConfigError(hint + f"org={org_text!r} must be the organization code, e.g. org=3")
    age = query.get("max_call_age")
    return make_spec(
        parts.scheme,
        parts.hostname or "",
        port,
        username=unquote(parts.username or ""),
        secret=unquote(parts.password or ""),
        name=query.get("name"),
        org=int(org_text) if org_text is not None else None,
        extension_pattern=query.get("extensions") or DEFAULT_EXTENSION_PATTERN,
        max_call_age=parse_age(age, hint + "max_call_age") if age else DEFAULT_MAX_CALL_AGE,
        event_format=query.get("format") or "plain",
        where=hint,
    )


def parse_source_urls(text: str) -> list[SourceSpec]:
    """``CALLHOOK_SOURCES``: source URLs separated by white space."""
    specs = [
        parse_source_url(url, f"CALLHOOK_SOURCES #{i}: ") for i, url in enumerate(text.split(), 1)
    ]
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"CALLHOOK_SOURCES: two sources are named {name!r}; add name=...")
    return specs


def _redacted(url: str) -> str:
    """The URL without its secret."""
    parts = urlsplit(url.strip())
    if parts.password is None:
        return url.strip()
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
