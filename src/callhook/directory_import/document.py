"""The directory file: parse JSON or YAML text and validate it into a typed document.

Pure: text in, ``DirectoryFile`` out, or ``ImportInvalid`` listing every problem with its
location (``service_providers[0].organizations[1].code: must be ...``). The format is
documented in docs/reference/directory.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from callhook.domain.accounts import SHORT_NUMBER, ExtensionType
from callhook.errors import ServiceError

T = TypeVar("T")

MAX_NAME = 200
MAX_URI = 2048
MIN_SECRET = 16
_CLIENT_ID = re.compile(r"[!-~]{8,64}")  # printable ASCII, no spaces
_TYPES = tuple(t.value for t in ExtensionType)


class ImportInvalid(ServiceError):
    """The file (or what it asks of the database) has problems; nothing was changed."""

    status = 400
    code = "request_invalid"
    default_message = "The directory file is invalid."

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{count}, nothing was changed:\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class AppSpec:
    where: str
    name: str
    client_id: str | None = None
    client_secret: str | None = None
    redirect_uri: str = ""


@dataclass(frozen=True, slots=True)
class ExtensionSpec:
    where: str
    number: str
    type: ExtensionType
    name: str = ""


@dataclass(frozen=True, slots=True)
class UserSpec:
    where: str
    name: str
    apps: tuple[AppSpec, ...] = ()
    extensions: tuple[ExtensionSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class OrganizationSpec:
    where: str
    name: str
    code: int
    apps: tuple[AppSpec, ...] = ()
    users: tuple[UserSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceProviderSpec:
    where: str
    name: str
    apps: tuple[AppSpec, ...] = ()
    organizations: tuple[OrganizationSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class DirectoryFile:
    apps: tuple[AppSpec, ...] = ()
    service_providers: tuple[ServiceProviderSpec, ...] = ()


# --- parsing ------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``0210`` as the octal number 136; keep such scalars as the text written."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(node.value).replace("_", "")
    if re.fullmatch(r"0[0-9]+", text):
        return text
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def format_of(file_name: str) -> str:
    """``json`` or ``yaml`` by the file's extension."""
    lower = file_name.lower()
    if lower.endswith(".json"):
        return "json"
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    raise ImportInvalid([f"{file_name}: the name must end in .json, .yaml or .yml"])


