"""The directory file: parsing, validation with locations, and the plan against a snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callhook.directory_import import (
    CreateAccount,
    CreateApp,
    CreateExtension,
    DirectoryFile,
    ImportInvalid,
    Snapshot,
    UpdateAccount,
    UpdateApp,
    UpdateExtension,
    format_of,
    load,
    parse_text,
    plan,
    validate,
)
from callhook.domain.accounts import Account, AccountKind, Extension, ExtensionType
from callhook.store.credentials import App

DOCS = Path(__file__).parents[2] / "docs" / "reference" / "directory.md"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def docs_example_text() -> str:
    return DOCS.read_text("utf-8").split("```yaml\n", 1)[1].split("```", 1)[0]


def problems(data: Any) -> list[str]:
    with pytest.raises(ImportInvalid) as caught:
        validate(data)
    return caught.value.problems


def never(_hash: str, _secret: str) -> bool:
    raise AssertionError("no secret to check")


# --- parsing and validation -----------------------------------------------------------------


def test_docs_example_is_valid() -> None:
    doc = load(docs_example_text(), "directory.yaml")
    acme = doc.service_providers[0]
    assert acme.name == "Acme Telecom"
    assert acme.apps[0].client_id == "acme-portal-0001"
    assert [o.code for o in acme.organizations] == [3, 4]
    alice = acme.organizations[0].users[0]
    assert [(e.number, e.type) for e in alice.extensions] == [
        ("210", ExtensionType.PHONE_TERMINAL),
        ("300", ExtensionType.QUEUE),
    ]
    assert alice.extensions[0].where == (
        "service_providers[0].organizations[0].users[0].extensions[0]"
    )
    assert [a.name for a in doc.apps] == ["provisioning"]


def test_json_and_yaml_give_the_same_document() -> None:
    from_yaml = load(docs_example_text(), "d.yml")
    as_json = json.dumps(parse_text(docs_example_text(), "yaml"))
    assert load(as_json, "d.json") == from_yaml


def test_format_by_extension() -> None:
    assert format_of("a.JSON") == "json"
    assert format_of("a.yaml") == format_of("b.yml") == "yaml"
    with pytest.raises(ImportInvalid, match=r"\.json, \.yaml or \.yml"):
        format_of("a.txt")


def test_yaml_numbers_with_leading_zeros_stay_as_written() -> None:
    text = """
service_providers:
  - name: sp
    organizations:
      - name: org
        code: 0003
        users:
          - name: u
            extensions:
              - {number: 0210, type: queue}
              - {number: 211, type: ivr}
