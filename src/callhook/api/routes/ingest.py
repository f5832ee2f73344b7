"""POST /callhook/v1/call-events: call events from a PBX or a script (docs/reference/ingest.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.api.requests import MAX_BODY, json_value
from callhook.domain.calls import parse_batch
from callhook.errors import SourceUnauthenticated
from callhook.wiring_types import AppState


def _source_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SourceUnauthenticated("The Authorization header must be 'Bearer SOURCE_TOKEN'.")
    return token.strip()


async def call_events(request: Request) -> Response:
    state: AppState = request.app.state.callhook
    source = await state.ingest.authenticate(_source_token(request))
    body = await json_value(request, MAX_BODY, "a call event object or an array of them")
    events = parse_batch(body)
    result = await state.ingest.accept(source, events)
    state.metrics.accepted.inc(result.accepted)
    return JSONResponse(result.to_json(), status_code=202)


routes = [Route("/callhook/v1/call-events", call_events, methods=["POST"])]
