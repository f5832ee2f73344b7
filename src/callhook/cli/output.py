"""How commands answer: one JSON document for scripts, rich tables and plain lines for people,
``error: <message>`` on stderr for failures."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from callhook.domain.accounts import Account, Extension, format_org_code
from callhook.store.credentials import App

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    """``--json``: print one machine-readable JSON document on stdout instead of text."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON document on stdout (for scripts) instead of text.",
    )(func)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def emit_json(document: Any, *, compact: bool = False) -> None:
    indent = None if compact else 2
    click.echo(json.dumps(document, indent=indent, default=_default, ensure_ascii=False))


def say(text: str = "") -> None:
    click.echo(text)


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> None:
    if not rows:
        say(empty)
        return
    grid = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for column in grid.columns:
        column.overflow = "fold"
    for row in rows:
        grid.add_row(*row)
    # piped or captured: no terminal to fit, so no column is folded into two lines
    width = None if sys.stdout.isatty() else 240
    Console(soft_wrap=False, highlight=False, width=width).print(grid)


def fail(message: str, exit_code: int) -> click.exceptions.Exit:
    """Print ``error: message`` on stderr; raise the result to leave with ``exit_code``."""
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(exit_code)


# --- documents -------------------------------------------------------------------------------


def account_doc(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "kind": account.kind.value,
        "name": account.name,
        "parent_id": account.parent_id,
        "code": account.org_code,
        "path": account.path,
    }


def account_label(account: Account) -> str:
    code = f" {format_org_code(account.org_code)}" if account.org_code is not None else ""
    return f"{account.kind.value} {account.id}{code} {account.name!r}"


def extension_doc(ext: Extension) -> dict[str, Any]:
    return {
        "id": ext.id,
        "extended": ext.extended,
        "number": ext.number,
        "organization_code": ext.org_code,
        "type": ext.type.value,
        "name": ext.name,
        "takes_events": ext.type.takes_events,
        "owner_id": ext.owner.id,
        "owner_name": ext.owner.name,
    }


def app_doc(app: App) -> dict[str, Any]:
    return {
        "client_id": app.client_id,
        "name": app.name,
        "account_id": app.account_id,
        "redirect_uri": app.redirect_uri,
        "created": app.created,
    }
