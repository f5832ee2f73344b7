"""Settings and the database for a command: options that map to CALLHOOK_* settings, and
running a command's work on a migrated database with driver errors turned into one line."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from alembic.util.exc import CommandError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from callhook.config import Settings
from callhook.errors import ConfigError
from callhook.store.database import describe
from callhook.wiring import Components, build, prepare_database

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_GIVEN = "callhook.settings"
#: environment variable -> Settings field, for the settings a command line may override
FIELDS = {
    "CALLHOOK_DATA_DIR": "data_dir",
    "CALLHOOK_DATABASE_URL": "database_url",
    "CALLHOOK_HOST": "host",
    "CALLHOOK_PORT": "port",
    "CALLHOOK_LOG_LEVEL": "log_level",
}


def setting_option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """An option for the setting read from ``env``; --help shows the variable's name."""
    assert env in FIELDS

    def remember(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None:
            ctx.meta.setdefault(_GIVEN, {})[env] = str(value)
        return value

    return click.option(
        *decls, envvar=env, show_envvar=True, expose_value=False, callback=remember, **kwargs
    )


def database_options(func: F) -> F:
    func = setting_option(
        "--database-url",
        env="CALLHOOK_DATABASE_URL",
        metavar="URL",
        help="Database URL: postgresql://user@host/db or sqlite:///file.db "
        "[default: SQLite in the data directory]",
    )(func)
    return setting_option(
        "--data-dir",
        env="CALLHOOK_DATA_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory for the SQLite database, TLS certificates and bootstrap credentials "
        "[default: ./callhook-data]",
    )(func)


def settings(ctx: click.Context) -> Settings:
    """Settings from CALLHOOK_* variables, with the options given on the command line."""
    base = Settings.from_env()
    given: dict[str, str] = ctx.meta.get(_GIVEN, {})
    if not given:
        return base
    parsed = Settings.from_env(given)
    return dataclasses.replace(base, **{FIELDS[k]: getattr(parsed, FIELDS[k]) for k in given})


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, ConnectionError) and exc.errno:
        return os.strerror(exc.errno)  # "Connection refused", not asyncpg's "Connect call failed"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^<class '[\w.]+'>: ", "", text)


def database_error(settings: Settings, exc: BaseException) -> ConfigError:
    url = describe(settings.effective_database_url)
    return ConfigError(f"cannot use the database {url}: {_reason(exc)}")


async def prepare(components: Components) -> tuple[str | None, str]:
    """Migrate the database to the newest schema; failures become one-line ConfigErrors."""
    try:
        return await prepare_database(components)
    except (OSError, SQLAlchemyError, CommandError) as exc:
        raise database_error(components.settings, exc) from None


def open_components(settings: Settings) -> Components:
    try:
        return build(settings)
    except (OSError, SQLAlchemyError) as exc:
        raise database_error(settings, exc) from None


async def with_database(
    settings: Settings,
    work: Callable[[Components], Awaitable[T]],
    *,
    migrate: bool = True,
) -> T:
    components = open_components(settings)
    try:
        if migrate:
            await prepare(components)
        try:
            return await work(components)
        except (OperationalError, InterfaceError) as exc:
            raise database_error(settings, exc) from None
    finally:
        await components.close()


def run(
    ctx: click.Context, work: Callable[[Components], Awaitable[T]], *, migrate: bool = True
) -> T:
    """Run ``work`` on a database brought to the newest schema (unless ``migrate`` is off)."""
    return asyncio.run(with_database(settings(ctx), work, migrate=migrate))
