"""The account hierarchy, extension numbers and who may manage what."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from callhook.errors import ExtensionInvalid, UserInvalid


class AccountKind(StrEnum):
    ADMIN = "admin"
    SERVICE_PROVIDER = "service-provider"
    ORGANIZATION = "organization"
    USER = "user"


#: the kind a parent must be, per child kind (admins have no parent)
PARENT_KIND: dict[AccountKind, AccountKind] = {
    AccountKind.SERVICE_PROVIDER: AccountKind.ADMIN,
    AccountKind.ORGANIZATION: AccountKind.SERVICE_PROVIDER,
    AccountKind.USER: AccountKind.ORGANIZATION,
}


class ExtensionType(StrEnum):
    PHONE_TERMINAL = "phone-terminal"
    QUEUE = "queue"
    CONFERENCE = "conference"
    IVR = "ivr"
    VOICEMAIL_CENTER = "voicemail-center"
    CALLBACK = "callback"
    CALLING_CARD = "calling-card"
    INTERCOM = "intercom"

    @property
    def takes_events(self) -> bool:
        return self in _EVENT_TYPES


_EVENT_TYPES = frozenset(
    {ExtensionType.PHONE_TERMINAL, ExtensionType.QUEUE, ExtensionType.CONFERENCE, ExtensionType.IVR}
)


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    kind: AccountKind
    name: str
    parent_id: int | None
    #: materialised path of ids from the root, e.g. "1/2/5/9"
    path: str
    #: organization code for organizations; None otherwise
    org_code: int | None = None

    @property
    def ancestor_ids(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.path.split("/"))

    def contains(self, path: str) -> bool:
        """True if the account at ``path`` is this account or below it."""
        return path == self.path or path.startswith(self.path + "/")

    def organization_id(self) -> int | None:
        """The organization this account is or belongs to, if any."""
        ids = self.ancestor_ids
        depth = {AccountKind.ORGANIZATION: 0, AccountKind.USER: 1}.get(self.kind)
        if depth is None:
            return None
        return ids[len(ids) - 1 - depth]


@dataclass(frozen=True, slots=True)
class Extension:
    id: int
    number: str
    type: ExtensionType
    name: str
    owner: Account
    org_code: int

    @property
    def extended(self) -> str:
        return format_extended(self.org_code, self.number)


def format_org_code(code: int) -> str:
    return f"{code:04d}"


def format_extended(org_code: int, short: str) -> str:
    return f"{format_org_code(org_code)}*{short}"


SHORT_NUMBER = re.compile(r"[0-9]{1,12}")
_EXTENDED = re.compile(r"([0-9]{1,9})\*([0-9]{1,12})")


@dataclass(frozen=True, slots=True)
class ExtensionRef:
    """An extension as written in a request: ``0003*210`` (org_code set) or ``210``."""

    short: str
    org_code: int | None = None


def parse_extension(text: str) -> ExtensionRef:
    if text == "@self":
        raise ExtensionInvalid("@self is not supported; name the extension, e.g. 0003*210.")
    if m := _EXTENDED.fullmatch(text):
        return ExtensionRef(short=m.group(2), org_code=int(m.group(1)))
    if SHORT_NUMBER.fullmatch(text):
        return ExtensionRef(short=text)
    raise ExtensionInvalid(
        "The extension must be an extended number such as 0003*210 or a short number such as 210."
    )


class UserRefKind(StrEnum):
    ME = "@me"
    VIEWER = "@viewer"
    OWNER = "@owner"
    ID = "id"


@dataclass(frozen=True, slots=True)
class UserRef:
    kind: UserRefKind
    text: str
    account_id: int | None = None


def parse_user_ref(text: str) -> UserRef:
    if text in ("@me", "@viewer", "@owner"):
        return UserRef(kind=UserRefKind(text), text=text)
    if re.fullmatch(r"[0-9]{1,18}", text):
        return UserRef(kind=UserRefKind.ID, text=text, account_id=int(text))
    raise UserInvalid("The user id must be @me, @viewer, @owner or a numeric account id.")


def may_manage(actor: Account, target: Account) -> bool:
    """Whether ``actor`` may manage what belongs to ``target`` (itself or its subtree)."""
    return actor.kind is AccountKind.ADMIN or actor.contains(target.path)


def check_parent(kind: AccountKind, parent: Account | None) -> str | None:
    """Why ``parent`` cannot hold an account of ``kind``, or None if it can."""
    want = PARENT_KIND.get(kind)
    if want is None:
        return None if parent is None else "an administrator has no parent"
    if parent is None:
        return f"a {kind.value} needs a parent {want.value}"
    if parent.kind is not want:
        return f"a {kind.value} must belong to a {want.value}, not to a {parent.kind.value}"
    return None
