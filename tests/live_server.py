"""A real callhook server for tests: uvicorn in a background thread on 127.0.0.1.

As in HTTPX's test suite, the server runs in a thread with its own event loop, on a socket bound
to a free port before the thread starts (so there is no race for the port). The database engine
belongs to that loop: run database work (provisioning a directory, say) through
``LiveServer.call``, which hands a coroutine to the server's loop and waits for its result.

    with LiveServer(Settings(data_dir=..., database_url=...)) as server:
        world = server.build_world()
        token = server.token(world, "org")
        httpx.get(server.url + "/healthz")
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

import httpx
import uvicorn

from callhook.config import Settings
from callhook.wiring import Components, build, prepare_database
from tests.conftest import World, build_world

T = TypeVar("T")

STARTUP_TIMEOUT = 30.0


class LiveServer:
    """The app from ``callhook.wiring.build`` served by uvicorn on 127.0.0.1 and a free port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.components: Components = build(settings)
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and without it every response waits ~40 ms for a delayed ACK
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.components.app,
            lifespan="auto",
            log_config=None,
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"callhook-{self.port}", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread by start()
            self._failure = exc

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await prepare_database(self.components)
            await self._server.serve(sockets=[self._socket])
        finally:
            await self.components.close()

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the live server stopped while starting") from self._failure
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the live server did not start in {STARTUP_TIMEOUT} s")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STARTUP_TIMEOUT)
        self._socket.close()
        if self._failure is not None:
            raise RuntimeError("the live server failed") from self._failure

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- helpers -----------------------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = STARTUP_TIMEOUT) -> T:
        """Run ``coro`` on the server's event loop (where its database engine lives)."""
        if self._loop is None or not self._server.started:
            coro.close()
            raise RuntimeError("the live server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def build_world(self) -> World:
        """The directory of tests.conftest.build_world, created in this server's database."""
        return self.call(build_world(self.components.provisioning))

    def token(self, world: World, who: str) -> str:
        """An access token of ``who``'s app, from POST /oauth/token.php over real HTTP."""
        app = world.apps[who]
        response = httpx.post(
            f"{self.url}/oauth/token.php",
            data={
                "grant_type": "client_credentials",
                "client_id": app.app.client_id,
                "client_secret": app.client_secret,
            },
        )
        assert response.status_code == 200, response.text
        access_token: str = response.json()["access_token"]
        return access_token
