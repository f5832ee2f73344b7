"""/oauth/token.php, /oauth/token and /oauth/revoke (contract section 6, RFC 6749 and 7009)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.api.errors import NO_STORE
from callhook.api.requests import basic_credentials, form_fields
from callhook.wiring_types import AppState


async def token(request: Request) -> Response:
    state: AppState = request.app.state.callhook
    form = await form_fields(request)
    body = await state.oauth.issue_token(form, basic_credentials(request))
    return JSONResponse(body, headers=NO_STORE)


async def revoke(request: Request) -> Response:
    state: AppState = request.app.state.callhook
    form = await form_fields(request)
    await state.oauth.revoke_token(form, basic_credentials(request))
    # the revoked token must fail this process's next request, before any notice of it
    state.service.store.directory_changed()
    return JSONResponse({}, headers=NO_STORE)


routes = [
    Route("/oauth/token.php", token, methods=["POST"]),
    Route("/oauth/token", token, methods=["POST"]),
    Route("/oauth/revoke", revoke, methods=["POST"]),
]
