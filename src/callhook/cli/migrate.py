"""``callhook migrate``: bring the database to the newest schema."""

from __future__ import annotations

import click

from callhook.cli import context
from callhook.cli.output import emit_json, json_option, say
from callhook.store.database import describe
from callhook.wiring import Components


@click.command()
@context.database_options
@json_option
@click.pass_context
def migrate(ctx: click.Context, as_json: bool) -> None:
    """Apply pending database migrations (serve and admin commands do this too)."""

    async def work(components: Components) -> tuple[str | None, str]:
        return await context.prepare(components)

    before, after = context.run(ctx, work, migrate=False)
    url = describe(context.settings(ctx).effective_database_url)
    if as_json:
        emit_json({"database": url, "from": before, "to": after, "changed": before != after})
    elif before == after:
        say(f"database {url} is up to date (revision {after})")
    else:
        say(f"database {url} migrated from {before or 'empty'} to revision {after}")
