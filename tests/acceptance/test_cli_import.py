"""``callhook admin import FILE`` in subprocesses, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from callhook.config import Settings
from callhook.wiring import build
from tests.acceptance.cli_process import Cli, cli_env
from tests.databases import PostgresTemplates

DOCS_EXAMPLE = Path(__file__).parents[2] / "docs" / "reference" / "directory.md"


def docs_example() -> dict[str, Any]:
    """The full example of docs/reference/directory.md."""
    text = DOCS_EXAMPLE.read_text("utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded: dict[str, Any] = yaml.safe_load(block)
    return loaded


def counts(created: int = 0, updated: int = 0, unchanged: int = 0) -> dict[str, int]:
    return {"created": created, "updated": updated, "unchanged": unchanged}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, postgres_templates: PostgresTemplates | None
) -> Iterator[str | None]:
    """None: the default SQLite file in the data directory; else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    if postgres_templates is None:
        pytest.skip("PostgreSQL tests need CALLHOOK_TEST_POSTGRES_URL")
    url = postgres_templates.clone()
    yield url
    postgres_templates.drop(url)


@pytest.fixture
def cli(tmp_path: Path, database_url: str | None) -> Cli:
    return Cli(cli_env(tmp_path / "data", database_url), cwd=tmp_path)


def token_for(cli: Cli, client_id: str, secret: str) -> None:
    async def issue() -> None:
        built = build(Settings.from_env(cli.env))
        try:
            await built.oauth.issue_token({"grant_type": "client_credentials"}, (client_id, secret))
        finally:
            await built.engine.dispose()

    asyncio.run(issue())


def test_import_is_idempotent_and_keeps_given_credentials(cli: Cli, tmp_path: Path) -> None:
    example = docs_example()
    file = tmp_path / "directory.yaml"
    file.write_text(yaml.safe_dump(example), "utf-8")

    first = cli.json("admin", "import", str(file))
    assert first["changed"] is True
    assert first["counts"] == {
        "administrators": counts(created=1),
        "service_providers": counts(created=1),
        "organizations": counts(created=2),
        "users": counts(created=3),
        "extensions": counts(created=5),
        "apps": counts(created=4),
    }
    generated = {a["name"]: a for a in first["created_apps"] if a["client_secret"]}
    assert set(generated) == {"provisioning", "helpdesk", "bob crm"}
    kept = next(a for a in first["created_apps"] if a["name"] == "acme portal")
    assert kept["client_id"] == "acme-portal-0001"
    assert kept["client_secret"] is None
    token_for(cli, "acme-portal-0001", "moved-from-voipnow-3f9a1c")
    token_for(cli, generated["bob crm"]["client_id"], generated["bob crm"]["client_secret"])

    second = cli.json("admin", "import", str(file))
    assert second["changed"] is False
    assert second["created_apps"] == []
    assert all(c["created"] == c["updated"] == 0 for c in second["counts"].values())
    assert "nothing to change" in cli.ok("admin", "import", str(file)).out

    extensions = cli.json("admin", "extension", "list")
    assert [e["extended"] for e in extensions] == [
        "0003*210",
        "0003*211",
        "0003*300",
        "0003*500",
        "0004*210",
    ]
    apps = cli.json("admin", "app", "list")
    assert len(apps) == 4
    assert all("client_secret" not in a for a in apps)


def test_import_updates_what_changed(cli: Cli, tmp_path: Path) -> None:
    example = docs_example()
    file = tmp_path / "directory.json"
    file.write_text(json.dumps(example), "utf-8")
    cli.ok("admin", "import", str(file))

    acme = example["service_providers"][0]
    example["service_providers"].append(
        {"name": "Beta Networks", "organizations": [acme["organizations"].pop(1)]}
    )  # Other Corp (code 4) moves to a new service provider
    org = acme["organizations"][0]
    org["name"] = "Example Corporation"
    alice, bob = org["users"]
    alice["extensions"][0]["name"] = "Alice's new desk"
    bob["extensions"].append(alice["extensions"].pop(1))  # queue 300 changes owner
    acme["apps"][0]["client_secret"] = "a-brand-new-secret-for-the-portal"
    file.write_text(json.dumps(example), "utf-8")

    dry = cli.json("admin", "import", "--dry-run", str(file))
    assert dry["dry_run"] is True
    assert cli.json("admin", "import", "--dry-run", str(file))["counts"] == dry["counts"]

    result = cli.json("admin", "import", str(file))
    assert result["counts"] == dry["counts"]
    assert result["counts"]["service_providers"] == counts(created=1, unchanged=1)
    assert result["counts"]["organizations"] == counts(updated=2)
    assert result["counts"]["extensions"] == counts(updated=2, unchanged=3)
    assert result["counts"]["apps"] == counts(updated=1, unchanged=3)
    token_for(cli, "acme-portal-0001", "a-brand-new-secret-for-the-portal")

    accounts = {a["name"]: a for a in cli.json("admin", "account", "list")}
    beta, other = accounts["Beta Networks"], accounts["Other Corp"]
    assert other["parent_id"] == beta["id"]
    carol = accounts["Carol"]
    assert carol["path"] == f"{other['path']}/{carol['id']}"
    assert "Example Corporation" in accounts
    queue = next(e for e in cli.json("admin", "extension", "list") if e["number"] == "300")
    assert queue["owner_name"] == "Bob"

    assert cli.json("admin", "import", str(file))["changed"] is False


def test_invalid_file_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "broken.yml"
    example = docs_example()
    example["service_providers"][0]["organizations"][1]["code"] = 0
    del example["service_providers"][0]["organizations"][0]["users"][0]["extensions"][0]["type"]
    file.write_text(yaml.safe_dump(example), "utf-8")
    error = cli.fails(1, "admin", "import", str(file))
    assert "2 problems, nothing was changed" in error
    assert "service_providers[0].organizations[1].code: must be a whole number" in error
    assert "service_providers[0].organizations[0].users[0].extensions[0].type: is required" in error
    assert cli.json("admin", "account", "list") == []


def test_conflicts_with_the_database_are_reported_before_any_change(
    cli: Cli, tmp_path: Path
) -> None:
    cli.ok("admin", "administrator", "create", "Root")
    sp = cli.json("admin", "service-provider", "create", "Somebody else")
    cli.ok("admin", "app", "create", "--account", str(sp["id"]), "x")
    taken = cli.json("admin", "app", "list")[0]["client_id"]
    file = tmp_path / "directory.yaml"
    example = docs_example()
    example["service_providers"][0]["apps"][0]["client_id"] = taken
    file.write_text(yaml.safe_dump(example), "utf-8")

    error = cli.fails(1, "admin", "import", str(file))
    assert f"service_providers[0].apps[0].client_id: {taken} is the app of" in error
    assert len(cli.json("admin", "account", "list")) == 2
