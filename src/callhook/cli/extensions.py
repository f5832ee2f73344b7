"""``callhook admin extension create|list|delete``."""

from __future__ import annotations

import click

from callhook.cli import context
from callhook.cli.output import emit_json, extension_doc, json_option, say, table
from callhook.domain.accounts import Extension, ExtensionType
from callhook.wiring import Components

TYPE_NAMES = [t.value for t in ExtensionType]


@click.group()
def extension() -> None:
    """Extensions: numbered within an organization, owned by a user."""


@extension.command("create")
@click.option("--owner", type=int, required=True, metavar="USER_ID", help="The user it belongs to.")
@click.option("--type", "ext_type", type=click.Choice(TYPE_NAMES), required=True, help="Its type.")
@click.option("--name", default="", help='A label, e.g. "Reception desk".')
@click.argument("number")
@context.database_options
@json_option
@click.pass_context
def create(
    ctx: click.Context, owner: int, ext_type: str, name: str, number: str, as_json: bool
) -> None:
    """Create extension NUMBER (1 to 12 digits, e.g. 210) for a user."""

    async def work(components: Components) -> Extension:
        return await components.provisioning.create_extension(
            owner, number, ExtensionType(ext_type), name
        )

    ext = context.run(ctx, work)
    if as_json:
        emit_json(extension_doc(ext))
        return
    say(f"created extension {ext.extended} ({ext.type.value}) for user {owner} {ext.owner.name!r}")
    if not ext.type.takes_events:
        say(f"note: a {ext.type.value} extension takes no PhoneCallEvents")


@extension.command("list")
@click.option("--under", type=int, metavar="ACCOUNT_ID", help="Only extensions below this account.")
@context.database_options
@json_option
@click.pass_context
def list_extensions(ctx: click.Context, under: int | None, as_json: bool) -> None:
    """List extensions, by organization code and number."""

    async def work(components: Components) -> list[Extension]:
        return await components.provisioning.list_extensions(under)

    found = context.run(ctx, work)
    if as_json:
        emit_json([extension_doc(e) for e in found])
        return
    rows = [
        [
            e.extended,
            e.type.value,
            e.name,
            f"{e.owner.id} {e.owner.name}",
            "yes" if e.type.takes_events else "no",
        ]
        for e in found
    ]
    table(["EXTENSION", "TYPE", "NAME", "OWNER", "EVENTS"], rows, empty="no extensions")


@extension.command("delete")
@click.argument("extended", metavar="EXTENSION")
@context.database_options
@json_option
@click.pass_context
def delete(ctx: click.Context, extended: str, as_json: bool) -> None:
    """Delete an extension by its extended number, e.g. 0003*210 (and its PhoneCallEvents)."""

    async def work(components: Components) -> Extension:
        return await components.provisioning.delete_extension(extended)

    ext = context.run(ctx, work)
    if as_json:
        emit_json({"deleted": extension_doc(ext)})
        return
    say(f"deleted extension {ext.extended}")
