"""The ASGI application: routes, error handlers and the trailing-slash rule."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
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
from callhook.api.routes.uapi_events import Endpoint
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
    to their endpoint, around Starlette's middleware and router (a request paid ~10 % of its
    time in their layers): the same endpoint, its errors answered by the same handlers
    (api/errors.py) and anything unexpected as ``CatchAll`` answers it. Anything else, a wrong
    method included (405 with the Allow list), goes through ``app``, as before.

    The path is matched by one expression for the three routes (``PATH``: Starlette's
    ``{name}`` is ``[^/]+``), not by each route's in turn; a path it does not take whole goes
    through ``app`` too, as does any request under a root path."""

    PATH = re.compile(r"/uapi/extensions/([^/]+)/([^/]+)/phoneCallEvents(?:/([^/]+)(?:/([^/]+))?)?")

    def __init__(
        self, app: Starlette, routes: Sequence[Route], handlers: Sequence[Mapping[str, Endpoint]]
    ) -> None:
        """``routes``: the routes without a type, with a type, with a type and an id;
        ``handlers``: each one's endpoints by method."""
        self.app = app
        self.shapes = list(zip(routes, handlers, strict=True))
        self.state: AppState = app.state.callhook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self.PATH.fullmatch(scope["path"])
            if found is not None:
                user, extension, etype, eid = found.groups()
                route, handlers = self.shapes[0 if etype is None else 1 if eid is None else 2]
                method = scope["method"]
                endpoint = handlers.get("GET" if method == "HEAD" else method)
                if endpoint is not None:
                    params = {"user": user, "extension": extension}
                    if etype is not None:
                        params["type"] = etype
                        if eid is not None:
                            params["id"] = eid
                    scope = {
                        **scope,
                        "endpoint": route.endpoint,
                        "path_params": params,
                        "app": self.app,
                        uapi_events.STATE: self.state,
                    }
                    request = Request(scope, receive, send)
                    try:
                        response = await endpoint(request)
                    except Exception as exc:
                        response = await _answer(request, exc)
                    await response(scope, receive, send)
                    return
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
    return TrailingSlash(HotRoutes(app, uapi_events.routes, uapi_events.HANDLERS))
