"""/callhook/v1/deliveries (log, replay, recover), /callhook/v1/signing-secret, /metrics."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.api.requests import bearer_token, json_object, origin
from callhook.service import Principal
from callhook.store import outbox
from callhook.wiring_types import AppState

BASE = "/callhook/v1/deliveries"


async def _who(request: Request) -> tuple[AppState, Principal]:
    state: AppState = request.app.state.callhook
    return state, await state.service.authenticate(bearer_token(request))


async def list_deliveries(request: Request) -> Response:
    state, who = await _who(request)
    params = dict(request.query_params)
    params.pop("accessRequestToken", None)
    base = origin(request, state.public_url) + BASE
    return JSONResponse(await state.deliveries.list(who, params, base))


async def show_delivery(request: Request) -> Response:
    state, who = await _who(request)
    return JSONResponse(await state.deliveries.show(who, request.path_params["id"]))


async def replay_delivery(request: Request) -> Response:
    state, who = await _who(request)
    doc, requeued = await state.deliveries.replay(who, request.path_params["id"])
    state.ingest.wake()
    return JSONResponse({**doc, "replayed": requeued}, status_code=202)


async def recover_deliveries(request: Request) -> Response:
    state, who = await _who(request)
    body = await json_object(request)
    count = await state.deliveries.recover(who, body.get("since"), body.get("until"))
    state.ingest.wake()
    return JSONResponse({"recovered": count}, status_code=202)


async def signing_secret(request: Request) -> Response:
    state, who = await _who(request)
    if request.method == "POST":
        return JSONResponse(await state.signing.rotate(who), headers={"Cache-Control": "no-store"})
    return JSONResponse(await state.signing.current(who), headers={"Cache-Control": "no-store"})


async def metrics(request: Request) -> Response:
    state: AppState = request.app.state.callhook
    async with state.service.engine.connect() as conn:
        state.metrics.queue_depth.set(await outbox.queue_depth(conn))
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


routes = [
    Route(BASE, list_deliveries, methods=["GET"]),
    Route(BASE + "/recover", recover_deliveries, methods=["POST"]),
    Route(BASE + "/{id}", show_delivery, methods=["GET"]),
    Route(BASE + "/{id}/replay", replay_delivery, methods=["POST"]),
    Route("/callhook/v1/signing-secret", signing_secret, methods=["GET"]),
    Route("/callhook/v1/signing-secret/rotate", signing_secret, methods=["POST"]),
    Route("/metrics", metrics, methods=["GET"]),
]
