"""``callhook worker``: a delivery worker process (PostgreSQL: run as many as you like)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from callhook import logs
from callhook.cli import context
from callhook.cli.output import emit_json, json_option, say
from callhook.config import Settings
from callhook.delivery.runner import run_worker
from callhook.errors import ConfigError
from callhook.store.database import describe
from callhook.wiring import build_worker


async def _work(settings_name: str | None, ctx_settings: Settings, as_json: bool) -> str:
    components = context.open_components(ctx_settings)
    try:
        await context.prepare(components)
        worker, _ = build_worker(components, name=settings_name)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        database = describe(ctx_settings.effective_database_url)
        if as_json:
            emit_json({"worker": worker.name, "database": database}, compact=True)
        else:
            say(f"callhook worker {worker.name} delivering from {database}  (Ctrl-C to stop)")
        await run_worker(worker, stop, owns_database=False)
        return worker.name
    finally:
        with contextlib.suppress(Exception):
            await components.engine.dispose()


@click.command()
@click.option("--name", help="Name of this worker in logs and attempt records [default: host:pid]")
@context.setting_option(
    "--log-level",
    env="CALLHOOK_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging level (logs are JSON lines on stderr) [default: INFO]",
)
@context.database_options
@json_option
@click.pass_context
def worker(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Deliver webhooks from a PostgreSQL database shared with `callhook serve --no-worker`.

    Claims due deliveries with FOR UPDATE SKIP LOCKED and a lease, wakes on LISTEN/NOTIFY, and
    stops cleanly on Ctrl-C or SIGTERM (requests in flight finish first). On the embedded
    SQLite database `callhook serve` already runs the worker.
    """
    settings = context.settings(ctx)
    if settings.uses_default_sqlite or settings.effective_database_url.startswith("sqlite"):
        raise ConfigError(
            "callhook worker needs PostgreSQL (set CALLHOOK_DATABASE_URL or --database-url); "
            "on SQLite, `callhook serve` delivers by itself"
        )
    logs.configure(settings.log_level)
    stopped = asyncio.run(_work(name, settings, as_json))
    if not as_json:
        say(f"callhook worker {stopped} stopped")
