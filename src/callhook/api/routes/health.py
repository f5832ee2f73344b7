"""/healthz (the process runs), /readyz (the database answers and is migrated), /openapi.json."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook import __version__
from callhook.store.migrate import pending
from callhook.wiring_types import AppState


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


async def readyz(request: Request) -> Response:
    state: AppState = request.app.state.callhook
    try:
        async with state.service.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        if await pending(state.service.engine):
            return JSONResponse(
                {
                    "status": "unavailable",
                    "reason": "database schema is not migrated; run callhook migrate",
                },
                status_code=503,
            )
    except Exception as exc:
        return JSONResponse(
            {"status": "unavailable", "reason": f"database: {type(exc).__name__}"}, status_code=503
        )
    return JSONResponse({"status": "ready"})


@cache
def openapi_document() -> dict[str, Any]:
    raw = (resources.files("callhook.api") / "openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(raw)
    document["info"]["version"] = __version__
    return document


async def openapi(_request: Request) -> Response:
    return JSONResponse(openapi_document())


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
