"""The only place where errors become HTTP responses."""

from __future__ import annotations

import logging
import secrets

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callhook.errors import (
    InternalError,
    MethodNotAllowed,
    OAuthError,
    RateLimited,
    RequestInvalid,
    RouteNotFound,
    ServiceError,
)

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def error_response(error: ServiceError, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="callhook"'
        if error.message != error.default_message:
            headers["WWW-Authenticate"] += ', error="invalid_token"'
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message}},
        status_code=error.status,
        headers=headers,
    )


async def service_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(exc)


async def oauth_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="callhook"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers=headers,
    )


async def http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(RouteNotFound("No such route. See /openapi.json for the API."))
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return error_response(
            MethodNotAllowed(f"This route does not take that method (allowed: {allow})."),
            headers={"Allow": allow} if allow else None,
        )
    if exc.status_code == 413:
        return error_response(RequestInvalid("The request is too large."))
    return error_response(RequestInvalid(str(exc.detail)))


async def unexpected(request: Request, exc: Exception) -> Response:
    request_id = secrets.token_hex(8)
    log.error(
        "unhandled error request_id=%s method=%s path=%s",
        request_id,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    return error_response(InternalError(f"Internal server error (request id {request_id})."))


HANDLERS = {
    ServiceError: service_error,
    OAuthError: oauth_error,
    HTTPException: http_exception,
}


class CatchAll:
    """Answers 500 ``internal_server_error`` for anything unexpected, logged once with a request
    id. (Starlette's own catch-all re-raises after answering, so the server logs it twice.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = await unexpected(Request(scope), exc)
            await response(scope, receive, send)
