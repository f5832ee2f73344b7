from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from callhook.domain.listing import paginate, parse_query, render_page
from callhook.domain.phone_call_events import FIELDS
from callhook.errors import ServiceError

RECORDS = [
    {
        "id": f"{i:030d}",
        "url": f"https://h/{i % 3}",
        "note": "x" if i % 2 else "",
        "type": str(i % 5),
    }
    for i in range(10)
]


def test_sorted_by_url_then_id() -> None:
    page = paginate(RECORDS, parse_query({"count": "100"}, FIELDS))
    keys = [(r["url"], r["id"]) for r in page.entries]
    assert keys == sorted(keys)
    down = paginate(RECORDS, parse_query({"count": "100", "sortOder": "descending"}, FIELDS))
    assert down.entries == list(reversed(page.entries))


def test_page_links_keep_params_but_never_the_token() -> None:
    params = [
        ("filterBy", "note"),
        ("filterOp", "present"),
        ("count", "2"),
        ("accessRequestToken", "Bearer s"),
    ]
    query = parse_query(dict(params), FIELDS)
    page = paginate(RECORDS, query)
    assert page.total == 5
    body = render_page(page, "https://h/list", params, query.count)
    assert body["itemsPerPage"] == 2
    link = urlsplit(body["next"])
    assert dict(parse_qsl(link.query)) == {
        "filterBy": "note",
        "filterOp": "present",
        "startIndex": "2",
        "count": "2",
    }
    assert "prev" not in body


@pytest.mark.parametrize(
    "params",
    [
        {"count": "1.5"},
        {"count": "+3"},
        {"startIndex": "1e3"},
        {"filterOp": "present"},
        {"fields": ""},
    ],
)
def test_malformed_parameters(params: dict[str, str]) -> None:
    with pytest.raises(ServiceError):
        parse_query(params, FIELDS)
