"""The ``callhook`` command: serve, migrate and admin.

Errors callhook raises on purpose are printed as ``error: <message>`` on stderr, never as a
traceback: exit status 2 for configuration and database problems, 1 for anything else.
"""

from __future__ import annotations

from typing import Any

import click

from callhook import __version__
from callhook.cli.admin import admin
from callhook.cli.links import source
from callhook.cli.listen import listen
from callhook.cli.migrate import migrate
from callhook.cli.output import fail
from callhook.cli.serve import serve
from callhook.cli.simulate import simulate
from callhook.cli.worker import worker
from callhook.errors import CallhookError, ConfigError

EXIT_USER = 1
EXIT_CONFIG = 2


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
        except CallhookError as exc:
            raise fail(str(exc), EXIT_USER) from None


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="callhook")
def cli() -> None:
    """callhook: phone calls in, HTTP requests out.

    A self-hostable service compatible with the VoipNow UnifiedAPI PhoneCallEvents API.
    Settings come from CALLHOOK_* environment variables; options override them.
    """


cli.add_command(serve)
cli.add_command(migrate)
cli.add_command(admin)
cli.add_command(worker)
cli.add_command(listen)
cli.add_command(simulate)
cli.add_command(source)


def main() -> None:
    cli(prog_name="callhook")


__all__ = ["cli", "main"]
