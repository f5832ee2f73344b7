"""The edge of an import: read a snapshot, plan, carry the plan out, all in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from callhook import crypto
from callhook.directory_import.document import DirectoryFile
from callhook.directory_import.plan import (
    Action,
    CreateAccount,
    CreateApp,
    CreateExtension,
    Snapshot,
    UpdateAccount,
    UpdateApp,
    UpdateExtension,
    plan,
)
from callhook.domain.accounts import check_parent
from callhook.errors import RequestInvalid
from callhook.store import credentials, directory

if TYPE_CHECKING:
    from callhook.provisioning import Provisioning


@dataclass(frozen=True, slots=True)
class ImportedApp:
    """An app an import created; ``client_secret`` is set (once) when callhook generated it."""

    where: str
    account_id: int
    name: str
    client_id: str
    client_secret: str | None


@dataclass(frozen=True, slots=True)
class ImportResult:
    #: kind (plural, as in the file) -> {"created": n, "unchanged": n, "updated": n}
    counts: dict[str, dict[str, int]]
    created_apps: list[ImportedApp]
    changed: bool
    dry_run: bool


class _RollBack(Exception):
    def __init__(self, result: ImportResult) -> None:
        self.result = result


async def import_directory(
    prov: Provisioning, document: DirectoryFile, *, dry_run: bool = False
) -> ImportResult:
    """Make the database hold what ``document`` describes, in one transaction.

    Nothing is deleted. Every conflict with the database is reported (ImportInvalid) before
    anything changes; with ``dry_run`` the changes are made and then rolled back.
    """
    try:
        async with prov.engine.begin() as conn:
            snapshot = Snapshot(
                await directory.find_accounts(conn),
                await directory.list_extensions(conn),
                await credentials.list_apps(conn),
            )
            todo = plan(document, snapshot, crypto.verify_secret)
            created = await _apply(prov, conn, todo.actions)
            if dry_run:
                raise _RollBack(ImportResult(todo.counts, [], todo.changes, dry_run=True))
    except _RollBack as rolled_back:
        return rolled_back.result
    return ImportResult(todo.counts, created, todo.changes, dry_run=False)


async def _apply(
    prov: Provisioning, conn: AsyncConnection, actions: list[Action]
) -> list[ImportedApp]:
    new_ids: dict[str, int] = {}

    def resolve(ref: int | str) -> int:
        return new_ids[ref] if isinstance(ref, str) else ref

    created: list[ImportedApp] = []
    for action in actions:
        match action:
            case CreateAccount(key, kind, name, parent, code):
                parent_id = None if parent is None else resolve(parent)
                account = await prov.create_account_in(conn, kind, name, parent_id, code)
                new_ids[key] = account.id
            case UpdateAccount(account_id, name, parent):
                await _update_account(
                    conn, account_id, name, None if parent is None else resolve(parent)
                )
            case CreateExtension(owner, number, ext_type, name):
                await prov.create_extension_in(conn, resolve(owner), number, ext_type, name)
            case UpdateExtension(ext_id, owner_ref, ext_type, name):
                new_owner = await directory.get_account(conn, resolve(owner_ref))
                assert new_owner is not None
                await directory.update_extension(
                    conn, ext_id, ext_type=ext_type, name=name, owner=new_owner
                )
            case CreateApp(spec, account_ref):
                new = await prov.create_app_in(
                    conn,
                    resolve(account_ref),
                    spec.name,
                    spec.redirect_uri,
                    client_id=spec.client_id,
                    client_secret=spec.client_secret,
                )
                secret = None if spec.client_secret else new.client_secret
                app = new.app
                created.append(
                    ImportedApp(spec.where, app.account_id, app.name, app.client_id, secret)
                )
            case UpdateApp(app_id, name, redirect_uri, secret):
                await credentials.update_app(conn, app_id, name, redirect_uri)
                if secret is not None:
                    await credentials.set_app_secret(conn, app_id, crypto.hash_secret(secret))
    return created


async def _update_account(
    conn: AsyncConnection, account_id: int, name: str, parent_id: int | None
) -> None:
    """Rename an account and, given ``parent_id``, move it (and its subtree) there."""
    await directory.rename_account(conn, account_id, name)
    if parent_id is None:
        return
    account = await directory.get_account(conn, account_id)
    parent = await directory.get_account(conn, parent_id)
    assert account is not None
    assert parent is not None
    if problem := check_parent(account.kind, parent):
        raise RequestInvalid(f"Cannot move account {account_id}: {problem}.")
    await directory.move_account(conn, account, parent)
