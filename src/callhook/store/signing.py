"""Signing keys: one per app (rotatable), and the instance key for rules without an app."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from callhook.store.outbox import insert_ignore
from callhook.store.tables import apps, instance_secrets

INSTANCE_KEY = "signing"


async def instance_secret(
    conn: AsyncConnection, new_secret: Callable[[], str], now: datetime
) -> str:
    await conn.execute(
        insert_ignore(conn, instance_secrets).values(
            name=INSTANCE_KEY, value=new_secret(), created=now
        )
    )
    query = select(instance_secrets.c.value).where(instance_secrets.c.name == INSTANCE_KEY)
    value: str = (await conn.execute(query)).scalar_one()
    return value


async def app_secrets(
    conn: AsyncConnection,
    app_id: int,
    new_secret: Callable[[], str],
    now: datetime,
    grace: timedelta,
) -> list[str] | None:
    """The keys that sign for this app: the current one, then the previous one during the
    grace period after a rotation. None when the app no longer exists."""
    query = select(
        apps.c.signing_secret, apps.c.previous_signing_secret, apps.c.signing_rotated
    ).where(apps.c.id == app_id)
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    current = row.signing_secret
    if current is None:
        current = new_secret()
        await conn.execute(
            update(apps)
            .where(apps.c.id == app_id, apps.c.signing_secret.is_(None))
            .values(signing_secret=current)
        )
        return [await _current(conn, app_id)]
    keys = [current]
    rotated = row.signing_rotated
    if row.previous_signing_secret and rotated is not None and rotated + grace > now:
        keys.append(row.previous_signing_secret)
    return keys


async def _current(conn: AsyncConnection, app_id: int) -> str:
    query = select(apps.c.signing_secret).where(apps.c.id == app_id)
    value: str = (await conn.execute(query)).scalar_one()
    return value


async def rotated_at(conn: AsyncConnection, app_id: int) -> datetime | None:
    query = select(apps.c.signing_rotated).where(apps.c.id == app_id)
    value: datetime | None = (await conn.execute(query)).scalar_one_or_none()
    return value


async def rotate(conn: AsyncConnection, app_id: int, secret: str, now: datetime) -> None:
    await conn.execute(
        update(apps)
        .where(apps.c.id == app_id)
        .values(
            previous_signing_secret=apps.c.signing_secret,
            signing_secret=secret,
            signing_rotated=now,
        )
    )
