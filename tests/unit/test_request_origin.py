"""The origin of a request, as links and Location headers spell it: the same as Starlette's
``request.url`` gives, for every Host header (a plain one takes a shorter way)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from callhook.api.requests import origin


def request(host: str | None, scheme: str = "https") -> Request:
    headers = [] if host is None else [(b"host", host.encode("latin-1"))]
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": scheme,
            "path": "/uapi/extensions/@me/0003*210/phoneCallEvents",
            "raw_path": b"/uapi/extensions/@me/0003*210/phoneCallEvents",
            "query_string": b"count=1",
            "root_path": "",
            "headers": headers,
            "server": ("10.0.0.5", 8443),
        }
    )


@pytest.mark.parametrize(
    "host",
    [
        "callhook.test",
        "127.0.0.1:8080",
        "Example.COM:443",
        "[::1]:8443",
        "[2001:db8::1]",
        "a-b.c",
        "host:99999",
        "host:65535",
        "host:0",
        "host:080",
        "[v1.x]",
        "[::ffff:1.2.3.4]:80",
        "h%41st",
        "user@host",
        "host/with/slash",
        "host?q",
        "host#f",
        " host",
        "ho\tst",
        "",
        None,
    ],
)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_origin_is_what_request_url_gives(host: str | None, scheme: str) -> None:
    req = request(host, scheme)
    slow = request(host, scheme)
    assert origin(req, "") == f"{slow.url.scheme}://{slow.url.netloc}"


def test_public_url_wins() -> None:
    assert origin(request("internal:8080"), "https://api.example.com") == (
        "https://api.example.com"
    )
