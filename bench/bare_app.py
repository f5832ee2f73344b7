"""The API benchmark's baseline: a bare Starlette app on the same server settings as
``callhook serve`` (uvicorn, ``loop="auto"``, ``http="auto"``, callhook's JSON logging with the
access log on, a socket listening with the same backlog).

``python -m bench.bare_app --port 0 [--list-body FILE] [--create-body FILE]`` prints one JSON line
``{"url": ...}`` once it listens. ``GET /list`` answers 200 with the fixed body of ``--list-body``;
``POST /create`` reads and parses the JSON body, then answers 201 with the fixed body of
``--create-body`` and a ``Location`` header, as callhook's Create does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callhook import logs
from callhook.cli.serve import _loop_factory

#: used when no body file is given: 20 entries shaped like callhook's List answer
_LINK = "http://127.0.0.1:8080/uapi/extensions/@me/0003*1000/phoneCallEvents"


def _entry(n: int) -> dict[str, Any]:
    event_id = f"{n:030d}"
    return {
        "type": str(n % 5),
        "id": event_id,
        "method": "1",
        "note": "",
        "url": f"http://127.0.0.1:9/hook/{n}",
        "status": "1",
        "modified": "2026-01-01T00:00:00+00:00",
        "links": {"self": f"{_LINK}/{n % 5}/{event_id}"},
    }


DEFAULT_LIST = {"startIndex": 0, "itemsPerPage": 20, "totalResults": 20}
DEFAULT_LIST["entry"] = [_entry(n) for n in range(20)]  # type: ignore[assignment]
DEFAULT_CREATE = _entry(0)


def create_app(list_body: Any, create_body: Any) -> Starlette:
    location = (
        str(create_body.get("links", {}).get("self", "/")) if isinstance(create_body, dict) else "/"
    )

    async def list_events(_request: Request) -> Response:
        return JSONResponse(list_body)

    async def create_event(request: Request) -> Response:
        await request.json()
        return JSONResponse(create_body, status_code=201, headers={"Location": location})

    return Starlette(
        routes=[
            Route("/list", list_events, methods=["GET"]),
            Route("/create", create_event, methods=["POST"]),
        ]
    )


def _listen(port: int) -> socket.socket:
    """As ``callhook serve`` listens (callhook.cli.serve._listen)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_app")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--list-body", type=Path)
    parser.add_argument("--create-body", type=Path)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    list_body = json.loads(args.list_body.read_text("utf-8")) if args.list_body else DEFAULT_LIST
    create_body = (
        json.loads(args.create_body.read_text("utf-8")) if args.create_body else DEFAULT_CREATE
    )
    logs.configure(args.log_level)
    sock = _listen(args.port)
    # the same uvicorn settings as `callhook serve` over plain HTTP
    config = uvicorn.Config(
        create_app(list_body, create_body),
        loop="auto",
        http="auto",
        ws="none",
        lifespan="auto",
        proxy_headers=False,
        forwarded_allow_ips="127.0.0.1",
        log_config=None,
        access_log=True,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    print(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}"}), flush=True)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(config)) as runner:
            runner.run(server.serve(sockets=[sock]))
    finally:
        sock.close()


if __name__ == "__main__":
    main(sys.argv[1:])
