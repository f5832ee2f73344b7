"""The ASGI application: routes, error handlers and the trailing-slash rule."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from callhook.api.errors import HANDLERS, CatchAll
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
    return TrailingSlash(app)
