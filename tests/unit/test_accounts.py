from __future__ import annotations

import pytest

from callhook.domain.accounts import (
    Account,
    AccountKind,
    ExtensionRef,
    ExtensionType,
    check_parent,
    format_extended,
    may_manage,
    parse_extension,
    parse_user_ref,
)
from callhook.errors import ServiceError

ADMIN = Account(1, AccountKind.ADMIN, "a", None, "1")
SP = Account(2, AccountKind.SERVICE_PROVIDER, "s", 1, "1/2")
ORG = Account(5, AccountKind.ORGANIZATION, "o", 2, "1/2/5", org_code=3)
ORG15 = Account(15, AccountKind.ORGANIZATION, "o", 2, "1/2/15", org_code=4)
USER = Account(9, AccountKind.USER, "u", 5, "1/2/5/9")
USER51 = Account(51, AccountKind.USER, "u", 5, "1/2/5/51")


def test_extension_numbers() -> None:
    assert parse_extension("0003*210") == ExtensionRef("210", 3)
    assert parse_extension("3*210") == ExtensionRef("210", 3)
    assert parse_extension("210") == ExtensionRef("210")
    assert format_extended(3, "210") == "0003*210"
    assert format_extended(12345, "1") == "12345*1"
    for bad in ("@self", "", "*210", "0003*", "0003*21a", "a*210", "0003**210", "../210"):
        with pytest.raises(ServiceError) as info:
            parse_extension(bad)
        assert info.value.code == "extension_invalid"


def test_user_refs() -> None:
    assert parse_user_ref("@me").text == "@me"
    assert parse_user_ref("42").account_id == 42
    for bad in ("me", "@self", "-1", "4 2", ""):
        with pytest.raises(ServiceError) as info:
            parse_user_ref(bad)
        assert info.value.code == "user_invalid"


def test_subtrees_are_by_path_not_by_prefix_of_ids() -> None:
    assert may_manage(ADMIN, USER)
    assert may_manage(SP, USER)
    assert may_manage(ORG, USER)
    assert may_manage(USER, USER)
    assert not may_manage(USER, USER51)
    assert not may_manage(ORG15, USER)
    # "1/2/5" must not contain "1/2/51..."
    assert not may_manage(ORG, Account(7, AccountKind.USER, "u", 51, "1/2/51/7"))
    assert ORG.organization_id() == 5
    assert USER.organization_id() == 5
    assert SP.organization_id() is None


def test_parents() -> None:
    assert check_parent(AccountKind.USER, ORG) is None
    assert check_parent(AccountKind.USER, SP) is not None
    assert check_parent(AccountKind.ADMIN, None) is None
    assert check_parent(AccountKind.ORGANIZATION, None) is not None


def test_extension_types_that_take_events() -> None:
    takes = {t for t in ExtensionType if t.takes_events}
    assert takes == {
        ExtensionType.PHONE_TERMINAL,
        ExtensionType.QUEUE,
        ExtensionType.CONFERENCE,
        ExtensionType.IVR,
    }
