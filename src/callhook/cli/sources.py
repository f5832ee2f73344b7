"""``callhook admin source create|list|delete``: who may push call events to the ingest API."""

from __future__ import annotations

import click

from callhook.cli import context
from callhook.cli.output import emit_json, json_option, say, table
from callhook.sources.registry import NewSource, SourceInfo, SourceRegistry
from callhook.store.sources import Source
from callhook.wiring import Components


@click.group()
def source() -> None:
    """Sources: PBXs and scripts that push call events (POST /callhook/v1/call-events)."""


@source.command("create")
@click.argument("name")
@context.database_options
@json_option
@click.pass_context
def create(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create a source; prints its token (only this once)."""

    async def work(components: Components) -> NewSource:
        return await SourceRegistry(components.engine).create(name)

    new = context.run(ctx, work)
    if as_json:
        emit_json({"name": new.source.name, "created": new.source.created, "token": new.token})
        return
    say(f"created source {new.source.name!r}")
    say(f"  token: {new.token}")
    say("The token is shown only now (callhook keeps only its hash); store it safely.")
    say("Send call events with: Authorization: Bearer TOKEN to POST /callhook/v1/call-events")


@source.command("list")
@context.database_options
@json_option
@click.pass_context
def list_sources(ctx: click.Context, as_json: bool) -> None:
    """List sources with how many call events each sent (never their tokens)."""

    async def work(components: Components) -> list[SourceInfo]:
        return await SourceRegistry(components.engine).list()

    found = context.run(ctx, work)
    docs = [
        {
            "name": i.source.name,
            "created": i.source.created,
            "events": i.events,
            "last_event": i.last_event,
        }
        for i in found
    ]
    if as_json:
        emit_json(docs)
        return
    table(
        ["name", "created", "events", "last event"],
        [
            [
                i.source.name,
                f"{i.source.created:%Y-%m-%d %H:%M}",
                str(i.events),
                f"{i.last_event:%Y-%m-%d %H:%M:%S}" if i.last_event else "-",
            ]
            for i in found
        ],
        empty="no sources yet; create one with: callhook admin source create NAME",
    )


@source.command("delete")
@click.argument("name")
@context.database_options
@json_option
@click.pass_context
def delete(ctx: click.Context, name: str, as_json: bool) -> None:
    """Delete a source with its calls, call events and their deliveries."""

    async def work(components: Components) -> Source:
        return await SourceRegistry(components.engine).delete(name)

    gone = context.run(ctx, work)
    if as_json:
        emit_json({"deleted": gone.name})
    else:
        say(f"deleted source {gone.name!r}")
