"""Use cases for operators: accounts, extensions, apps and the first-start bootstrap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callhook import crypto
from callhook.directory_import import DirectoryFile
from callhook.directory_import.apply import ImportResult, import_directory
from callhook.domain.accounts import (
    SHORT_NUMBER,
    Account,
    AccountKind,
    Extension,
    ExtensionType,
    check_parent,
    parse_extension,
)
from callhook.errors import Conflict, NotFound, RequestInvalid
from callhook.service import utcnow
from callhook.store import credentials, directory


@dataclass(frozen=True, slots=True)
class NewApp:
    """An app just created or re-keyed: the only time its secret is known in clear."""

    app: credentials.App
    client_secret: str


class Provisioning:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    # --- accounts --------------------------------------------------------------------------

    async def create_account(
        self,
        kind: AccountKind,
        name: str,
        parent_id: int | None = None,
        org_code: int | None = None,
    ) -> Account:
        async with self.engine.begin() as conn:
            return await self.create_account_in(conn, kind, name, parent_id, org_code)

    async def create_account_in(
        self,
        conn: AsyncConnection,
        kind: AccountKind,
        name: str,
        parent_id: int | None,
        org_code: int | None,
    ) -> Account:
        name = name.strip()
        if not name or len(name) > 200:
            raise RequestInvalid("The name must be 1 to 200 characters.")
        parent = None
        if parent_id is not None:
            parent = await directory.get_account(conn, parent_id)
            if parent is None:
                raise NotFound(f"There is no account with id {parent_id}.")
        if kind is AccountKind.SERVICE_PROVIDER and parent is None:
            parent = await self._only_admin(conn)
        if problem := check_parent(kind, parent):
            raise RequestInvalid(f"Cannot create it: {problem}.")
        if kind is AccountKind.ORGANIZATION:
            if org_code is None:
                org_code = await directory.next_org_code(conn)
            elif not 1 <= org_code <= 999_999_999:
                raise RequestInvalid("The organization code must be from 1 to 999999999.")
        elif org_code is not None:
            raise RequestInvalid("Only organizations have a code.")
        return await directory.insert_account(
            conn, kind=kind, name=name, parent=parent, org_code=org_code, now=self.clock()
        )

    async def _only_admin(self, conn: AsyncConnection) -> Account:
        admins = await directory.find_accounts(conn, kind=AccountKind.ADMIN)
        if not admins:
            raise RequestInvalid(
                "There is no administrator yet; start `callhook serve` once, or create one "
                "with `callhook admin administrator create NAME`."
            )
        if len(admins) != 1:
            raise RequestInvalid(
                "Name the parent administrator with --parent "
                f"(there are {len(admins)} administrators)."
            )
        return admins[0]

    async def list_accounts(self, kind: AccountKind | None = None) -> list[Account]:
        async with self.engine.connect() as conn:
            return await directory.find_accounts(conn, kind=kind)

    async def get_account(self, account_id: int) -> Account:
        async with self.engine.connect() as conn:
            found = await directory.get_account(conn, account_id)
        if found is None:
            raise NotFound(f"There is no account with id {account_id}.")
        return found

    async def delete_account(self, account_id: int, *, cascade: bool = False) -> Account:
        async with self.engine.begin() as conn:
            account = await directory.get_account(conn, account_id)
            if account is None:
                raise NotFound(f"There is no account with id {account_id}.")
            below = await directory.count_children(conn, account)
            if below and not cascade:
                raise Conflict(
                    f"Account {account_id} has {below} account(s) below it; "
                    "pass --cascade to delete them all with their extensions and apps."
                )
            await directory.delete_account(conn, account_id)
        return account

    async def set_sign_in(
        self, account_id: int, login: str | None, password: str | None
    ) -> Account:
        """Let the account sign in (OAuth authorization-code grant); None and None removes it."""
        if login is not None:
            login = login.strip()
            if not 1 <= len(login) <= 100 or not login.isprintable() or " " in login:
                raise RequestInvalid("A login must be 1 to 100 printable characters, no spaces.")
            if password is None or len(password) < 10:
                raise RequestInvalid("A password must be at least 10 characters.")
        async with self.engine.begin() as conn:
            account = await directory.get_account(conn, account_id)
            if account is None:
                raise NotFound(f"There is no account with id {account_id}.")
            if login is not None:
                taken = await credentials.find_sign_in(conn, login)
                if taken is not None and taken[0].id != account_id:
                    raise Conflict(f"The login {login!r} is taken by account {taken[0].id}.")
            digest = crypto.hash_secret(password) if login and password else None
            await credentials.set_sign_in(conn, account_id, login, digest)
        return account

    # --- extensions ------------------------------------------------------------------------

    async def create_extension(
        self, owner_id: int, number: str, ext_type: ExtensionType, name: str = ""
    ) -> Extension:
        async with self.engine.begin() as conn:
            return await self.create_extension_in(conn, owner_id, number, ext_type, name)

    async def create_extension_in(
        self,
        conn: AsyncConnection,
        owner_id: int,
        number: str,
        ext_type: ExtensionType,
        name: str,
    ) -> Extension:
        if not SHORT_NUMBER.fullmatch(number):
            raise RequestInvalid(f"Extension number {number!r} must be 1 to 12 digits, e.g. 210.")
        owner = await directory.get_account(conn, owner_id)
        if owner is None:
            raise NotFound(f"There is no account with id {owner_id}.")
        if owner.kind is not AccountKind.USER:
            raise RequestInvalid(
                f"Extensions belong to users; account {owner_id} is a {owner.kind.value}."
            )
        org_id = owner.organization_id()
        assert org_id is not None
        org = await directory.get_account(conn, org_id)
        assert org is not None
        return await directory.insert_extension(
            conn,
            owner=owner,
            org=org,
            number=number,
            ext_type=ext_type,
            name=name,
            now=self.clock(),
        )

    async def list_extensions(self, under_id: int | None = None) -> list[Extension]:
        async with self.engine.connect() as conn:
            under = await directory.get_account(conn, under_id) if under_id else None
            if under_id and under is None:
                raise NotFound(f"There is no account with id {under_id}.")
            return await directory.list_extensions(conn, under)

    async def find_extension(self, extended: str) -> Extension:
        ref = parse_extension(extended)
        if ref.org_code is None:
            raise RequestInvalid(f"Give the extended number, e.g. 0003*{ref.short}.")
        async with self.engine.connect() as conn:
            found = await directory.find_extension(conn, ref.org_code, ref.short)
        if found is None:
            raise NotFound(f"There is no extension {extended}.")
        return found

    async def delete_extension(self, extended: str) -> Extension:
        ext = await self.find_extension(extended)
        async with self.engine.begin() as conn:
            await directory.delete_extensions(conn, [ext.id])
        return ext

    # --- apps ------------------------------------------------------------------------------

    async def create_app(
        self,
        account_id: int,
        name: str,
        redirect_uri: str = "",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> NewApp:
        async with self.engine.begin() as conn:
            return await self.create_app_in(
                conn,
                account_id,
                name,
                redirect_uri,
                client_id=client_id,
                client_secret=client_secret,
            )

    async def create_app_in(
        self,
        conn: AsyncConnection,
        account_id: int,
        name: str,
        redirect_uri: str = "",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> NewApp:
        account = await directory.get_account(conn, account_id)
        if account is None:
            raise NotFound(f"There is no account with id {account_id}.")
        client_id = client_id or crypto.new_client_id()
        if not 8 <= len(client_id) <= 64 or not client_id.isprintable() or " " in client_id:
            raise RequestInvalid("A client id must be 8 to 64 printable characters, no spaces.")
        if client_secret is not None and len(client_secret) < 16:
            raise RequestInvalid("A client secret must be at least 16 characters.")
        if await credentials.get_app(conn, client_id) is not None:
            raise Conflict(f"An app with client id {client_id} already exists.")
        secret = client_secret or crypto.new_client_secret()
        app = await credentials.insert_app(
            conn,
            client_id=client_id,
            secret_hash=crypto.hash_secret(secret),
            account=account,
            name=name.strip() or "app",
            redirect_uri=redirect_uri,
            now=self.clock(),
        )
        return NewApp(app=app, client_secret=secret)

    async def list_apps(self) -> list[credentials.App]:
        async with self.engine.connect() as conn:
            return await credentials.list_apps(conn)

    async def _app(self, conn: AsyncConnection, client_id: str) -> credentials.App:
        app = await credentials.get_app(conn, client_id)
        if app is None:
            raise NotFound(f"There is no app with client id {client_id}.")
        return app

    async def rotate_secret(self, client_id: str) -> NewApp:
        """A new secret for the app; every token it holds is revoked."""
        secret = crypto.new_client_secret()
        async with self.engine.begin() as conn:
            app = await self._app(conn, client_id)
            await credentials.set_app_secret(conn, app.id, crypto.hash_secret(secret))
        return NewApp(app=app, client_secret=secret)

    async def delete_app(self, client_id: str) -> credentials.App:
        async with self.engine.begin() as conn:
            app = await self._app(conn, client_id)
            await credentials.delete_app(conn, app.id)
        return app

    # --- first start -----------------------------------------------------------------------

    async def bootstrap(self) -> NewApp | None:
        """On an empty database: an Administrator and an app for it. None if not empty."""
        async with self.engine.begin() as conn:
            if await directory.find_accounts(conn, kind=AccountKind.ADMIN):
                return None
            admin = await directory.insert_account(
                conn,
                kind=AccountKind.ADMIN,
                name="Administrator",
                parent=None,
                org_code=None,
                now=self.clock(),
            )
            return await self.create_app_in(conn, admin.id, "bootstrap admin app")

    # --- import ----------------------------------------------------------------------------

    async def import_directory(
        self, document: DirectoryFile, *, dry_run: bool = False
    ) -> ImportResult:
        """Make the database hold what ``document`` describes, in one transaction (never
        deleting); see callhook.directory_import.apply."""
        return await import_directory(self, document, dry_run=dry_run)
