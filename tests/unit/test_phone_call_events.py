from __future__ import annotations

import os
import random
import string
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from callhook.domain.phone_call_events import (
    ID_ALPHABET,
    TIME_CHARS,
    EventType,
    PhoneCallEvent,
    _ReadAhead,
    apply_update,
    check_url,
    new_event_id,
    render,
    render_all,
    validate_create,
    validate_update,
)
from callhook.errors import ServiceError

URL = "https://crm.example.com/hook"


def code_of(call: Any, *args: Any) -> str:
    with pytest.raises(ServiceError) as info:
        call(*args)
    return info.value.code


def test_numbers_may_be_strings_and_defaults_apply() -> None:
    fields = validate_create({"type": "2", "url": URL}, None)
    assert (fields.type, fields.method, fields.status, fields.note) == (EventType.HANGUP, 0, 1, "")
    fields = validate_create({"type": 4, "method": "1", "status": 0, "url": URL, "note": "n"}, None)
    assert (fields.type, fields.method, fields.status, fields.note) == (
        EventType.ANSWER_OUT,
        1,
        0,
        "n",
    )


@pytest.mark.parametrize("value", [True, False, 1.0, "01", " 1", "", None, [], {}, -1, 10])
def test_type_values_refused(value: object) -> None:
    assert code_of(validate_create, {"type": value, "url": URL}, None) == "pcet_type_invalid"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com",
        "http://127.0.0.1:8080/a?b=c&d=%20",
        "https://user:pw@example.com/x#frag",
        "https://[::1]:9000/",
        "HTTPS://EXAMPLE.COM/",
    ],
)
def test_urls_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com/path",
        "mailto:a@example.com",
        "https://example.com/ space",
        "https://example.com/\u00e9",
        "https://example.com/%g1",
        "https://example.com:99999/",
        "https://example.com:0/",
        "https://[::1/",
        "http://",
        "https://example.com/" + "x" * 2048,
    ],
)
def test_urls_refused(url: str) -> None:
    assert code_of(check_url, url) == "pce_url_invalid"


def test_update_changes_only_given_fields() -> None:
    event = PhoneCallEvent(
        "a" * 30, 1, EventType.DIAL_IN, 0, URL, 1, "n", datetime(2026, 1, 1, tzinfo=UTC)
    )
    changes = validate_update({"status": "0", "type": "0", "id": "x"}, EventType.DIAL_IN)
    assert changes == {"status": 0}
    now = datetime(2026, 11, 27, 18, 16, 12, 999, tzinfo=UTC)
    updated = apply_update(event, changes, now)
    assert (updated.status, updated.url, updated.modified) == (0, URL, now)
    rendered = render(updated, "https://h/x")
    assert rendered["modified"] == "2026-11-27T18:16:12+00:00"
    assert rendered["status"] == "0"
    assert code_of(validate_update, {"type": 1}, EventType.DIAL_IN) == "pce_type_invalid"


def test_ids_are_30_alphanumerics_from_the_given_randomness() -> None:
    rng = random.Random(7)
    first = new_event_id(rng.choice, clock=lambda: 1e9)
    assert len(first) == 30
    assert first.isalnum()
    assert new_event_id(random.Random(7).choice, clock=lambda: 1e9) == first


def test_ids_from_random_bytes_are_30_alphanumerics_spread_over_the_alphabet() -> None:
    ids = {new_event_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 30 and i.isascii() and i.isalnum() for i in ids)
    counts = Counter("".join(i[TIME_CHARS:] for i in ids))
    assert set(counts) == set(ID_ALPHABET)
    # a biased mapping (byte % 62 over all 256 values) gives the first 8 characters of the
    # alphabet 5 chances in 256 instead of 4: ~25 % more than the others; here about 1 % apart
    first = sum(counts[c] for c in ID_ALPHABET[:8]) / 8
    rest = sum(counts[c] for c in ID_ALPHABET[8:]) / (len(ID_ALPHABET) - 8)
    assert 0.92 < first / rest < 1.08


def test_ids_skip_the_random_bytes_that_would_bias_the_alphabet() -> None:
    chunks = iter([bytes([255, 248, 0, 61, 62]) + bytes(35), bytes(range(40))])
    made = new_event_id(randbytes=lambda _n: next(chunks), clock=lambda: 0.0)
    # the time 0 is "00000000"; then 255 and 248 are dropped; 0 -> "a", 61 -> "9", 62 -> "a";
    # then zeros ("a")
    assert made == "0" * 8 + "a9a" + "a" * 19


def test_ids_begin_with_the_time_they_were_made_and_sort_as_they_were_made() -> None:
    # 2026-11-28 12:00:00 UTC in ms, in base 62 (0-9A-Za-z): 1,795,867,200,000
    moment = datetime(2026, 11, 28, 12, tzinfo=UTC).timestamp()
    made = new_event_id(clock=lambda: moment)
    digits = string.digits + string.ascii_uppercase + string.ascii_lowercase
    number = 0
    for char in made[:TIME_CHARS]:
        number = number * 62 + digits.index(char)
    assert number == 1_795_867_200_000
    # a millisecond later, a second later, a year later: each sorts after (byte order, as the
    # database compares them), whatever the random part
    later = [moment + 0.001, moment + 1, moment + 365 * 86400, moment + 3000 * 365 * 86400]
    ids = [made] + [new_event_id(clock=lambda t=t: t) for t in later]
    assert ids == sorted(ids)
    assert len(set(i[:TIME_CHARS] for i in ids)) == len(ids)


def test_render_all_is_render_of_each_with_its_link() -> None:
    moment = datetime(2026, 11, 27, 18, 16, 12, 345678, tzinfo=UTC)
    events = [
        PhoneCallEvent(
            f"{n:030d}",
            7,
            EventType(n % 5),
            n % 2,
            f"https://h/{n}",
            (n + 1) % 2,
            "ünï" * n,
            moment,
        )
        for n in range(6)
    ]
    base = "https://callhook.test/uapi/extensions/@me/0003*210/phoneCallEvents"
    assert render_all(events, base) == [render(e, f"{base}/{e.type.value}/{e.id}") for e in events]
    assert render_all([], base) == []


def test_random_bytes_are_read_ahead_and_never_given_twice() -> None:
    ahead = _ReadAhead()
    taken = [ahead.take(40) for _ in range(300)]  # 12,000 bytes: three reads of 4 KiB
    assert all(len(t) == 40 for t in taken)
    assert len(set(taken)) == 300
    assert len(ahead.take(5000)) == 5000  # more than one read ahead holds


def test_a_forked_child_does_not_reuse_the_bytes_its_parent_read_ahead() -> None:
    new_event_id()  # the module's read-ahead holds bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.close(read)
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_id) == 30
    assert child_id != new_event_id()
