"""Queries for apps (OAuth clients) and their access tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from callhook.domain.accounts import Account
from callhook.store.directory import account_from, find_accounts
from callhook.store.tables import accounts, apps, authorization_codes, tokens


@dataclass(frozen=True, slots=True)
class App:
    id: int
    client_id: str
    secret_hash: str
    account_id: int
    name: str
    redirect_uri: str
    created: datetime


@dataclass(frozen=True, slots=True)
class TokenRecord:
    app_id: int
    account_id: int
    scope: str
    expires_at: datetime
    revoked: bool


def _app(row: Any) -> App:
    return App(
        row.id,
        row.client_id,
        row.secret_hash,
        row.account_id,
        row.name,
        row.redirect_uri,
        row.created,
    )


async def insert_app(
    conn: AsyncConnection,
    *,
    client_id: str,
    secret_hash: str,
    account: Account,
    name: str,
    redirect_uri: str,
    now: datetime,
) -> App:
    result = await conn.execute(
        insert(apps).values(
            client_id=client_id,
            secret_hash=secret_hash,
            account_id=account.id,
            name=name,
            redirect_uri=redirect_uri,
            created=now,
        )
    )
    new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    return App(new_id, client_id, secret_hash, account.id, name, redirect_uri, now)


async def get_app(conn: AsyncConnection, client_id: str) -> App | None:
    row = (await conn.execute(select(apps).where(apps.c.client_id == client_id))).first()
    return _app(row) if row else None


async def list_apps(conn: AsyncConnection, under: Account | None = None) -> list[App]:
    query = select(apps).order_by(apps.c.id)
    if under is not None:
        ids = [a.id for a in await find_accounts(conn, under=under)]
        query = query.where(apps.c.account_id.in_(ids))
    return [_app(r) for r in await conn.execute(query)]


async def set_app_secret(conn: AsyncConnection, app_id: int, secret_hash: str) -> None:
    await conn.execute(update(apps).where(apps.c.id == app_id).values(secret_hash=secret_hash))
    await conn.execute(update(tokens).where(tokens.c.app_id == app_id).values(revoked=True))


async def update_app(conn: AsyncConnection, app_id: int, name: str, redirect_uri: str) -> None:
    await conn.execute(
        update(apps).where(apps.c.id == app_id).values(name=name, redirect_uri=redirect_uri)
    )


async def delete_app(conn: AsyncConnection, app_id: int) -> None:
    await conn.execute(delete(apps).where(apps.c.id == app_id))


async def insert_token(
    conn: AsyncConnection,
    *,
    token_hash: str,
    app: App,
    scope: str,
    expires_at: datetime,
    now: datetime,
    account_id: int | None = None,
    kind: str = "access",
) -> None:
    """Store a token (only its hash); it acts as ``account_id``, by default the app's account."""
    await conn.execute(
        insert(tokens).values(
            token_hash=token_hash,
            app_id=app.id,
            account_id=account_id or app.account_id,
            scope=scope,
            kind=kind,
            expires_at=expires_at,
            revoked=False,
            created=now,
        )
    )


#: built once: a statement's cache key is memoized, so each lookup only binds the values
_FIND_TOKEN = (
    select(
        tokens,
        accounts.c.kind.label("account_kind"),
        accounts.c.name,
        accounts.c.parent_id,
        accounts.c.path,
        accounts.c.org_code,
    )
    .select_from(tokens.join(accounts, accounts.c.id == tokens.c.account_id))
    .where(tokens.c.token_hash == bindparam("token_hash"), tokens.c.kind == bindparam("kind"))
)


async def find_token(
    conn: AsyncConnection, token_hash: str, kind: str = "access"
) -> tuple[TokenRecord, Account] | None:
    """The token and its account, found by the token's hash (one indexed lookup)."""
    row = (await conn.execute(_FIND_TOKEN, {"token_hash": token_hash, "kind": kind})).first()
    if row is None:
        return None
    record = TokenRecord(row.app_id, row.account_id, row.scope, row.expires_at, row.revoked)
    return record, account_from(row, id_key="account_id", kind_key="account_kind")


async def revoke_token(conn: AsyncConnection, token_hash: str, app_id: int) -> bool:
    result = await conn.execute(
        update(tokens)
        .where(tokens.c.token_hash == token_hash, tokens.c.app_id == app_id)
        .values(revoked=True)
    )
    return bool(result.rowcount)


async def purge_expired(conn: AsyncConnection, app_id: int, before: datetime) -> None:
    """Forget the app's tokens and codes that expired before ``before`` (uses the app index)."""
    await conn.execute(
        delete(tokens).where(tokens.c.app_id == app_id, tokens.c.expires_at < before)
    )
    await conn.execute(
        delete(authorization_codes).where(
            authorization_codes.c.app_id == app_id, authorization_codes.c.expires_at < before
        )
    )


@dataclass(frozen=True, slots=True)
class CodeRecord:
    app_id: int
    account_id: int
    redirect_uri: str
    scope: str
    expires_at: datetime


async def insert_code(
    conn: AsyncConnection,
    *,
    code_hash: str,
    app: App,
    account: Account,
    redirect_uri: str,
    scope: str,
    expires_at: datetime,
    now: datetime,
) -> None:
    await conn.execute(
        insert(authorization_codes).values(
            code_hash=code_hash,
            app_id=app.id,
            account_id=account.id,
            redirect_uri=redirect_uri,
            scope=scope,
            expires_at=expires_at,
            used=False,
            created=now,
        )
    )


async def take_code(conn: AsyncConnection, code_hash: str) -> CodeRecord | None:
    """Mark an unused code used and return it; None if unknown or already used (single use)."""
    claimed = await conn.execute(
        update(authorization_codes)
        .where(authorization_codes.c.code_hash == code_hash, authorization_codes.c.used.is_(False))
        .values(used=True)
    )
    if not claimed.rowcount:
        return None
    row = (
        await conn.execute(
            select(authorization_codes).where(authorization_codes.c.code_hash == code_hash)
        )
    ).one()
    return CodeRecord(row.app_id, row.account_id, row.redirect_uri, row.scope, row.expires_at)


async def revoke_by_hash(conn: AsyncConnection, token_hash: str) -> None:
    await conn.execute(update(tokens).where(tokens.c.token_hash == token_hash).values(revoked=True))


async def find_sign_in(conn: AsyncConnection, login: str) -> tuple[Account, str] | None:
    """The account that signs in with ``login``, and its password hash."""
    row = (await conn.execute(select(accounts).where(accounts.c.login == login))).first()
    if row is None or not row.password_hash:
        return None
    return account_from(row), str(row.password_hash)


async def set_sign_in(
    conn: AsyncConnection, account_id: int, login: str | None, password_hash: str | None
) -> None:
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(login=login, password_hash=password_hash)
    )
