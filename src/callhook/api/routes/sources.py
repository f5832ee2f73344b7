"""/callhook/v1/sources: the PBX links callhook runs and how each is doing (Administrators)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook.api.requests import bearer_token
from callhook.domain.accounts import AccountKind
from callhook.errors import AdminOnly
from callhook.wiring_types import AppState


async def list_sources(request: Request) -> Response:
    state: AppState = request.app.state.callhook
    who = await state.service.authenticate(bearer_token(request))
    if who.account.kind is not AccountKind.ADMIN:
        raise AdminOnly(
            "The PBX links serve every organization: only an Administrator account may see them."
        )
    registered = await state.sources.list()
    links = {link["name"]: link for link in await state.sources.links()}
    return JSONResponse(
        {
            "sources": [
                {
                    "name": info.source.name,
                    "created": info.source.created.isoformat(),
                    "events": info.events,
                    "last_event": info.last_event.isoformat() if info.last_event else None,
                    "link": links.get(info.source.name),
                }
                for info in registered
            ]
        }
    )


routes = [Route("/callhook/v1/sources", list_sources, methods=["GET"])]
