"""Source URLs and options: what a PBX link is told, and the errors a typo gets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from callhook.config import Settings
from callhook.errors import ConfigError
from callhook.sources.runner import Backoff
from callhook.sources.spec import make_spec, parse_age, parse_source_url, parse_source_urls


def test_an_ami_url_with_every_parameter() -> None:
    spec = parse_source_url(
        "ami://callhook:s%40cret@pbx.example.com:5039?org=3&name=main-pbx"
        "&extensions=2%5Cd%5Cd&max_call_age=90m"
    )
    assert (spec.kind, spec.host, spec.port, spec.username, spec.secret) == (
        "ami",
        "pbx.example.com",
        5039,
        "callhook",
        "s@cret",
    )
    assert (spec.name, spec.org, spec.extension_pattern) == ("main-pbx", 3, r"2\d\d")
    assert spec.max_call_age == timedelta(minutes=90)
    assert spec.numbering.extension("210") == "0003*210"
    assert spec.describe() == "ami://callhook@pbx.example.com:5039 (source main-pbx, org 3)"
    assert "cret" not in spec.describe()
    assert "cret" not in repr(spec.target)


def test_defaults_per_kind() -> None:
    ami = parse_source_url("ami://u:s@10.0.0.5?org=0")
    assert (ami.port, ami.name, ami.max_call_age) == (5038, "asterisk", timedelta(hours=4))
    esl = parse_source_url("esl://:ClueCon@[::1]?org=12&format=json")
    assert (esl.host, esl.port, esl.name, esl.username, esl.secret) == (
        "::1",
        8021,
        "freeswitch",
        "",
        "ClueCon",
    )
    assert esl.event_format == "json"
    assert esl.target == "[::1]:8021"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://pbx?org=3", "use ami://USER:SECRET@HOST:5038?org=N"),
        ("ami://u:s@pbx", "organization code is missing"),
        ("ami://u:s@pbx?org=three", "org='three' must be the organization code"),
        ("ami://u:s@pbx?org=3&colour=red", "unknown parameter 'colour'"),
        ("ami://:s@pbx?org=3", "AMI username is missing"),
        ("ami://u@pbx?org=3", "AMI secret is missing"),
        ("esl://pbx?org=3", "ESL password is missing"),
        ("ami://u:s@pbx:99999?org=3", "port is not a number"),
        ("ami://u:s@?org=3", "host is missing"),
        ("esl://:p@pbx?org=3&format=xml", "format 'xml'"),
        ("ami://u:s@pbx?org=3&extensions=(", "not a regular expression"),
        ("ami://u:s@pbx?org=3&name=a%20b", "source name 'a b'"),
        ("ami://u:s@pbx?org=3&max_call_age=forever", "is not a duration"),
        ("ami://u:s@pbx?org=3&max_call_age=10s", "out of range"),
    ],
)
def test_bad_urls_say_what_to_fix_without_the_secret(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match="source URL") as caught:
        parse_source_url(url)
    assert message in str(caught.value)
    assert ":s@" not in str(caught.value)
    assert ":p@" not in str(caught.value)


def test_callhook_sources_holds_several_urls_with_distinct_names() -> None:
    specs = parse_source_urls("ami://u:s@a?org=3  esl://:p@b?org=3\n")
    assert [s.kind for s in specs] == ["ami", "esl"]
    with pytest.raises(ConfigError, match="two sources are named 'asterisk'"):
        parse_source_urls("ami://u:s@a?org=3 ami://u:s@b?org=4")
    with pytest.raises(ConfigError, match="CALLHOOK_SOURCES #2: "):
        parse_source_urls("ami://u:s@a?org=3 ami://u:s@b")
    assert parse_source_urls("") == []


def test_settings_check_the_sources_at_start() -> None:
    assert Settings.from_env({"CALLHOOK_SOURCES": "esl://:p@b?org=3"}).sources
    with pytest.raises(ConfigError, match="organization code is missing"):
        Settings.from_env({"CALLHOOK_SOURCES": "esl://:p@b"})


def test_make_spec_checks_options() -> None:
    with pytest.raises(ConfigError, match="unknown source kind"):
        make_spec("sip", "h", None, secret="x", org=3)
    with pytest.raises(ConfigError, match="out of range"):
        make_spec("esl", "h", None, secret="x", org=-1)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("4h", 14400), ("1d", 86400), ("600", 600)]
)
def test_ages(text: str, seconds: int) -> None:
    assert parse_age(text) == timedelta(seconds=seconds)


def test_backoff_doubles_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 30.0, rng=lambda: 1.0)
    assert [backoff.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    backoff.reset()
    assert backoff.next() == 1
    low = Backoff(1.0, 30.0, rng=lambda: 0.0)
    assert [low.next() for _ in range(3)] == [0.5, 1, 2]
