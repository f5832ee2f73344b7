"""``callhook admin app create|list|delete|rotate-secret``: OAuth clients of accounts."""

from __future__ import annotations

import click

from callhook.cli import context
from callhook.cli.output import app_doc, emit_json, json_option, say, table
from callhook.provisioning import NewApp
from callhook.store.credentials import App
from callhook.wiring import Components

SHOWN_ONCE = "The secret is shown only now (callhook keeps only its hash); store it safely."


def _show_new(new: NewApp, as_json: bool, headline: str) -> None:
    if as_json:
        emit_json({**app_doc(new.app), "client_secret": new.client_secret})
        return
    say(headline)
    say(f"  client_id:     {new.app.client_id}")
    say(f"  client_secret: {new.client_secret}")
    say(SHOWN_ONCE)


@click.group()
def app() -> None:
    """Apps: OAuth 2.0 clients that act as an account (client_credentials grant)."""


@app.command("create")
@click.option(
    "--account", "account_id", type=int, required=True, metavar="ID", help="The account it acts as."
)
@click.option("--redirect-uri", default="", help="Redirect URI, kept for UnifiedAPI compatibility.")
@click.argument("name")
@context.database_options
@json_option
@click.pass_context
def create(
    ctx: click.Context, account_id: int, redirect_uri: str, name: str, as_json: bool
) -> None:
    """Create an app; prints its client id and secret (the secret only this once)."""

    async def work(components: Components) -> NewApp:
        return await components.provisioning.create_app(account_id, name, redirect_uri)

    new = context.run(ctx, work)
    _show_new(new, as_json, f"created app {new.app.name!r} for account {account_id}")


@app.command("list")
@context.database_options
@json_option
@click.pass_context
def list_apps(ctx: click.Context, as_json: bool) -> None:
    """List apps (never their secrets)."""

    async def work(components: Components) -> list[App]:
        return await components.provisioning.list_apps()

    found = context.run(ctx, work)
    if as_json:
        emit_json([app_doc(a) for a in found])
        return
    rows = [
        [
            a.client_id,
            a.name,
            str(a.account_id),
            a.redirect_uri,
            a.created.strftime("%Y-%m-%d %H:%M"),
        ]
        for a in found
    ]
    table(["CLIENT ID", "NAME", "ACCOUNT", "REDIRECT URI", "CREATED (UTC)"], rows, empty="no apps")


@app.command("delete")
@click.argument("client_id")
@context.database_options
@json_option
@click.pass_context
def delete(ctx: click.Context, client_id: str, as_json: bool) -> None:
    """Delete an app; its tokens stop working at once."""

    async def work(components: Components) -> App:
        return await components.provisioning.delete_app(client_id)

    gone = context.run(ctx, work)
    if as_json:
        emit_json({"deleted": app_doc(gone)})
        return
    say(f"deleted app {gone.client_id} {gone.name!r}")


@app.command("rotate-secret")
@click.argument("client_id")
@context.database_options
@json_option
@click.pass_context
def rotate_secret(ctx: click.Context, client_id: str, as_json: bool) -> None:
    """Give an app a new secret; every token it holds is revoked."""

    async def work(components: Components) -> NewApp:
        return await components.provisioning.rotate_secret(client_id)

    new = context.run(ctx, work)
    _show_new(new, as_json, f"new secret for app {client_id}; all its tokens are revoked")
