"""``callhook migrate`` and ``callhook admin ...`` in subprocesses, on a SQLite data directory."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from callhook.config import Settings
from callhook.errors import OAuthError
from callhook.wiring import build
from tests.acceptance.cli_process import CALLHOOK, Cli, cli_env


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(cli_env(tmp_path / "data"), cwd=tmp_path)


def token_for(data_dir: Path, client_id: str, secret: str) -> str:
    """Ask the service (in this process, on the same database) for a token."""

    async def issue() -> str:
        built = build(Settings(data_dir=data_dir))
        try:
            body = await built.oauth.issue_token(
                {"grant_type": "client_credentials"}, (client_id, secret)
            )
            return str(body["access_token"])
        finally:
            await built.engine.dispose()

    return asyncio.run(issue())


def directory(cli: Cli) -> dict[str, int]:
    """admin > sp > org 0003 > user, created through the CLI; returns their ids."""
    ids = {"admin": cli.json("admin", "administrator", "create", "Root")["id"]}
    ids["sp"] = cli.json("admin", "service-provider", "create", "Acme Telecom")["id"]
    org = cli.json(
        "admin", "organization", "create", "Example Corp", "--parent", str(ids["sp"]), "--code", "3"
    )
    ids["org"] = org["id"]
    ids["user"] = cli.json("admin", "user", "create", "Alice", "--parent", str(org["id"]))["id"]
    return ids


def test_migrate_reports_revisions(cli: Cli) -> None:
    first = cli.ok("migrate")
    assert "migrated from empty to revision" in first.out
    assert "callhook.db" in first.out
    again = cli.json("migrate")
    assert again["from"] == again["to"]
    assert again["changed"] is False
    assert again["database"].startswith("sqlite+aiosqlite:///")


def test_accounts_create_list_delete(cli: Cli) -> None:
    ids = directory(cli)
    human = cli.ok("admin", "organization", "create", "Other Corp", "--parent", str(ids["sp"]))
    assert "0004" in human.out  # the next code, shown with four digits

    accounts = cli.json("admin", "account", "list")
    assert [a["kind"] for a in accounts] == [
        "admin",
        "service-provider",
        "organization",
        "user",
        "organization",
    ]
    org = next(a for a in accounts if a["id"] == ids["org"])
    assert org == {
        "id": ids["org"],
        "kind": "organization",
        "name": "Example Corp",
        "parent_id": ids["sp"],
        "code": 3,
        "path": f"{ids['admin']}/{ids['sp']}/{ids['org']}",
    }
    orgs = cli.json("admin", "account", "list", "--kind", "organization")
    assert [o["code"] for o in orgs] == [3, 4]
    assert cli.json("admin", "user", "list") == [a for a in accounts if a["kind"] == "user"]
    table = cli.ok("admin", "account", "list").out
    assert "Example Corp" in table
    assert "0003" in table

    error = cli.fails(1, "admin", "account", "delete", str(ids["org"]))
    assert "--cascade" in error
    error = cli.fails(1, "admin", "user", "delete", str(ids["org"]))
    assert "is an organization, not a user" in error
    deleted = cli.json("admin", "organization", "delete", str(ids["org"]), "--cascade")
    assert deleted["deleted"]["id"] == ids["org"]
    remaining = {a["id"] for a in cli.json("admin", "account", "list")}
    assert ids["org"] not in remaining
    assert ids["user"] not in remaining


def test_service_provider_needs_an_administrator(cli: Cli) -> None:
    error = cli.fails(1, "admin", "service-provider", "create", "Acme")
    assert "no administrator" in error


def test_extensions(cli: Cli) -> None:
    ids = directory(cli)
    owner = str(ids["user"])
    ext = cli.json(
        "admin", "extension", "create", "--owner", owner, "210", "--type", "phone-terminal",
        "--name", "Alice desk",
    )  # fmt: skip
    assert ext["extended"] == "0003*210"
    assert ext["takes_events"] is True
    cli.ok("admin", "extension", "create", "--owner", owner, "500", "--type", "voicemail-center")
    listed = cli.json("admin", "extension", "list", "--under", str(ids["org"]))
    assert [(e["extended"], e["type"]) for e in listed] == [
        ("0003*210", "phone-terminal"),
        ("0003*500", "voicemail-center"),
    ]
    assert "0003*210" in cli.ok("admin", "extension", "list").out

    error = cli.fails(1, "admin", "extension", "create", "--owner", owner, "210", "--type", "queue")
    assert "already exists" in error
    error = cli.fails(
        1, "admin", "extension", "create", "--owner", str(ids["org"]), "211", "--type", "queue"
    )
    assert "belong to users" in error

    assert cli.json("admin", "extension", "delete", "0003*210")["deleted"]["number"] == "210"
    assert [e["extended"] for e in cli.json("admin", "extension", "list")] == ["0003*500"]
    assert "no extension 0003*210" in cli.fails(1, "admin", "extension", "delete", "0003*210")


def test_apps_secret_shown_once_and_rotated(cli: Cli, tmp_path: Path) -> None:
    ids = directory(cli)
    created = cli.json("admin", "app", "create", "--account", str(ids["user"]), "CRM")
    client_id, secret = created["client_id"], created["client_secret"]
    assert created["account_id"] == ids["user"]
    data_dir = tmp_path / "data"
    token_for(data_dir, client_id, secret)
    assert secret.encode() not in (data_dir / "callhook.db").read_bytes()

    human = cli.ok("admin", "app", "create", "--account", str(ids["org"]), "Helpdesk").out
    assert "client_secret:" in human
    assert "shown only now" in human

    listed = cli.json("admin", "app", "list")
    assert [a["name"] for a in listed] == ["CRM", "Helpdesk"]
    assert all("client_secret" not in a for a in listed)
    listing = cli.ok("admin", "app", "list").out
    assert client_id in listing
    assert secret not in listing

    rotated = cli.json("admin", "app", "rotate-secret", client_id)
    assert rotated["client_secret"] != secret
    with pytest.raises(OAuthError):
        token_for(data_dir, client_id, secret)
    token_for(data_dir, client_id, rotated["client_secret"])

    assert cli.json("admin", "app", "delete", client_id)["deleted"]["client_id"] == client_id
    assert "no app" in cli.fails(1, "admin", "app", "delete", client_id)
    assert "no app" in cli.fails(1, "admin", "app", "rotate-secret", client_id)


def test_user_errors_exit_1_without_traceback(cli: Cli) -> None:
    cli.ok("migrate")
    assert "no account with id 99" in cli.fails(1, "admin", "user", "create", "X", "--parent", "99")
    assert "no account with id 99" in cli.fails(1, "admin", "account", "delete", "99")
    ids = directory(cli)
    error = cli.fails(
        1, "admin", "organization", "create", "Dup", "--parent", str(ids["sp"]), "--code", "3"
    )
    assert "already taken" in error
    error = cli.fails(1, "admin", "user", "create", " ", "--parent", str(ids["org"]))
    assert "name" in error


def test_config_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    bad_scheme = cli_env(tmp_path / "data", "mysql://db/x")
    result = cli.run("admin", "account", "list", env=bad_scheme)
    assert result.code == 2
    assert result.err.startswith("error: CALLHOOK_DATABASE_URL")

    result = cli.run("migrate", env=cli_env(tmp_path / "data", CALLHOOK_TOKEN_TTL="soon"))
    assert result.code == 2
    assert "CALLHOOK_TOKEN_TTL" in result.err

    unreachable = cli_env(tmp_path / "data", "postgresql://callhook:s3cret@127.0.0.1:1/callhook")
    result = cli.run("admin", "account", "list", "--json", env=unreachable)
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith(
        "error: cannot use the database postgresql+asyncpg://callhook:***@"
    )
    assert "s3cret" not in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_options_override_settings_and_show_their_variables(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    cli.ok("--help")
    assert cli.json("migrate", "--data-dir", str(other))["changed"] is True
    assert (other / "callhook.db").exists()
    assert not (tmp_path / "data").exists()

    serve_help = cli.ok("serve", "--help").out
    for variable in ("CALLHOOK_HOST", "CALLHOOK_PORT", "CALLHOOK_LOG_LEVEL", "CALLHOOK_DATA_DIR"):
        assert variable in serve_help
    assert "CALLHOOK_DATABASE_URL" in cli.ok("admin", "account", "list", "--help").out


def test_set_password_lets_an_account_sign_in(cli: Cli) -> None:
    cli.ok("admin", "administrator", "create", "Root")
    command = [*CALLHOOK, "admin", "account", "set-password", "1", "--login", "root"]
    done = subprocess.run(
        [*command, "--password-stdin"],
        input="a long enough password\n",
        env=cli.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "signs in as 'root'" in done.stdout
    short = subprocess.run(
        [*command, "--password-stdin"],
        input="short\n",
        env=cli.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert short.returncode == 1
    assert "at least 10 characters" in short.stderr
    assert cli.json("admin", "account", "set-password", "1", "--clear")["login"] is None
    assert "no account with id 9" in cli.fails(
        1, "admin", "account", "set-password", "9", "--clear"
    )
