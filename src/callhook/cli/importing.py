"""``callhook admin import FILE``: load a whole directory from a JSON or YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from callhook import directory_import
from callhook.cli import context
from callhook.cli.output import emit_json, json_option, say, table
from callhook.directory_import.apply import ImportResult
from callhook.errors import RequestInvalid
from callhook.wiring import Components


def read(path: Path) -> directory_import.DirectoryFile:
    """The validated document in the file at ``path`` (reading is the only I/O here)."""
    fmt = directory_import.format_of(path.name)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RequestInvalid(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise RequestInvalid(f"cannot read {path}: {exc.strerror or exc}") from None
    return directory_import.validate(directory_import.parse_text(text, fmt))


def _document(path: Path, result: ImportResult) -> dict[str, Any]:
    return {
        "file": str(path),
        "dry_run": result.dry_run,
        "changed": result.changed,
        "counts": result.counts,
        "created_apps": [
            {
                "where": a.where,
                "account_id": a.account_id,
                "name": a.name,
                "client_id": a.client_id,
                "client_secret": a.client_secret,
            }
            for a in result.created_apps
        ],
    }


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and count the changes, then roll them back.")
@context.database_options
@json_option
@click.pass_context
def import_file(ctx: click.Context, file: Path, dry_run: bool, as_json: bool) -> None:
    """Create or update accounts, extensions and apps from FILE (.json, .yaml or .yml).

    Idempotent: a second run with the same file changes nothing. Nothing is ever deleted.
    The whole file is checked first and every problem reported with its location; the changes
    are made in one transaction. The format: docs/reference/directory.md.
    """
    document = read(file)

    async def work(components: Components) -> ImportResult:
        return await components.provisioning.import_directory(document, dry_run=dry_run)

    result = context.run(ctx, work)
    if as_json:
        emit_json(_document(file, result))
        return
    rows = [
        [kind.replace("_", " "), str(n["created"]), str(n["updated"]), str(n["unchanged"])]
        for kind, n in result.counts.items()
    ]
    table(["KIND", "CREATED", "UPDATED", "UNCHANGED"], rows, empty="")
    if not result.changed:
        say(f"nothing to change: the database already holds what {file} describes")
    elif result.dry_run:
        say("dry run: nothing was changed")
    else:
        say(f"imported {file}")
    new_secrets = [a for a in result.created_apps if a.client_secret]
    if new_secrets:
        say()
        say("New app credentials (shown only now; callhook keeps only the secrets' hashes):")
        for a in new_secrets:
            say(f"  {a.where} {a.name!r} (account {a.account_id})")
            say(f"    client_id:     {a.client_id}")
            say(f"    client_secret: {a.client_secret}")
