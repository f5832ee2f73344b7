"""Use cases of /callhook/v1/signing-secret: an app reads and rotates its webhook signing key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.domain.payloads import new_secret
from callhook.service import Principal
from callhook.store import signing

#: after a rotation, the previous key keeps signing (as a second signature) this long
GRACE = timedelta(hours=24)


class SigningKeys:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    async def current(self, who: Principal) -> dict[str, Any]:
        now = self.clock()
        async with self.engine.begin() as conn:
            keys = await signing.app_secrets(conn, who.app_id, new_secret, now, GRACE)
            rotated = await signing.rotated_at(conn, who.app_id)
        assert keys is not None  # the token's app exists, or the token would be gone
        return _render(keys, rotated)

    async def rotate(self, who: Principal) -> dict[str, Any]:
        now = self.clock()
        async with self.engine.begin() as conn:
            await signing.app_secrets(conn, who.app_id, new_secret, now, GRACE)
            await signing.rotate(conn, who.app_id, new_secret(), now)
            keys = await signing.app_secrets(conn, who.app_id, new_secret, now, GRACE)
        assert keys is not None
        return _render(keys, now)


def _render(keys: list[str], rotated: datetime | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"secret": keys[0]}
    if len(keys) > 1 and rotated is not None:
        doc["previous_secret"] = keys[1]
        doc["previous_signs_until"] = (rotated + GRACE).isoformat()
    return doc
