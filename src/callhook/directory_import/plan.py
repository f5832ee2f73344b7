"""What an import changes: the directory file compared with a snapshot of the database.

Pure: the snapshot and a secret checker come in; a list of actions and the counts of created,
unchanged and updated things per kind come out, or ImportInvalid listing every conflict between
the file and the database. ``Provisioning.import_directory`` carries the actions out.

Accounts this import creates do not have ids yet; actions name them by a key (``Ref``) that the
executor maps to the new id once created. Actions are ordered so a parent comes before its
children.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from callhook.directory_import.document import (
    AppSpec,
    DirectoryFile,
    ImportInvalid,
    OrganizationSpec,
    ServiceProviderSpec,
    UserSpec,
)
from callhook.domain.accounts import Account, AccountKind, Extension, ExtensionType
from callhook.store.credentials import App

#: an existing account's id, or the key of an account created by the same import
Ref = int | str

KINDS = ("administrators", "service_providers", "organizations", "users", "extensions", "apps")
ADMIN_NAME = "Administrator"


@dataclass(frozen=True, slots=True)
class Snapshot:
    accounts: Sequence[Account]
    extensions: Sequence[Extension]
    apps: Sequence[App]


@dataclass(frozen=True, slots=True)
class CreateAccount:
    key: str
    kind: AccountKind
    name: str
    parent: Ref | None
    code: int | None = None


@dataclass(frozen=True, slots=True)
class UpdateAccount:
    """Rename an account, or move it under ``parent`` (None: it stays where it is)."""

    account_id: int
    name: str
    parent: Ref | None = None


@dataclass(frozen=True, slots=True)
class CreateExtension:
    owner: Ref
    number: str
    type: ExtensionType
    name: str


@dataclass(frozen=True, slots=True)
class UpdateExtension:
    extension_id: int
    owner: Ref
    type: ExtensionType
    name: str


@dataclass(frozen=True, slots=True)
class CreateApp:
    spec: AppSpec
    account: Ref


@dataclass(frozen=True, slots=True)
class UpdateApp:
    app_id: int
    name: str
    redirect_uri: str
    #: a new secret to store (its tokens are revoked), or None to keep the current one
    client_secret: str | None


Action = CreateAccount | UpdateAccount | CreateExtension | UpdateExtension | CreateApp | UpdateApp


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: {"created": 0, "unchanged": 0, "updated": 0} for k in KINDS}
    )

    def count(self, kind: str, outcome: str) -> None:
        self.counts[kind][outcome] += 1

    @property
    def changes(self) -> bool:
        return bool(self.actions)


class _Planner:
    def __init__(
        self, snapshot: Snapshot, secret_matches: Callable[[str, str], bool], doc: DirectoryFile
    ) -> None:
        self.plan = Plan()
        self.problems: list[str] = []
        self.secret_matches = secret_matches
        self.children: dict[int | None, list[Account]] = defaultdict(list)
        for account in snapshot.accounts:
            self.children[account.parent_id].append(account)
        self.accounts = {a.id: a for a in snapshot.accounts}
        self.orgs = {a.org_code: a for a in snapshot.accounts if a.org_code is not None}
        self.extensions = {(e.org_code, e.number): e for e in snapshot.extensions}
        self.apps = {a.client_id: a for a in snapshot.apps}
        self.apps_of: dict[int, list[App]] = defaultdict(list)
        claimed = {app.client_id for app in _all_apps(doc) if app.client_id}
        for app in snapshot.apps:
            if app.client_id not in claimed:
                self.apps_of[app.account_id].append(app)

    def describe(self, account_id: int) -> str:
        account = self.accounts.get(account_id)
        if account is None:
            return f"account {account_id}"
        return f"{account.kind.value} {account.name!r} (id {account_id})"

    def named_child(self, parent: Ref, kind: AccountKind, name: str, where: str) -> int | None:
        """The id of ``parent``'s one child of ``kind`` called ``name``, if there is one."""
        if isinstance(parent, str):
            return None
        found = [a for a in self.children[parent] if a.kind is kind and a.name == name]
        if len(found) > 1:
            ids = ", ".join(str(a.id) for a in found)
            self.problems.append(
                f"{where}.name: {len(found)} {kind.value}s called {name!r} exist under "
                f"{self.describe(parent)} (ids {ids}); rename or delete all but one first"
            )
        return found[0].id if found else None

    def account(
        self, kind: AccountKind, plural: str, key: str, name: str, parent: Ref, where: str
    ) -> Ref:
        existing = self.named_child(parent, kind, name, where)
        if existing is not None:
            self.plan.count(plural, "unchanged")
            return existing
        self.plan.actions.append(CreateAccount(key, kind, name, parent))
        self.plan.count(plural, "created")
        return key

    def administrator(self) -> Ref | None:
        admins = [a for a in self.children[None] if a.kind is AccountKind.ADMIN]
        if len(admins) > 1:
            self.problems.append(
                f"(top level): the database has {len(admins)} administrators; "
                "an import needs exactly one (or none, and it creates it)"
            )
            return None
        if admins:
            self.plan.count("administrators", "unchanged")
            return admins[0].id
        self.plan.actions.append(CreateAccount("admin", AccountKind.ADMIN, ADMIN_NAME, None))
        self.plan.count("administrators", "created")
        return "admin"

    def service_provider(self, spec: ServiceProviderSpec, admin: Ref) -> None:
        ref = self.account(
            AccountKind.SERVICE_PROVIDER,
            "service_providers",
            f"sp:{spec.name}",
            spec.name,
            admin,
            spec.where,
        )
        self.app_list(spec.apps, ref)
        for org in spec.organizations:
            self.organization(org, ref)

    def organization(self, spec: OrganizationSpec, sp: Ref) -> None:
        existing = self.orgs.get(spec.code)
        ref: Ref
        if existing is None:
            ref = f"org:{spec.code}"
            self.plan.actions.append(
                CreateAccount(ref, AccountKind.ORGANIZATION, spec.name, sp, spec.code)
            )
            self.plan.count("organizations", "created")
        else:
            ref = existing.id
            moved = sp != existing.parent_id
            if moved or spec.name != existing.name:
                self.plan.actions.append(
                    UpdateAccount(existing.id, spec.name, sp if moved else None)
                )
                self.plan.count("organizations", "updated")
            else:
                self.plan.count("organizations", "unchanged")
        self.app_list(spec.apps, ref)
        for user in spec.users:
            self.user(user, ref, spec.code)

    def user(self, spec: UserSpec, org: Ref, code: int) -> None:
        ref = self.account(
            AccountKind.USER, "users", f"user:{code}:{spec.name}", spec.name, org, spec.where
        )
        self.app_list(spec.apps, ref)
        for ext in spec.extensions:
            existing = self.extensions.get((code, ext.number))
            if existing is None:
                self.plan.actions.append(CreateExtension(ref, ext.number, ext.type, ext.name))
                self.plan.count("extensions", "created")
            elif (existing.owner.id, existing.type, existing.name) == (ref, ext.type, ext.name):
                self.plan.count("extensions", "unchanged")
            else:
                self.plan.actions.append(UpdateExtension(existing.id, ref, ext.type, ext.name))
                self.plan.count("extensions", "updated")

    def app_list(self, specs: Sequence[AppSpec], account: Ref) -> None:
        for spec in specs:
            self.app(spec, account)

    def app(self, spec: AppSpec, account: Ref) -> None:
        existing: App | None = None
        if spec.client_id is not None:
            existing = self.apps.get(spec.client_id)
            if existing is not None and existing.account_id != account:
                self.problems.append(
                    f"{spec.where}.client_id: {spec.client_id} is the app of "
                    f"{self.describe(existing.account_id)}; an import does not move apps"
                )
                return
        elif isinstance(account, int):
            same = [a for a in self.apps_of[account] if a.name == spec.name]
            if len(same) > 1:
                self.problems.append(
                    f"{spec.where}.name: {self.describe(account)} has {len(same)} apps called "
                    f"{spec.name!r}; give this one's client_id"
                )
                return
            existing = same[0] if same else None
        if existing is None:
            self.plan.actions.append(CreateApp(spec, account))
            self.plan.count("apps", "created")
            return
        new_secret = spec.client_secret
        if new_secret is not None and self.secret_matches(existing.secret_hash, new_secret):
            new_secret = None
        if (existing.name, existing.redirect_uri, new_secret) == (
            spec.name,
            spec.redirect_uri,
            None,
        ):
            self.plan.count("apps", "unchanged")
            return
        self.plan.actions.append(UpdateApp(existing.id, spec.name, spec.redirect_uri, new_secret))
        self.plan.count("apps", "updated")


def _all_apps(doc: DirectoryFile) -> list[AppSpec]:
    apps = list(doc.apps)
    for sp in doc.service_providers:
        apps.extend(sp.apps)
        for org in sp.organizations:
            apps.extend(org.apps)
            for user in org.users:
                apps.extend(user.apps)
    return apps


def plan(
    doc: DirectoryFile, snapshot: Snapshot, secret_matches: Callable[[str, str], bool]
) -> Plan:
    """The actions that make the database hold what ``doc`` describes (it never deletes)."""
    planner = _Planner(snapshot, secret_matches, doc)
    admin = planner.administrator()
    if admin is not None:
        planner.app_list(doc.apps, admin)
        for sp in doc.service_providers:
            planner.service_provider(sp, admin)
    if planner.problems:
        raise ImportInvalid(planner.problems)
    return planner.plan
