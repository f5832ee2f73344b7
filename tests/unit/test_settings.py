from __future__ import annotations

import re
from pathlib import Path

import pytest

from callhook.config import SETTINGS_DOC, Settings
from callhook.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "settings.md"


def test_every_setting_is_documented_and_nothing_else() -> None:
    documented = set(re.findall(r"^\| `(CALLHOOK_[A-Z_]+)` \|", DOC.read_text(), re.M))
    assert documented == set(SETTINGS_DOC)


def test_defaults_use_sqlite_in_the_data_dir() -> None:
    settings = Settings.from_env({})
    assert settings.uses_default_sqlite
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.effective_database_url.endswith("callhook-data/callhook.db")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h:5/db", "postgresql+asyncpg://u@h:5/db"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls_pick_async_drivers(url: str, expected: str) -> None:
    assert Settings.from_env({"CALLHOOK_DATABASE_URL": url}).database_url == expected


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CALLHOOK_PORT": "http"}, "CALLHOOK_PORT"),
        ({"CALLHOOK_PORT": "70000"}, "out of range"),
        ({"CALLHOOK_DATABASE_URL": "mysql://x"}, "unsupported scheme"),
        ({"CALLHOOK_LOG_LEVEL": "loud"}, "CALLHOOK_LOG_LEVEL"),
        ({"CALLHOOK_PUBLIC_URL": "callhook.example.com"}, "https://"),
    ],
)
def test_bad_settings_say_what_to_fix(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings.from_env(env)
