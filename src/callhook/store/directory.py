"""Queries for accounts and extensions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from callhook.domain.accounts import Account, AccountKind, Extension, ExtensionType
from callhook.errors import Conflict
from callhook.store.tables import accounts, extensions


def account_from(row: Any, *, id_key: str = "id", kind_key: str = "kind") -> Account:
    """An Account from a row holding the accounts columns (id and kind possibly relabelled)."""
    return Account(
        id=getattr(row, id_key),
        kind=AccountKind(getattr(row, kind_key)),
        name=row.name,
        parent_id=row.parent_id,
        path=row.path,
        org_code=row.org_code,
    )


async def get_account(conn: AsyncConnection, account_id: int) -> Account | None:
    row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
    return account_from(row) if row else None


async def find_accounts(
    conn: AsyncConnection,
    *,
    kind: AccountKind | None = None,
    under: Account | None = None,
    name: str | None = None,
) -> list[Account]:
    query = select(accounts).order_by(accounts.c.id)
    if kind is not None:
        query = query.where(accounts.c.kind == kind.value)
    if under is not None and under.kind is not AccountKind.ADMIN:
        query = query.where(
            (accounts.c.path == under.path) | accounts.c.path.startswith(under.path + "/")
        )
    if name is not None:
        query = query.where(accounts.c.name == name)
    return [account_from(r) for r in await conn.execute(query)]


async def get_org_by_code(conn: AsyncConnection, code: int) -> Account | None:
    row = (await conn.execute(select(accounts).where(accounts.c.org_code == code))).first()
    return account_from(row) if row else None


async def insert_account(
    conn: AsyncConnection,
    *,
    kind: AccountKind,
    name: str,
    parent: Account | None,
    org_code: int | None,
    now: datetime,
) -> Account:
    try:
        result = await conn.execute(
            insert(accounts).values(
                kind=kind.value,
                name=name,
                parent_id=parent.id if parent else None,
                path="",
                org_code=org_code,
                created=now,
            )
        )
    except IntegrityError:
        raise Conflict(f"organization code {org_code} is already taken") from None
    new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    path = f"{parent.path}/{new_id}" if parent else str(new_id)
    await conn.execute(update(accounts).where(accounts.c.id == new_id).values(path=path))
    return Account(new_id, kind, name, parent.id if parent else None, path, org_code)


async def rename_account(conn: AsyncConnection, account_id: int, name: str) -> None:
    await conn.execute(update(accounts).where(accounts.c.id == account_id).values(name=name))


async def move_account(conn: AsyncConnection, account: Account, parent: Account) -> None:
    """Put ``account`` (and its subtree) below ``parent``, rewriting the materialised paths."""
    old, new = account.path, f"{parent.path}/{account.id}"
    await conn.execute(
        update(accounts).where(accounts.c.id == account.id).values(parent_id=parent.id)
    )
    tail = func.substr(accounts.c.path, len(old) + 1, type_=String)
    await conn.execute(
        update(accounts)
        .where((accounts.c.path == old) | accounts.c.path.startswith(old + "/"))
        .values(path=literal(new, String) + tail)
    )


async def next_org_code(conn: AsyncConnection) -> int:
    current = (await conn.execute(select(func.max(accounts.c.org_code)))).scalar()
    return int(current or 0) + 1


async def delete_account(conn: AsyncConnection, account_id: int) -> None:
    await conn.execute(delete(accounts).where(accounts.c.id == account_id))


async def count_children(conn: AsyncConnection, account: Account) -> int:
    query = (
        select(func.count())
        .select_from(accounts)
        .where(accounts.c.path.startswith(account.path + "/"))
    )
    return int((await conn.execute(query)).scalar_one())


_EXT_COLUMNS = (
    extensions.c.id,
    extensions.c.number,
    extensions.c.type,
    extensions.c.name,
    accounts.c.id.label("owner_id"),
    accounts.c.kind,
    accounts.c.name.label("owner_name"),
    accounts.c.parent_id,
    accounts.c.path,
)


def _ext_query() -> Any:
    org = accounts.alias("org")
    return (
        select(*_EXT_COLUMNS, org.c.org_code.label("ext_org_code"))
        .select_from(
            extensions.join(accounts, accounts.c.id == extensions.c.owner_id).join(
                org, org.c.id == extensions.c.org_id
            )
        )
        .order_by(org.c.org_code, extensions.c.number)
    ), org


# Built once (every bearer-token request resolves an extension): building the aliased join
# costs more than running the query, and a prebuilt statement's cache key is memoized.
_EXT_QUERY, _ORG = _ext_query()
_FIND_EXTENSION = _EXT_QUERY.where(
    _ORG.c.org_code == bindparam("org_code"), extensions.c.number == bindparam("number")
)
_FIND_EXTENSION_IN_ORG = _EXT_QUERY.where(
    extensions.c.org_id == bindparam("org_id"), extensions.c.number == bindparam("number")
)


def _extension(row: Any) -> Extension:
    owner = Account(
        id=row.owner_id,
        kind=AccountKind(row.kind),
        name=row.owner_name,
        parent_id=row.parent_id,
        path=row.path,
    )
    return Extension(
        id=row.id,
        number=row.number,
        type=ExtensionType(row.type),
        name=row.name,
        owner=owner,
        org_code=row.ext_org_code,
    )


async def find_extension(conn: AsyncConnection, org_code: int, number: str) -> Extension | None:
    params = {"org_code": org_code, "number": number}
    row = (await conn.execute(_FIND_EXTENSION, params)).first()
    return _extension(row) if row else None


async def find_extension_in_org(
    conn: AsyncConnection, org_id: int, number: str
) -> Extension | None:
    params = {"org_id": org_id, "number": number}
    row = (await conn.execute(_FIND_EXTENSION_IN_ORG, params)).first()
    return _extension(row) if row else None


async def list_extensions(conn: AsyncConnection, under: Account | None = None) -> list[Extension]:
    query, _org = _ext_query()
    if under is not None and under.kind is not AccountKind.ADMIN:
        query = query.where(
            (accounts.c.path == under.path) | accounts.c.path.startswith(under.path + "/")
        )
    return [_extension(r) for r in await conn.execute(query)]


async def insert_extension(
    conn: AsyncConnection,
    *,
    owner: Account,
    org: Account,
    number: str,
    ext_type: ExtensionType,
    name: str,
    now: datetime,
) -> Extension:
    try:
        result = await conn.execute(
            insert(extensions).values(
                org_id=org.id,
                owner_id=owner.id,
                number=number,
                type=ext_type.value,
                name=name,
                created=now,
            )
        )
    except IntegrityError:
        raise Conflict(
            f"extension {number} already exists in organization {org.org_code:04d}"
        ) from None
    assert org.org_code is not None
    new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    return Extension(new_id, number, ext_type, name, owner, org.org_code)


async def update_extension(
    conn: AsyncConnection, ext_id: int, *, ext_type: ExtensionType, name: str, owner: Account
) -> None:
    await conn.execute(
        update(extensions)
        .where(extensions.c.id == ext_id)
        .values(type=ext_type.value, name=name, owner_id=owner.id)
    )


async def delete_extensions(conn: AsyncConnection, ids: Sequence[int]) -> None:
    await conn.execute(delete(extensions).where(extensions.c.id.in_(list(ids))))
