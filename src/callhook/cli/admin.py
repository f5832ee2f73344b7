"""``callhook admin``: the directory (accounts, extensions, apps) from the command line."""

from __future__ import annotations

import click

from callhook.cli import accounts
from callhook.cli.apps import app
from callhook.cli.extensions import extension
from callhook.cli.importing import import_file
from callhook.cli.sources import source


@click.group()
def admin() -> None:
    """Manage accounts, extensions, apps and call-event sources.

    The hierarchy is administrator > service provider > organization > user; extensions
    belong to users and apps act as any account. Every command takes --json.
    """


for command in (
    accounts.administrator,
    accounts.service_provider,
    accounts.organization,
    accounts.user,
    accounts.account,
    extension,
    app,
    source,
    import_file,
):
    admin.add_command(command)
