"""OAuth 2.0 use cases: token issuance (three grants), revocation, and authorization codes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callhook import crypto
from callhook.domain.accounts import may_manage
from callhook.errors import OAuthError
from callhook.service import utcnow
from callhook.store import credentials, directory

GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")
API_TYPES = ("unifiedapi", "systemapi")
CODE_LIFETIME = timedelta(minutes=10)
REFRESH_LIFETIME = timedelta(days=30)
PURGE_AFTER = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A checked request to /oauth/authorize.php: safe to show a sign-in form for."""

    client_id: str
    app_name: str
    redirect_uri: str
    state: str
    scope: str


class AuthorizeError(Exception):
    """An authorization request that must not redirect (unknown client or redirect URI)."""


class OAuth:
    def __init__(
        self, engine: AsyncEngine, *, token_ttl: int = 3600, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine = engine
        self.token_ttl = token_ttl
        self.clock = clock

    async def _client(self, conn: AsyncConnection, client_id: str, secret: str) -> credentials.App:
        app = await credentials.get_app(conn, client_id)
        # verify against a dummy hash too, so unknown ids take as long as wrong secrets
        ok = await asyncio.to_thread(
            crypto.verify_secret, app.secret_hash if app else _DUMMY_HASH, secret
        )
        if app is None or not ok:
            raise OAuthError("invalid_client", "Unknown client_id or wrong client_secret.", 401)
        return app

    # --- the token endpoint -----------------------------------------------------------------

    async def issue_token(
        self, form: Mapping[str, str], basic: tuple[str, str] | None
    ) -> dict[str, Any]:
        grant = form.get("grant_type", "")
        if not grant:
            raise OAuthError("invalid_request", "grant_type is required (client_credentials).")
        if grant not in GRANT_TYPES:
            raise OAuthError(
                "unsupported_grant_type",
                f"grant_type {grant!r} is not supported; use one of {', '.join(GRANT_TYPES)}.",
            )
        api_type = form.get("type", "unifiedapi") or "unifiedapi"
        if api_type not in API_TYPES:
            raise OAuthError("invalid_request", "type must be unifiedapi or systemapi.")
        client_id, secret = client_credentials(form, basic)
        async with self.engine.begin() as conn:
            app = await self._client(conn, client_id, secret)
            # keep the tables small: each issuance forgets what of this app expired a day ago
            await credentials.purge_expired(conn, app.id, self.clock() - PURGE_AFTER)
            if grant == "client_credentials":
                return await self._tokens(conn, app, app.account_id, api_type, refresh=False)
            if grant == "authorization_code":
                return await self._exchange_code(conn, app, form)
            return await self._refresh(conn, app, form)

    async def _tokens(
        self,
        conn: AsyncConnection,
        app: credentials.App,
        account_id: int,
        scope: str,
        *,
        refresh: bool,
    ) -> dict[str, Any]:
        now = self.clock()
        token = crypto.new_token()
        await credentials.insert_token(
            conn,
            token_hash=crypto.hash_token(token),
            app=app,
            scope=scope,
            expires_at=now + timedelta(seconds=self.token_ttl),
            now=now,
            account_id=account_id,
        )
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "scope": scope,
        }
        if refresh:
            refresh_token = crypto.new_token()
            await credentials.insert_token(
                conn,
                token_hash=crypto.hash_token(refresh_token),
                app=app,
                scope=scope,
                expires_at=now + REFRESH_LIFETIME,
                now=now,
                account_id=account_id,
                kind="refresh",
            )
            body["refresh_token"] = refresh_token
        return body

    async def _exchange_code(
        self, conn: AsyncConnection, app: credentials.App, form: Mapping[str, str]
    ) -> dict[str, Any]:
        code = form.get("code", "")
        if not code:
            raise OAuthError(
                "invalid_request", "code is required with grant_type=authorization_code."
            )
        record = await credentials.take_code(conn, crypto.hash_token(code))
        if record is None or record.app_id != app.id:
            raise OAuthError("invalid_grant", "The authorization code is unknown or already used.")
        if record.expires_at <= self.clock():
            raise OAuthError("invalid_grant", "The authorization code has expired (10 minutes).")
        given = form.get("redirect_uri", "")
        if given and given != record.redirect_uri:
            raise OAuthError(
                "invalid_grant", "redirect_uri differs from the one of the authorization request."
            )
        return await self._tokens(conn, app, record.account_id, record.scope, refresh=True)

    async def _refresh(
        self, conn: AsyncConnection, app: credentials.App, form: Mapping[str, str]
    ) -> dict[str, Any]:
        refresh_token = form.get("refresh_token", "")
        if not refresh_token:
            raise OAuthError("invalid_request", "refresh_token is required.")
        found = await credentials.find_token(conn, crypto.hash_token(refresh_token), "refresh")
        if found is None or found[0].app_id != app.id or found[0].revoked:
            raise OAuthError("invalid_grant", "The refresh token is unknown or revoked.")
        record, account = found
        if record.expires_at <= self.clock():
            raise OAuthError("invalid_grant", "The refresh token has expired.")
        # rotation: a refresh token works once, and is replaced by the one returned
        await credentials.revoke_by_hash(conn, crypto.hash_token(refresh_token))
        return await self._tokens(conn, app, account.id, record.scope, refresh=True)

    async def revoke_token(self, form: Mapping[str, str], basic: tuple[str, str] | None) -> None:
        token = form.get("token", "")
        if not token:
            raise OAuthError("invalid_request", "token is required.")
        client_id, secret = client_credentials(form, basic)
        async with self.engine.begin() as conn:
            app = await self._client(conn, client_id, secret)
            # RFC 7009: an unknown token, or one of another client, is not an error
            await credentials.revoke_token(conn, crypto.hash_token(token), app.id)

    # --- the authorization endpoint ----------------------------------------------------------

    async def check_authorize(self, params: Mapping[str, str]) -> AuthorizeRequest:
        """Validate what must be right before anything is shown or redirected (RFC 6749 4.1.2.1)."""
        client_id = params.get("client_id", "")
        if "\x00" in client_id:
            raise AuthorizeError("Unknown or missing client_id.")
        async with self.engine.connect() as conn:
            app = await credentials.get_app(conn, client_id) if client_id else None
        if app is None:
            raise AuthorizeError("Unknown or missing client_id.")
        if not app.redirect_uri:
            raise AuthorizeError(
                f"The app {app.name!r} has no registered redirect URI; its administrator must "
                "set one (callhook admin app create ... --redirect-uri URL)."
            )
        given = params.get("redirect_uri", "")
        if given and given != app.redirect_uri:
            raise AuthorizeError("redirect_uri does not match the app's registered redirect URI.")
        return AuthorizeRequest(
            client_id=client_id,
            app_name=app.name,
            redirect_uri=app.redirect_uri,
            state=params.get("state", ""),
            scope=params.get("type", "unifiedapi") or "unifiedapi",
        )

    async def authorize(
        self, request: AuthorizeRequest, params: Mapping[str, str], login: str, password: str
    ) -> str:
        """Sign the account in and return the redirect URL carrying a code (or an error).

        Raises OAuthError("access_denied") for a wrong login or password, which the edge shows
        on the form again instead of redirecting.
        """
        if params.get("response_type", "") != "code":
            return redirect_with(
                request.redirect_uri,
                {"error": "unsupported_response_type", "state": request.state},
            )
        if request.scope not in API_TYPES:
            return redirect_with(
                request.redirect_uri, {"error": "invalid_scope", "state": request.state}
            )
        async with self.engine.begin() as conn:
            found = await credentials.find_sign_in(conn, login)
            ok = await asyncio.to_thread(
                crypto.verify_secret, found[1] if found else _DUMMY_HASH, password
            )
            if found is None or not ok:
                raise OAuthError("access_denied", "Wrong login or password.", 401)
            account = found[0]
            app = await credentials.get_app(conn, request.client_id)
            assert app is not None
            owner = await directory.get_account(conn, app.account_id)
            assert owner is not None
            if not may_manage(owner, account):
                return redirect_with(
                    request.redirect_uri,
                    {
                        "error": "access_denied",
                        "error_description": "This app may not act for that account.",
                        "state": request.state,
                    },
                )
            code = crypto.new_token()
            now = self.clock()
            await credentials.insert_code(
                conn,
                code_hash=crypto.hash_token(code),
                app=app,
                account=account,
                redirect_uri=request.redirect_uri,
                scope=request.scope,
                expires_at=now + CODE_LIFETIME,
                now=now,
            )
        return redirect_with(request.redirect_uri, {"code": code, "state": request.state})


def redirect_with(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` appended to its query (empty values left out)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def client_credentials(form: Mapping[str, str], basic: tuple[str, str] | None) -> tuple[str, str]:
    """The client's id and secret from HTTP Basic or the form (RFC 6749 section 2.3.1)."""
    form_id, form_secret = form.get("client_id", ""), form.get("client_secret", "")
    if basic is not None:
        if form_secret and (form_id, form_secret) != basic:
            raise OAuthError(
                "invalid_request", "Send client credentials either in HTTP Basic or in the form."
            )
        return basic
    if not form_id or not form_secret:
        raise OAuthError(
            "invalid_client",
            "Client authentication is required: client_id and client_secret in the form, "
            "or HTTP Basic.",
            401,
        )
    return form_id, form_secret


_DUMMY_HASH = crypto.hash_secret("callhook-dummy-secret")