"""
    org = load(text, "d.yaml").service_providers[0].organizations[0]
    assert org.code == 3
    assert [e.number for e in org.users[0].extensions] == ["0210", "211"]


def test_syntax_errors_have_a_line() -> None:
    with pytest.raises(ImportInvalid, match=r"line 1 column \d+"):
        parse_text('{"apps": [}', "json")
    with pytest.raises(ImportInvalid, match=r"line 2 column \d+"):
        parse_text("apps: [\n  x", "yaml")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, "the file is empty"),
        ([], "(top level): must be a mapping"),
        ({"version": 2}, "version: must be 1"),
        ({"sevice_providers": []}, "sevice_providers: unknown key"),
        ({"service_providers": {}}, "service_providers: must be a list"),
        ({"service_providers": ["x"]}, "service_providers[0]: must be a mapping"),
        ({"service_providers": [{}]}, "service_providers[0].name: is required"),
        ({"service_providers": [{"name": "  "}]}, "service_providers[0].name: must not be empty"),
        ({"service_providers": [{"name": 5}]}, "service_providers[0].name: must be a string"),
        ({"service_providers": [{"name": "x" * 201}]}, "at most 200 characters"),
        ({"apps": [{"name": "a", "client_id": "short"}]}, "apps[0].client_id: must be 8 to 64"),
        ({"apps": [{"name": "a", "client_secret": "tiny"}]}, "at least 16 characters"),
        (
            {"apps": [{"name": "a", "client_id": "has a space"}]},
            "apps[0].client_id: must be 8 to 64 printable characters, no spaces",
        ),
        (
            {"apps": [{"name": "a"}, {"name": "a"}]},
            "apps[1].name: the app name 'a' of the administrator is already used at apps[0].name",
        ),
    ],
)
def test_each_problem_has_its_location(data: Any, expected: str) -> None:
    assert any(expected in p for p in problems(data)), problems(data)


def org_doc(**org: Any) -> dict[str, Any]:
    return {"service_providers": [{"name": "sp", "organizations": [{"name": "o", **org}]}]}


@pytest.mark.parametrize(
    ("org", "expected"),
    [
        ({}, "organizations[0].code: is required"),
        ({"code": 0}, "organizations[0].code: must be a whole number from 1 to 999999999"),
        ({"code": 1_000_000_000}, "must be a whole number from 1 to 999999999"),
        ({"code": True}, "must be a whole number"),
        ({"code": "3a"}, "must be a whole number"),
        (
            {"code": 1, "users": [{"name": "u", "extensions": [{"type": "ivr"}]}]},
            ".number: is required",
        ),
        (
            {"code": 1, "users": [{"name": "u", "extensions": [{"number": "2x", "type": "ivr"}]}]},
            "users[0].extensions[0].number: must be 1 to 12 digits",
        ),
        (
            {"code": 1, "users": [{"name": "u", "extensions": [{"number": "1"}]}]},
            "users[0].extensions[0].type: is required",
        ),
        (
            {"code": 1, "users": [{"name": "u", "extensions": [{"number": "1", "type": "fax"}]}]},
            "users[0].extensions[0].type: must be one of phone-terminal, queue",
        ),
        (
            {"code": 1, "users": [{"name": "u"}, {"name": "u"}]},
            "users[1].name: the user name 'u' is already used at",
        ),
        (
            {
                "code": 1,
                "users": [
                    {"name": "a", "extensions": [{"number": "1", "type": "ivr"}]},
                    {"name": "b", "extensions": [{"number": "1", "type": "queue"}]},
                ],
            },
            "users[1].extensions[0].number: extension 1 is already used at "
            "service_providers[0].organizations[0].users[0].extensions[0].number",
        ),
    ],
)
def test_organization_problems(org: dict[str, Any], expected: str) -> None:
    found = problems(org_doc(**org))
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "service_providers": [
            {"name": "a", "organizations": [{"name": "x", "code": 3}, {"name": "y", "code": 3}]},
            {"name": "a", "bogus": 1},
        ],
        "apps": [{"name": "p", "client_id": "same-id-1"}, {"name": "q", "client_id": "same-id-1"}],
    }
    assert problems(data) == [
        "apps[1].client_id: this client_id is already used at apps[0].client_id",
        "service_providers[0].organizations[1].code: organization code 3 is already used at "
        "service_providers[0].organizations[0].code",
        "service_providers[1].bogus: unknown key (use name, apps, organizations)",
        "service_providers[1].name: the service provider name 'a' is already used at "
        "service_providers[0].name",
    ]


# --- planning ---------------------------------------------------------------------------------


def account(
    id: int, kind: AccountKind, name: str, parent: Account | None, code: int | None = None
) -> Account:
    path = f"{parent.path}/{id}" if parent else str(id)
    return Account(id, kind, name, parent.id if parent else None, path, code)


ADMIN = account(1, AccountKind.ADMIN, "Administrator", None)
SP = account(2, AccountKind.SERVICE_PROVIDER, "Acme Telecom", ADMIN)
ORG = account(3, AccountKind.ORGANIZATION, "Example Corp", SP, 3)
ALICE = account(4, AccountKind.USER, "Alice", ORG)
BOB = account(5, AccountKind.USER, "Bob", ORG)
EXT = Extension(10, "210", ExtensionType.PHONE_TERMINAL, "desk", ALICE, 3)
APP = App(20, "acme-portal-0001", "hash-of-old", SP.id, "portal", "", NOW)


def small_file(**changes: Any) -> DirectoryFile:
    data: dict[str, Any] = {
        "service_providers": [
            {
                "name": "Acme Telecom",
                "apps": [{"name": "portal", "client_id": "acme-portal-0001"}],
                "organizations": [
                    {
                        "name": "Example Corp",
                        "code": 3,
                        "users": [
                            {
                                "name": "Alice",
                                "extensions": [
                                    {"number": "210", "type": "phone-terminal", "name": "desk"}
                                ],
                            },
                            {"name": "Bob"},
                        ],
                    }
                ],
            }
        ]
    }
    for path, value in changes.items():
        target: Any = data
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        target[keys[-1]] = value
    return validate(data)


FULL = Snapshot([ADMIN, SP, ORG, ALICE, BOB], [EXT], [APP])


def test_plan_on_an_empty_database_creates_everything_in_order() -> None:
    result = plan(small_file(), Snapshot([], [], []), never)
    assert result.actions == [
        CreateAccount("admin", AccountKind.ADMIN, "Administrator", None),
        CreateAccount("sp:Acme Telecom", AccountKind.SERVICE_PROVIDER, "Acme Telecom", "admin"),
        CreateApp(small_file().service_providers[0].apps[0], "sp:Acme Telecom"),
        CreateAccount("org:3", AccountKind.ORGANIZATION, "Example Corp", "sp:Acme Telecom", 3),
        CreateAccount("user:3:Alice", AccountKind.USER, "Alice", "org:3"),
        CreateExtension("user:3:Alice", "210", ExtensionType.PHONE_TERMINAL, "desk"),
        CreateAccount("user:3:Bob", AccountKind.USER, "Bob", "org:3"),
    ]
    assert result.counts["users"] == {"created": 2, "unchanged": 0, "updated": 0}


def test_plan_on_a_matching_database_does_nothing() -> None:
    result = plan(small_file(), FULL, never)
    assert result.actions == []
    assert not result.changes
    assert all(c["created"] == c["updated"] == 0 for c in result.counts.values())
    assert result.counts["extensions"]["unchanged"] == 1


def test_plan_updates_names_owners_and_secrets() -> None:
    changed = small_file(
        service_providers__0__organizations__0__name="Example Corporation",
        service_providers__0__apps__0__client_secret="the-new-portal-secret",
    )
    result = plan(changed, FULL, lambda h, s: (h, s) == ("hash-of-old", "old-secret-123456"))
    assert result.actions == [
        UpdateApp(APP.id, "portal", "", "the-new-portal-secret"),
        UpdateAccount(ORG.id, "Example Corporation", None),
    ]
    same_secret = small_file(service_providers__0__apps__0__client_secret="old-secret-123456")
    assert plan(same_secret, FULL, lambda h, s: s == "old-secret-123456").actions == []


def test_plan_moves_an_extension_to_another_user() -> None:
    desk = {"number": "210", "type": "phone-terminal", "name": "desk"}
    users = [{"name": "Alice"}, {"name": "Bob", "extensions": [desk]}]
    result = plan(small_file(service_providers__0__organizations__0__users=users), FULL, never)
    assert result.actions == [UpdateExtension(EXT.id, BOB.id, ExtensionType.PHONE_TERMINAL, "desk")]
    assert result.counts["extensions"] == {"created": 0, "unchanged": 0, "updated": 1}


def test_plan_moves_an_organization_to_a_new_service_provider() -> None:
    data = small_file(service_providers__0__name="Beta Networks", service_providers__0__apps=[])
    result = plan(data, FULL, never)
    assert (
        CreateAccount("sp:Beta Networks", AccountKind.SERVICE_PROVIDER, "Beta Networks", ADMIN.id)
        in result.actions
    )
    assert UpdateAccount(ORG.id, "Example Corp", "sp:Beta Networks") in result.actions
    assert result.counts["organizations"]["updated"] == 1


def test_plan_reports_conflicts_with_the_database() -> None:
    other_admin = account(99, AccountKind.ADMIN, "Second", None)
    with pytest.raises(ImportInvalid, match="the database has 2 administrators"):
        plan(small_file(), Snapshot([ADMIN, other_admin], [], []), never)

    foreign = App(21, "acme-portal-0001", "h", ALICE.id, "portal", "", NOW)
    with pytest.raises(ImportInvalid) as caught:
        plan(small_file(), Snapshot([ADMIN, SP, ORG, ALICE, BOB], [EXT], [foreign]), never)
    assert caught.value.problems == [
        "service_providers[0].apps[0].client_id: acme-portal-0001 is the app of user 'Alice' "
        "(id 4); an import does not move apps"
    ]

    twin = account(6, AccountKind.USER, "Alice", ORG)
    with pytest.raises(ImportInvalid, match=r"users\[0\]\.name: 2 users called 'Alice'"):
        plan(small_file(), Snapshot([ADMIN, SP, ORG, ALICE, BOB, twin], [EXT], [APP]), never)
