"""/uapi/extensions/{userId}/{extension}/phoneCallEvents[/{type}[/{id}]] (contract section 3)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callhook.api.requests import bearer_token, json_object, origin
from callhook.api.responses import Json
from callhook.domain.rate_limit import retry_after_seconds
from callhook.errors import RateLimited
from callhook.service import Principal, Service
from callhook.wiring_types import AppState

Endpoint = Callable[[Request], Awaitable[Response]]
BASE = "/uapi/extensions/{user}/{extension}/phoneCallEvents"
#: the scope's key for the app's state (``api.app.HotRoutes`` sets it)
STATE = "callhook.state"


def _state(request: Request) -> AppState:
    """The app's state: as ``HotRoutes`` put it in the scope, else from the app."""
    state: AppState | None = request.scope.get(STATE)
    if state is None:
        state = request.app.state.callhook
    return state


async def _principal(request: Request) -> tuple[Service, Principal, str]:
    state = _state(request)
    who = await state.service.authenticate(bearer_token(request))
    wait = state.limiter.check(who.app_id, time.monotonic())
    if wait:
        raise RateLimited(
            f"This app made too many requests; retry in {wait:.1f} s.", retry_after_seconds(wait)
        )
    return state.service, who, origin(request, state.public_url)


def _parts(request: Request) -> tuple[str, str, str | None, str | None]:
    p = request.path_params
    return p["user"], p["extension"], p.get("type"), p.get("id")


# The token and the extension are looked up through the service's store (store.uapi_store:
# at the driver level, cached on PostgreSQL); a request holds no pooled connection while it
# reads its body, and a write opens its transaction only once the body is read.


async def list_events(request: Request) -> Response:
    user, ext, etype, eid = _parts(request)
    service, who, base = await _principal(request)
    body = await service.list_events(
        who,
        user,
        ext,
        etype,
        eid,
        request.query_params.multi_items(),
        base,
        request.url.path.rstrip("/"),
    )
    return Json(body)


async def create_event(request: Request) -> Response:
    user, ext, etype, _ = _parts(request)
    service, who, base = await _principal(request)
    # the path (who, which extension) is checked before the body, as each names a different
    # error
    target = await service.check_target(who, user, ext)
    payload = await json_object(request)
    created = await service.create_event(who, user, ext, payload, etype, base, target)
    return Json(created, status_code=201, headers={"Location": created["links"]["self"]})


async def update_event(request: Request) -> Response:
    user, ext, etype, eid = _parts(request)
    assert etype is not None
    assert eid is not None
    service, who, base = await _principal(request)
    await service.check_target(who, user, ext)
    payload = await json_object(request)
    updated = await service.update_event(who, user, ext, etype, eid, payload, base)
    return Json(updated)


async def delete_events(request: Request) -> Response:
    user, ext, etype, eid = _parts(request)
    service, who, base = await _principal(request)
    deleted = await service.delete_events(who, user, ext, etype, eid, base)
    return Json(deleted)


def _route(path: str, handlers: dict[str, Endpoint]) -> Route:
    """One route per path, so a wrong method gets 405 with the full Allow list."""

    async def dispatch(request: Request) -> Response:
        # Starlette adds HEAD to every GET route; the server drops the body of a HEAD answer
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, dispatch, methods=list(handlers))


#: each path's endpoints by method: without a type, with a type, with a type and an id
HANDLERS: tuple[dict[str, Endpoint], ...] = (
    {"GET": list_events, "POST": create_event, "DELETE": delete_events},
    {"GET": list_events, "POST": create_event, "DELETE": delete_events},
    {"GET": list_events, "PUT": update_event, "DELETE": delete_events},
)
routes = [
    _route(path, handlers)
    for path, handlers in zip(
        (BASE, BASE + "/{type}", BASE + "/{type}/{id}"), HANDLERS, strict=True
    )
]
