"""``callhook worker``: a delivery worker process (PostgreSQL: run as many as you like)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

import click

from callhook import heap, logs
from callhook.cli import context
from callhook.cli.output import emit_json, json_option, say
from callhook.config import Settings
from callhook.delivery.runner import run_worker
from callhook.errors import ConfigError
from callhook.store.database import describe
from callhook.wiring import build_worker


def _die_with(parent: int) -> None:
    """Linux: be killed when ``serve`` dies (even by SIGKILL), as if part of it."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before that took effect
        os._exit(1)


class _Wakes(asyncio.Protocol):
    """``serve`` writes a byte on our stdin when it commits new deliveries; EOF means it is
    gone (where the parent-death signal does not exist), and so are we."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake

    def data_received(self, data: bytes) -> None:
        self.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        os._exit(0)


async def _work(
    settings_name: str | None, ctx_settings: Settings, as_json: bool, parent: int | None
) -> str:
    components = context.open_components(ctx_settings)
    try:
        await context.prepare(components)
        worker, _ = build_worker(components, name=settings_name)
        if parent is not None:
            await asyncio.get_running_loop().connect_read_pipe(
                lambda: _Wakes(worker.wake), sys.stdin
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        database = describe(ctx_settings.effective_database_url)
        if as_json:
            emit_json({"worker": worker.name, "database": database}, compact=True)
        else:
            say(f"callhook worker {worker.name} delivering from {database}  (Ctrl-C to stop)")
        heap.settle()
        await run_worker(worker, stop, owns_database=False)
        return worker.name
    finally:
        with contextlib.suppress(Exception):
            await components.engine.dispose()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return None
    return uvloop.new_event_loop


@click.command()
@click.option("--name", help="Name of this worker in logs and attempt records [default: host:pid]")
@click.option("--parent", type=int, hidden=True, help="Started by `callhook serve --workers`.")
@context.setting_option(
    "--log-level",
    env="CALLHOOK_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging level (logs are JSON lines on stderr) [default: INFO]",
)
@context.database_options
@json_option
@click.pass_context
def worker(ctx: click.Context, name: str | None, parent: int | None, as_json: bool) -> None:
    """Deliver webhooks from a PostgreSQL database shared with `callhook serve --no-worker`.

    Claims due deliveries with FOR UPDATE SKIP LOCKED and a lease, wakes on LISTEN/NOTIFY, and
    stops cleanly on Ctrl-C or SIGTERM (requests in flight finish first). On the embedded
    SQLite database `callhook serve` already runs the worker.
    """
    if parent is not None:
        _die_with(parent)
    settings = context.settings(ctx)
    sqlite = settings.uses_default_sqlite or settings.effective_database_url.startswith("sqlite")
    if sqlite and parent is None:
        raise ConfigError(
            "callhook worker needs PostgreSQL (set CALLHOOK_DATABASE_URL or --database-url); "
            "on SQLite, `callhook serve` delivers by itself (`serve --workers N`: in processes)"
        )
    logs.configure(settings.log_level)
    # uvloop (installed with uvicorn[standard]) when there, as serve's loop: the worker's loop
    # does little but send requests (its CPU per delivery at the e2e maximum: 184 -> 168 us)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        stopped = runner.run(_work(name, settings, as_json, parent))
    if not as_json:
        say(f"callhook worker {stopped} stopped")
