"""Worker processes started and watched by ``callhook serve --workers N``.

A worker in its own process has a core of its own: the API and ingest run in ``serve``, the
deliveries in the children. Each child is ``callhook worker --parent PID`` on the same
database: it is woken through its stdin (a byte per commit of new deliveries; on PostgreSQL
LISTEN/NOTIFY wakes it as well), dies with ``serve`` (Linux: the parent-death signal; else
when its stdin closes), and is started again if it exits on its own. On SQLite the leases of a
child that died are taken back before its successor starts (serve owns that database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.store import outbox
from callhook.store.database import writing

log = logging.getLogger(__name__)

#: a child that keeps dying is restarted no faster than this
RESTART_DELAY = 1.0
#: how long a child may take to finish its requests after SIGTERM
STOP_TIMEOUT = 30.0


class WorkerProcesses:
    def __init__(
        self,
        count: int,
        engine: AsyncEngine,
        env: Mapping[str, str],
        *,
        owns_database: bool,
    ) -> None:
        self.count = count
        self.engine = engine
        self.env = dict(env)
        self.owns_database = owns_database
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._names: dict[int, str] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    def _name(self, slot: int, generation: int) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:w{slot}.{generation}"

    async def start(self) -> None:
        for slot in range(self.count):
            await self._spawn(slot, 0)
            self._watchers.append(asyncio.create_task(self._watch(slot)))

    async def _spawn(self, slot: int, generation: int) -> None:
        name = self._name(slot, generation)
        self._children[slot] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "callhook.cli",
            "worker",
            "--name",
            name,
            "--parent",
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            env=self.env,
        )
        self._names[slot] = name
        log.info("worker process started name=%s pid=%s", name, self._children[slot].pid)

    async def _watch(self, slot: int) -> None:
        generation = 0
        while True:
            code = await self._children[slot].wait()
            # a signal to the whole process group or service (Ctrl-C in a terminal, a service
            # manager's stop) reaches serve too and may stop a child first: serve says it is
            # stopping within the delay, and then nothing died
            await asyncio.sleep(RESTART_DELAY)
            if self._stopping:
                return
            name = self._names[slot]
            log.error("worker process %s exited with status %s; starting another", name, code)
            if self.owns_database:
                with contextlib.suppress(Exception):
                    async with writing(self.engine) as conn:
                        await outbox.release_all(conn, name)
            generation += 1
            try:
                await self._spawn(slot, generation)
            except OSError as exc:
                log.error("cannot start a worker process: %s", exc)
                return

    def wake(self) -> None:
        """New deliveries were committed: tell every child (never blocks; a child that has not
        read the previous bytes yet is awake anyway)."""
        for child in self._children.values():
            stdin = child.stdin
            if stdin is None or stdin.is_closing():
                continue
            transport = stdin.transport
            if transport.get_write_buffer_size() < 64:
                with contextlib.suppress(Exception):
                    stdin.write(b"!")

    async def stop(self) -> None:
        """SIGTERM every child, wait for them to finish their requests (then kill)."""
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        children = list(self._children.values())
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                await asyncio.wait_for(child.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
            if child.stdin is not None:
                child.stdin.close()
