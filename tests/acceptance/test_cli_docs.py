"""docs/reference/cli.md names every command and option of ``callhook`` (kept honest here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

from callhook.cli import cli

CLI_DOC = Path(__file__).parents[2] / "docs" / "reference" / "cli.md"


def commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from commands(command, path)
        else:
            yield path, command


def test_every_command_and_option_is_documented() -> None:
    doc = CLI_DOC.read_text("utf-8")
    missing = []
    for path, command in commands(cli, "callhook"):
        if path not in doc:
            missing.append(path)
        for param in command.params:
            for option in getattr(param, "opts", []):
                if option.startswith("--") and option not in doc and option != "--help":
                    missing.append(f"{path} {option}")
    assert not missing, f"not in {CLI_DOC.name}: {missing}"


def test_every_command_takes_json() -> None:
    lacking = [
        path
        for path, command in commands(cli, "callhook")
        if "--json" not in {opt for p in command.params for opt in getattr(p, "opts", [])}
    ]
    assert lacking == []
