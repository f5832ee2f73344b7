"""Use cases the edges call: authentication, OAuth tokens and PhoneCallEvents."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callhook import crypto
from callhook.delivery.guard import Networks, url_refusal
from callhook.domain import listing
from callhook.domain.accounts import (
    Account,
    Extension,
    UserRefKind,
    may_manage,
    parse_extension,
    parse_user_ref,
)
from callhook.domain.phone_call_events import (
    FIELDS,
    EventType,
    PhoneCallEvent,
    apply_update,
    check_event_id,
    new_event_id,
    parse_type,
    render,
    render_all,
    validate_create,
    validate_update,
)
from callhook.errors import (
    AccessDenied,
    EventIdInvalid,
    ExtensionInvalid,
    Unauthenticated,
    UrlInvalid,
    UserInvalid,
)
from callhook.store import credentials, events, uapi_store
from callhook.store.uapi_store import ConnLookup, ExtensionGone, Lookup, UapiStore


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the account an access token acts as."""

    account: Account
    app_id: int


@dataclass(frozen=True, slots=True)
class Target:
    """An extension addressed in a UAPI path, with the userId form the client used."""

    extension: Extension
    user_text: str

    def base(self, origin: str) -> str:
        return (
            f"{origin}/uapi/extensions/{self.user_text}/{self.extension.extended}/phoneCallEvents"
        )


