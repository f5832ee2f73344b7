"""A real HTTP receiver on 127.0.0.1 that records every request (for the engine tests)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    body: str
    headers: dict[str, str]
    at: float

    @property
    def params(self) -> dict[str, str]:
        raw = self.body if self.method == "POST" else self.query
        return dict(parse_qsl(raw, keep_blank_values=True))

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """``answer`` decides each response status (default 204); each answer waits ``delay``
    seconds (a receiver that takes its time)."""

    answer: Callable[[Received], int] = lambda _r: 204
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    delay: float = 0.0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        got = Received(
            request.method,
            request.path,
            urlsplit(str(request.url)).query,
            body,
            {k.lower(): v for k, v in request.headers.items()},
            time.monotonic(),
        )
        self.requests.append(got)
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.answer(got)
        headers = {"Retry-After": "0"} if status in (429, 503) else None
        return web.Response(status=status, text="ok" if status < 300 else "nope", headers=headers)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(self.requests)} requests, wanted {count}")
            await asyncio.sleep(0.02)
        return self.requests


class ThreadedReceiver:
    """A Receiver on its own event loop in a thread, for tests that block (real processes)."""

    def __init__(
        self,
        port: int = 0,
        answer: Callable[[Received], int] | None = None,
        *,
        delay: float = 0.0,
    ) -> None:
        self.receiver = Receiver(port=port, delay=delay)
        if answer is not None:
            self.receiver.answer = answer
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self._loop).result(10)

    @property
    def url(self) -> str:
        return self.receiver.url

    @property
    def requests(self) -> list[Received]:
        return list(self.receiver.requests)

    def wait_until(self, done: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while not done(self.requests):
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: condition not met with {len(self.requests)}")
            time.sleep(0.05)
        return self.requests

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
