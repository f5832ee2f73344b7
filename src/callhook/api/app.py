"""The ASGI application: routes, error handlers and the trailing-slash rule."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from callhook.api.errors import HANDLERS, CatchAll, unexpected
from callhook.api.routes import (
    deliveries,
    health,
    ingest,
    oauth,
    oauth_authorize,
    sources,
    uapi_events,
)
from callhook.wiring_types import AppState


class TrailingSlash:
    """A trailing slash is optional on every route and never redirected (contract section 3)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/") or "/"
                raw = scope.get("raw_path")
                if isinstance(raw, bytes) and raw.endswith(b"/"):
                    scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


class HotRoutes:
    """Requests for the UAPI's PhoneCallEvents (List and Create are its hot path) go straight
    to their route's endpoint, around Starlette's middleware and router (a request paid ~10 %
    of its time in their layers): the same endpoint, its errors answered by the same handlers
    (api/errors.py) and anything unexpected as ``CatchAll`` answers it. Anything else, a wrong
    method included (405 with the Allow list), goes through ``app``, as before."""

    def __init__(self, app: Starlette, routes: Sequence[Route]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/uapi/"):
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope = {**scope, **child, "app": self.app}
                    request = Request(scope, receive, send)
                    try:
                        response = await route.endpoint(request)
                    except Exception as exc:
                        response = await _answer(request, exc)
                    await response(scope, receive, send)
                    return
                if match is Match.PARTIAL:
                    break
        await self.app(scope, receive, send)


async def _answer(request: Request, exc: Exception) -> Response:
    """The response of the handler Starlette would pick for ``exc`` (by its class's MRO)."""
    for kind in type(exc).__mro__:
        handler = HANDLERS.get(kind)
        if handler is not None:
            return await handler(request, exc)
    return await unexpected(request, exc)


def create_app(state: AppState) -> ASGIApp:
    app = Starlette(
        middleware=[Middleware(CatchAll)],
        routes=[
            *uapi_events.routes,
            *oauth.routes,
            *oauth_authorize.routes,
            *ingest.routes,
            *deliveries.routes,
            *sources.routes,
            *health.routes,
        ],
        exception_handlers=HANDLERS,
    )
    app.router.redirect_slashes = False
    app.state.callhook = state
    return TrailingSlash(HotRoutes(app, uapi_events.routes))