class Service:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], datetime] = utcnow,
        allow: Networks = (),
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.allow = allow
        self._store: UapiStore | None = None
        #: judged from the URL alone (no DNS), so kept for the URLs seen last
        self._refusal = lru_cache(maxsize=4096)(partial(url_refusal, allow=allow))

    @property
    def store(self) -> UapiStore:
        """The UnifiedAPI's lookups and rule inserts at the driver level (store.uapi_store),
        made on first use."""
        if self._store is None:
            self._store = uapi_store.for_engine(self.engine)
        return self._store

    async def close(self) -> None:
        """Close the store's own connections, if it made any."""
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    def reading(self) -> AsyncConnection:
        """A connection for reads (``async with service.reading() as conn``): one per request
        authenticates and reads, rather than one checkout for each step."""
        return self.engine.connect()

    def _check_destination(self, url: str) -> None:
        reason = self._refusal(url)
        if reason is not None:
            raise UrlInvalid(f"The URL is refused as a webhook destination: {reason}.")

    # --- bearer tokens ------------------------------------------------------------------------

    async def authenticate(
        self, token: str | None, conn: AsyncConnection | None = None
    ) -> Principal:
        """Who the bearer token acts as; ``conn``: on this connection (else through the store)."""
        if not token:
            raise Unauthenticated(
                "An access token is required: send 'Authorization: Bearer TOKEN' "
                "(get one from POST /oauth/token.php)."
            )
        digest = crypto.hash_token(token)
        if conn is None:
            found = await self.store.find_token(digest)
        else:
            found = await credentials.find_token(conn, digest)
        if found is None:
            raise Unauthenticated("The access token is unknown.")
        record, account = found
        if record.revoked:
            raise Unauthenticated("The access token has been revoked.")
        if record.expires_at <= self.clock():
            raise Unauthenticated("The access token has expired; request a new one.")
        return Principal(account=account, app_id=record.app_id)

    # --- PhoneCallEvents -----------------------------------------------------------------------

    async def _target(
        self, lookup: Lookup, who: Principal, user_text: str, ext_text: str
    ) -> Target:
        user_ref = parse_user_ref(user_text)
        ext_ref = parse_extension(ext_text)
        context = who.account
        if user_ref.kind is UserRefKind.ID:
            assert user_ref.account_id is not None
            named = await lookup.get_account(user_ref.account_id)
            if named is None:
                raise UserInvalid(f"There is no account with id {user_ref.account_id}.")
            if not may_manage(who.account, named):
                raise AccessDenied(f"Account {named.id} is outside your account's subtree.")
            context = named
        if ext_ref.org_code is not None:
            ext = await lookup.find_extension(ext_ref.org_code, ext_ref.short)
        else:
            org_id = context.organization_id()
            if org_id is None:
                raise ExtensionInvalid(
                    f"The short number {ext_ref.short} needs an organization to resolve in; "
                    "use the extended form ORG*NUMBER, e.g. 0003*210."
                )
            ext = await lookup.find_extension_in_org(org_id, ext_ref.short)
        if ext is None:
            raise ExtensionInvalid(f"There is no extension {ext_text}.")
        if user_ref.kind is UserRefKind.ID and not may_manage(context, ext.owner):
            raise ExtensionInvalid(
                f"Extension {ext.extended} does not belong to account {context.id}."
            )
        if not may_manage(who.account, ext.owner):
            raise AccessDenied(f"You may not manage the events of extension {ext.extended}.")
        if not ext.type.takes_events:
            raise ExtensionInvalid(
                f"Extension {ext.extended} is a {ext.type.value} extension, which takes no events."
            )
        return Target(extension=ext, user_text=user_text)

    async def _kept_target(self, who: Principal, user_text: str, ext_text: str) -> Target:
        """``_target`` through the store, kept in the store's cache (kind ``"target"``) while
        nothing in the directory changes: the same token's requests for the same path resolve
        to the same extension, and resolving it again (parsing both parts, the lookups, the
        subtree checks) was a tenth of a Create's time. Errors are not kept."""
        store = self.store
        cache = store.fresh_cache()
        if cache is None:
            return await self._target(store, who, user_text, ext_text)
        key = (who.account.id, user_text, ext_text)
        found: Target | None = cache.get("target", key)
        if found is None:
            generation = cache.generation
            found = await self._target(store, who, user_text, ext_text)
            cache.put("target", key, found, generation)
        return found

    async def check_target(
        self, who: Principal, user_text: str, ext_text: str, conn: AsyncConnection | None = None
    ) -> Target:
        """Raise the error a request for this userId and extension gets, if any; else the
        extension (for ``create_event``, which then need not look it up again)."""
        if conn is None:
            return await self._kept_target(who, user_text, ext_text)
        return await self._target(ConnLookup(conn), who, user_text, ext_text)

    @staticmethod
    def _render(target: Target, origin: str, event: PhoneCallEvent) -> dict[str, Any]:
        link = f"{target.base(origin)}/{event.type.value}/{event.id}"
        return render(event, link)

    async def create_event(
        self,
        who: Principal,
        user_text: str,
        ext_text: str,
        body: Mapping[str, Any],
        path_type: str | None,
        origin: str,
        target: Target | None = None,
    ) -> dict[str, Any]:
        """``target``: as ``check_target`` found it for this request, if it did."""
        if target is None:
            target = await self._kept_target(who, user_text, ext_text)
        fields = validate_create(body, path_type)
        self._check_destination(fields.url)
        event = PhoneCallEvent(
            id=new_event_id(),
            extension_id=target.extension.id,
            type=fields.type,
            method=fields.method,
            url=fields.url,
            status=fields.status,
            note=fields.note,
            modified=self.clock(),
        )
        try:
            await self.store.insert_event(event, who.app_id)
        except ExtensionGone:
            raise ExtensionInvalid(f"There is no extension {ext_text}.") from None
        return self._render(target, origin, event)

    async def _select(
        self,
        conn: AsyncConnection | None,
        target: Target,
        path_type: str | None,
        event_id: str | None,
    ) -> list[PhoneCallEvent]:
        """The target's rules on ``conn``, or through the store (None)."""
        etype: EventType | None = parse_type(path_type) if path_type is not None else None
        if event_id is not None:
            check_event_id(event_id)
        if conn is None:
            found = await self.store.find_events(target.extension.id, etype, event_id)
        else:
            found = await events.find_events(conn, target.extension.id, etype, event_id)
        if event_id is not None and not found:
            raise EventIdInvalid(
                f"There is no PhoneCallEvent {event_id} of type {path_type} on extension "
                f"{target.extension.extended}."
            )
        return found

    async def list_events(
        self,
        who: Principal,
        user_text: str,
        ext_text: str,
        path_type: str | None,
        event_id: str | None,
        params: Sequence[tuple[str, str]],
        origin: str,
        request_path: str,
        conn: AsyncConnection | None = None,
    ) -> dict[str, Any]:
        query = listing.parse_query(dict(params), FIELDS)
        if conn is None:
            target = await self._kept_target(who, user_text, ext_text)
            found = await self._select(None, target, path_type, event_id)
        else:
            target = await self._target(ConnLookup(conn), who, user_text, ext_text)
            found = await self._select(conn, target, path_type, event_id)
        records = render_all(found, target.base(origin))
        page = listing.paginate(records, query)
        return listing.render_page(page, origin + request_path, params, query.count)

    async def update_event(
        self,
        who: Principal,
        user_text: str,
        ext_text: str,
        path_type: str,
        event_id: str,
        body: Mapping[str, Any],
        origin: str,
    ) -> dict[str, Any]:
        async with self.engine.begin() as conn:
            target = await self._target(ConnLookup(conn), who, user_text, ext_text)
            (current,) = await self._select(conn, target, path_type, event_id)
            changes = validate_update(body, current.type)
            updated = apply_update(current, changes, self.clock())
            if updated.url != current.url:
                self._check_destination(updated.url)
            await events.save_event(conn, updated)
        self.store.rules_changed(target.extension.id)
        return self._render(target, origin, updated)

    async def delete_events(
        self,
        who: Principal,
        user_text: str,
        ext_text: str,
        path_type: str | None,
        event_id: str | None,
        origin: str,
    ) -> list[dict[str, Any]]:
        async with self.engine.begin() as conn:
            target = await self._target(ConnLookup(conn), who, user_text, ext_text)
            found = await self._select(conn, target, path_type, event_id)
            await events.delete_events(conn, [e.id for e in found])
        self.store.rules_changed(target.extension.id)
        return [self._render(target, origin, e) for e in found]