def parse_text(text: str, fmt: str) -> Any:
    """The data in ``text`` (JSON or YAML); a syntax error becomes ImportInvalid."""
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportInvalid([f"line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "YAML"
        raise ImportInvalid([f"{where}: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ImportInvalid([f"YAML: {exc}"]) from None


def load(text: str, file_name: str) -> DirectoryFile:
    """Parse and validate the text of the file called ``file_name``."""
    return validate(parse_text(text, format_of(file_name)))


# --- validation ---------------------------------------------------------------------------


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.sp_names: dict[str, str] = {}
        self.org_codes: dict[int, str] = {}
        self.client_ids: dict[str, str] = {}

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def first_seen(self, seen: dict[Any, str], key: Any, where: str, what: str) -> None:
        if key in seen:
            self.fail(where, f"{what} is already used at {seen[key]}")
        else:
            seen[key] = where

    def mapping(self, value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping with keys {', '.join(keys)}")
            return None
        for key in value:
            if key not in keys:
                self.fail(
                    f"{where}.{key}" if where else str(key), f"unknown key (use {', '.join(keys)})"
                )
        return value

    def items(
        self, data: dict[str, Any], key: str, where: str, each: Callable[[Any, str], T | None]
    ) -> tuple[T, ...]:
        path = f"{where}.{key}" if where else key
        value = data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(path, "must be a list")
            return ()
        checked = (each(item, f"{path}[{i}]") for i, item in enumerate(value))
        return tuple(c for c in checked if c is not None)

    def text(
        self, data: dict[str, Any], key: str, where: str, *, required: bool, limit: int = MAX_NAME
    ) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.fail(f"{where}.{key}", "is required")
            return None
        if not isinstance(value, str):
            self.fail(f"{where}.{key}", "must be a string")
            return None
        value = value.strip()
        if required and not value:
            self.fail(f"{where}.{key}", "must not be empty")
            return None
        if len(value) > limit:
            self.fail(f"{where}.{key}", f"must be at most {limit} characters")
            return None
        return value

    def app(self, value: Any, where: str, account: str, names: dict[str, str]) -> AppSpec | None:
        data = self.mapping(value, where, ("name", "client_id", "client_secret", "redirect_uri"))
        if data is None:
            return None
        name = self.text(data, "name", where, required=True)
        client_id = data.get("client_id")
        if client_id is not None:
            if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
                self.fail(f"{where}.client_id", "must be 8 to 64 printable characters, no spaces")
                client_id = None
            else:
                self.first_seen(self.client_ids, client_id, f"{where}.client_id", "this client_id")
        secret = data.get("client_secret")
        if secret is not None and (not isinstance(secret, str) or len(secret) < MIN_SECRET):
            self.fail(
                f"{where}.client_secret", f"must be a string of at least {MIN_SECRET} characters"
            )
            secret = None
        redirect_uri = self.text(data, "redirect_uri", where, required=False, limit=MAX_URI)
        if name is None:
            return None
        if client_id is None and "client_id" not in data:
            self.first_seen(names, name, f"{where}.name", f"the app name {name!r} of {account}")
        return AppSpec(where, name, client_id, secret, redirect_uri or "")

    def apps(self, data: dict[str, Any], where: str, account: str) -> tuple[AppSpec, ...]:
        names: dict[str, str] = {}
        return self.items(data, "apps", where, lambda v, w: self.app(v, w, account, names))

    def extension(self, value: Any, where: str, numbers: dict[str, str]) -> ExtensionSpec | None:
        data = self.mapping(value, where, ("number", "type", "name"))
        if data is None:
            return None
        number = data.get("number")
        if isinstance(number, int) and not isinstance(number, bool):
            number = str(number)
        if number is None:
            self.fail(f"{where}.number", "is required")
        elif not isinstance(number, str) or not SHORT_NUMBER.fullmatch(number):
            self.fail(f"{where}.number", 'must be 1 to 12 digits, e.g. "210"')
            number = None
        else:
            self.first_seen(numbers, number, f"{where}.number", f"extension {number}")
        raw_type = data.get("type")
        ext_type = None
        if raw_type is None:
            self.fail(f"{where}.type", "is required")
        elif raw_type not in _TYPES:
            self.fail(f"{where}.type", f"must be one of {', '.join(_TYPES)}")
        else:
            ext_type = ExtensionType(raw_type)
        name = self.text(data, "name", where, required=False)
        if number is None or ext_type is None:
            return None
        return ExtensionSpec(where, number, ext_type, name or "")

    def user(
        self, value: Any, where: str, names: dict[str, str], numbers: dict[str, str]
    ) -> UserSpec | None:
        data = self.mapping(value, where, ("name", "apps", "extensions"))
        if data is None:
            return None
        name = self.text(data, "name", where, required=True)
        if name is not None:
            self.first_seen(names, name, f"{where}.name", f"the user name {name!r}")
        apps = self.apps(data, where, f"user {name!r}")
        exts = self.items(data, "extensions", where, lambda v, w: self.extension(v, w, numbers))
        return None if name is None else UserSpec(where, name, apps, exts)

    def code(self, data: dict[str, Any], where: str) -> int | None:
        value = data.get("code")
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if value is None:
            self.fail(
                f"{where}.code", "is required (the organization's number, e.g. 3 for 0003*210)"
            )
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 999_999_999:
            self.fail(f"{where}.code", "must be a whole number from 1 to 999999999")
            return None
        self.first_seen(self.org_codes, value, f"{where}.code", f"organization code {value}")
        return value

    def organization(self, value: Any, where: str) -> OrganizationSpec | None:
        data = self.mapping(value, where, ("name", "code", "apps", "users"))
        if data is None:
            return None
        name = self.text(data, "name", where, required=True)
        code = self.code(data, where)
        apps = self.apps(data, where, f"organization {name!r}")
        user_names: dict[str, str] = {}
        numbers: dict[str, str] = {}
        users = self.items(data, "users", where, lambda v, w: self.user(v, w, user_names, numbers))
        if name is None or code is None:
            return None
        return OrganizationSpec(where, name, code, apps, users)

    def service_provider(self, value: Any, where: str) -> ServiceProviderSpec | None:
        data = self.mapping(value, where, ("name", "apps", "organizations"))
        if data is None:
            return None
        name = self.text(data, "name", where, required=True)
        if name is not None:
            self.first_seen(
                self.sp_names, name, f"{where}.name", f"the service provider name {name!r}"
            )
        apps = self.apps(data, where, f"service provider {name!r}")
        orgs = self.items(data, "organizations", where, self.organization)
        return None if name is None else ServiceProviderSpec(where, name, apps, orgs)


def validate(data: Any) -> DirectoryFile:
    """The typed document, or ImportInvalid listing every problem found."""
    checker = _Checker()
    if data is None:
        raise ImportInvalid(["the file is empty"])
    top = checker.mapping(data, "", ("version", "apps", "service_providers"))
    if top is None:
        raise ImportInvalid(["(top level): must be a mapping with service_providers and/or apps"])
    version = top.get("version", 1)
    if version != 1 or isinstance(version, bool):
        checker.fail("version", "must be 1 (the only version of this format)")
    apps = checker.apps(top, "", "the administrator")
    sps = checker.items(top, "service_providers", "", checker.service_provider)
    if checker.problems:
        raise ImportInvalid(checker.problems)
    return DirectoryFile(apps=apps, service_providers=sps)
