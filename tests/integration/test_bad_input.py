"""Bad input gets its documented status and code, never a 500 (contract section 5, decision 0003).

Bodies are sent over ASGI on both engines; what depends on the HTTP server (raw paths that an
HTTP client would normalise, bodies too large to buffer, chunked uploads) goes to a live server.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from callhook.config import Settings
from tests.conftest import ENGINES, World, error_of
from tests.databases import PostgresTemplates, SqliteTemplates
from tests.live_server import LiveServer

BASE = "/uapi/extensions/@me/0003*210/phoneCallEvents"
URL = "https://crm.example.com/hooks/call"
JSON = {"content-type": "application/json"}
VALID = json.dumps({"type": 0, "url": URL}).encode()
KIB = 1024
MIB = 1024 * KIB


async def send(
    client: httpx.AsyncClient,
    world: World,
    body: bytes,
    *,
    method: str = "POST",
    path: str = BASE,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {**(await world.auth("org")), **(JSON if headers is None else headers)}
    return await client.request(method, path, content=body, headers=sent)


async def an_event(client: httpx.AsyncClient, world: World) -> str:
    """The path of a new event of type 0 (for PUT)."""
    created = await send(client, world, VALID)
    assert created.status_code == 201, created.text
    return f"{BASE}/0/{created.json()['id']}"


# --- bodies that are not a JSON object ------------------------------------------------------

NOT_AN_OBJECT = {
    "malformed": b'{"type": 0, "url": ',
    "trailing garbage": VALID + b" x",
    "single quotes": b"{'type': 0}",
    "array": b'[{"type": 0, "url": "https://crm.example.com/"}]',
    "string": b'"type"',
    "number": b"0",
    "null": b"null",
    "empty": b"",
    "blank": b" \r\n\t ",
    "NaN": b'{"type": NaN, "url": "https://crm.example.com/"}',
    "Infinity": b'{"type": 0, "url": "https://crm.example.com/", "note": Infinity}',
    "-Infinity": b'{"type": -Infinity, "url": "https://crm.example.com/"}',
    "invalid UTF-8": b'{"type": 0, "url": "https://crm.example.com/", "note": "caf\xe9"}',
    "overlong UTF-8": b'{"type": 0, "url": "https://crm.example.com/", "note": "\xc0\xaf"}',
    "UTF-16": '{"type": 0, "url": "https://crm.example.com/"}'.encode("utf-16"),
    "UTF-8 BOM": b"\xef\xbb\xbf" + VALID,
    "deeply nested array": b"[" * 30_000 + b"]" * 30_000,
    "deeply nested in a field": b'{"type": 0, "note": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
    "deeply nested objects": b'{"a":' * 6_000 + b"0" + b"}" * 6_000,
    "integer too long to convert": b'{"type": 1' + b"0" * 5_000 + b"}",
    "lone surrogate in a value": rb'{"type": 0, "url": "https://a.example/", "note": "\ud800"}',
    "lone surrogate in a key": rb'{"type": 0, "url": "https://a.example/", "\udfff": 1}',
    "reversed surrogate pair": rb'{"type": 0, "url": "https://a.example/", "note": "\ude00\ud83d"}',
}


@pytest.mark.parametrize("body", list(NOT_AN_OBJECT.values()), ids=list(NOT_AN_OBJECT))
async def test_bodies_that_are_not_a_json_object(
    client: httpx.AsyncClient, world: World, body: bytes
) -> None:
    assert len(body) <= 64 * KIB
    assert error_of(await send(client, world, body)) == (400, "request_invalid")
    assert error_of(await send(client, world, body, path=BASE + "/0")) == (400, "request_invalid")
    path = await an_event(client, world)
    assert error_of(await send(client, world, body, method="PUT", path=path)) == (
        400,
        "request_invalid",
    )


async def test_a_surrogate_pair_is_one_character(client: httpx.AsyncClient, world: World) -> None:
    body = rb'{"type": 0, "url": "https://crm.example.com/", "note": "\ud83d\ude00"}'
    response = await send(client, world, body)
    assert response.status_code == 201, response.text
    assert response.json()["note"] == "\N{GRINNING FACE}"


# --- content types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json+xml",
        "json",
        "*/*",
    ],
)
async def test_bodies_need_a_json_content_type(
    client: httpx.AsyncClient, world: World, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = await send(client, world, VALID, headers=headers)
    assert error_of(response) == (400, "request_invalid")
    assert "Content-Type: application/json" in response.json()["error"]["message"]
    path = await an_event(client, world)
    response = await send(client, world, b'{"note": "x"}', method="PUT", path=path, headers=headers)
    assert error_of(response) == (400, "request_invalid")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.example+json",
        "application/merge-patch+json",
    ],
)
async def test_json_content_types_are_accepted(
    client: httpx.AsyncClient, world: World, content_type: str
) -> None:
    response = await send(client, world, VALID, headers={"content-type": content_type})
    assert response.status_code == 201, response.text


# --- sizes ----------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid Create body of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    assert size >= len(VALID)
    return VALID + b" " * (size - len(VALID))


async def test_body_sizes(client: httpx.AsyncClient, world: World) -> None:
    assert (await send(client, world, padded(64 * KIB))).status_code == 201
    assert error_of(await send(client, world, padded(64 * KIB + 1))) == (400, "request_invalid")
    assert error_of(await send(client, world, padded(MIB))) == (400, "request_invalid")
    assert error_of(await send(client, world, padded(MIB + 1))) == (413, "request_invalid")
    assert error_of(await send(client, world, padded(5 * MIB))) == (413, "request_invalid")
    path = await an_event(client, world)
    big = b'{"note": "' + b"x" * (5 * MIB) + b'"}'
    assert error_of(await send(client, world, big, method="PUT", path=path)) == (
        413,
        "request_invalid",
    )


async def test_a_large_streamed_body_without_length(
    client: httpx.AsyncClient, world: World
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b" " * (64 * KIB)

    headers = {**(await world.auth("org")), **JSON}
    response = await client.post(BASE, content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert error_of(response) == (413, "request_invalid")


# --- field types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": 0, "url": URL, "unknown": 1}, "request_invalid"),
        ({"type": 0, "url": URL, "Type": 0}, "request_invalid"),
        ({"type": 0, "url": URL, "": 0}, "request_invalid"),
        ({"type": 0, "url": 5}, "pce_url_invalid"),
        ({"type": 0, "url": ["https://crm.example.com/"]}, "pce_url_invalid"),
        ({"type": 0, "url": None}, "pce_url_invalid"),
        ({"type": 0, "url": URL, "note": 5}, "pce_note_invalid"),
        ({"type": 0, "url": URL, "note": True}, "pce_note_invalid"),
        ({"type": 0, "url": URL, "note": {"text": "x"}}, "pce_note_invalid"),
        ({"type": True, "url": URL}, "pcet_type_invalid"),
        ({"type": False, "url": URL}, "pcet_type_invalid"),
        ({"type": 0.0, "url": URL}, "pcet_type_invalid"),
        ({"type": 1.5, "url": URL}, "pcet_type_invalid"),
        ({"type": "0.0", "url": URL}, "pcet_type_invalid"),
        ({"type": "00", "url": URL}, "pcet_type_invalid"),
        ({"type": " 0", "url": URL}, "pcet_type_invalid"),
        ({"type": "", "url": URL}, "pcet_type_invalid"),
        ({"type": -1, "url": URL}, "pcet_type_invalid"),
        ({"type": 10**30, "url": URL}, "pcet_type_invalid"),
        ({"type": "\u0660", "url": URL}, "pcet_type_invalid"),  # ARABIC-INDIC DIGIT ZERO
        ({"type": [0], "url": URL}, "pcet_type_invalid"),
        ({"type": None, "url": URL}, "pcet_type_invalid"),
        ({"type": 0, "method": True, "url": URL}, "pce_method_invalid"),
        ({"type": 0, "method": 1.0, "url": URL}, "pce_method_invalid"),
        ({"type": 0, "method": None, "url": URL}, "pce_method_invalid"),
        ({"type": 0, "method": "post", "url": URL}, "pce_method_invalid"),
        ({"type": 0, "url": URL, "status": False}, "pce_status_invalid"),
        ({"type": 0, "url": URL, "status": 0.0}, "pce_status_invalid"),
        ({"type": 0, "url": URL, "status": "enabled"}, "pce_status_invalid"),
        ({"type": 0, "url": URL, "status": "-0"}, "pce_status_invalid"),
    ],
)
async def test_create_field_types(
    client: httpx.AsyncClient, world: World, body: dict[str, object], code: str
) -> None:
    assert error_of(await send(client, world, json.dumps(body).encode())) == (400, code)


async def test_a_huge_number_is_refused_with_the_fields_code(
    client: httpx.AsyncClient, world: World
) -> None:
    body = b'{"type": 0, "method": 1e999, "url": "https://crm.example.com/"}'
    assert error_of(await send(client, world, body)) == (400, "pce_method_invalid")


async def test_numbers_may_be_strings_and_are_emitted_as_strings(
    client: httpx.AsyncClient, world: World
) -> None:
    body = {"type": "4", "method": "1", "status": "0", "url": URL, "note": "0"}
    response = await send(client, world, json.dumps(body).encode())
    assert response.status_code == 201, response.text
    created = response.json()
    assert {k: created[k] for k in body} == body
    numbers = {"type": 3, "method": 0, "status": 1, "url": URL, "note": ""}
    response = await send(client, world, json.dumps(numbers).encode())
    assert response.status_code == 201, response.text
    assert {k: response.json()[k] for k in ("type", "method", "status")} == {
        "type": "3",
        "method": "0",
        "status": "1",
    }
    path = f"{BASE}/4/{created['id']}"
    body_bytes = b'{"type": 4, "method": 0, "status": "1"}'
    updated = await send(client, world, body_bytes, method="PUT", path=path)
    assert updated.status_code == 200, updated.text
    assert (updated.json()["method"], updated.json()["status"]) == ("0", "1")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": True}, "pce_type_invalid"),
        ({"type": 0.0}, "pce_type_invalid"),
        ({"type": "1"}, "pce_type_invalid"),
        ({"method": False}, "pce_method_invalid"),
        ({"method": 0.5}, "pce_method_invalid"),
        ({"status": True}, "pce_status_invalid"),
        ({"status": 1.0}, "pce_status_invalid"),
        ({"url": 5}, "pce_url_invalid"),
        ({"url": None}, "pce_url_invalid"),
        ({"note": 5}, "pce_note_invalid"),
        ({"note": ["x"]}, "pce_note_invalid"),
        ({"nope": 1}, "request_invalid"),
    ],
)
async def test_update_field_types(
    client: httpx.AsyncClient, world: World, body: dict[str, object], code: str
) -> None:
    path = await an_event(client, world)
    response = await send(client, world, json.dumps(body).encode(), method="PUT", path=path)
    assert error_of(response) == (400, code)


async def test_a_nul_in_a_note_is_refused_on_every_engine(
    client: httpx.AsyncClient, world: World
) -> None:
    """PostgreSQL text cannot hold NUL, so no engine takes it (it was a 500 there)."""
    for note in ("a\u0000b", "\u0000"):
        body = json.dumps({"type": 0, "url": URL, "note": note}).encode()
        assert error_of(await send(client, world, body)) == (400, "pce_note_invalid")
        path = await an_event(client, world)
        body = json.dumps({"note": note}).encode()
        response = await send(client, world, body, method="PUT", path=path)
        assert error_of(response) == (400, "pce_note_invalid")


# --- routes and methods ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/uapi",
        "/uapi/",
        "/uapi/extensions",
        "/uapi/extensions/@me",
        "/uapi/extensions/@me/0003*210",
        "/uapi/extensions/@me/0003*210/phonecallevents",
        "/uapi/extensions/@me/0003*210/PhoneCallEvents",
        "/uapi/extensions/@me/0003*210/phoneCallEvents/0/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/x",
        "/uapi/extensions//0003*210/phoneCallEvents",
        "/uapi/extensions/@me//phoneCallEvents",
        "/uapi/v2/extensions/@me/0003*210/phoneCallEvents",
        "/oauth",
        "/oauth/authorise.php",
        "/oauth/token.php/x",
        "/callhook/v0",
        "/favicon.ico",
        "/.env",
    ],
)
async def test_unknown_routes_are_404(client: httpx.AsyncClient, world: World, path: str) -> None:
    for method in ("GET", "POST", "PUT", "DELETE"):
        response = await send(client, world, VALID, method=method, path=path)
        assert error_of(response) == (404, "not_found"), (method, path)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", BASE, {"GET", "POST", "DELETE"}),
        ("PATCH", BASE, {"GET", "POST", "DELETE"}),
        ("OPTIONS", BASE, {"GET", "POST", "DELETE"}),
        ("TRACE", BASE, {"GET", "POST", "DELETE"}),
        ("PUT", BASE + "/0", {"GET", "POST", "DELETE"}),
        ("POST", BASE + "/0/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", {"GET", "PUT", "DELETE"}),
        ("PATCH", BASE + "/0/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/", {"GET", "PUT", "DELETE"}),
        ("GET", "/oauth/token.php", {"POST"}),
        ("PUT", "/oauth/token", {"POST"}),
        ("DELETE", "/oauth/revoke", {"POST"}),
        ("PUT", "/oauth/authorize.php", {"GET", "POST"}),
        ("POST", "/healthz", {"GET"}),
        ("DELETE", "/readyz", {"GET"}),
        ("PUT", "/openapi.json", {"GET"}),
    ],
)
async def test_wrong_methods_are_405_with_allow(
    client: httpx.AsyncClient, world: World, method: str, path: str, allowed: set[str]
) -> None:
    response = await send(client, world, VALID, method=method, path=path)
    assert error_of(response) == (405, "method_not_allowed")
    allow = {m.strip() for m in response.headers["allow"].split(",")}
    assert allow - {"HEAD"} == allowed


@pytest.mark.parametrize(
    "path",
    [BASE, BASE + "/0", BASE + "/0/" + "A" * 30, "/healthz", "/readyz", "/openapi.json"],
)
async def test_head_is_get_without_a_body(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    get = await client.get(path, headers=await world.auth("org"))
    head = await client.head(path, headers=await world.auth("org"))
    assert head.status_code == get.status_code
    assert head.content == b""
    if path.startswith("/uapi/"):
        assert (await client.head(path)).status_code == 401


# --- credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({b"authorization": b"Bearer \xff\xfe"}, ""),
        ({b"authorization": b"Bearer " + b"A" * 8000}, ""),
        ({b"authorization": b"Bearer a b c"}, ""),
        ({b"authorization": b"\xc3\xa9 token"}, ""),
        ({}, "?accessRequestToken=%00"),
        ({}, "?accessRequestToken=%ff%fe"),
        ({}, "?accessRequestToken=Bearer%20%ED%A0%80"),
        ({}, "?accessRequestToken=Bearer%20" + "A" * 8000),
    ],
)
async def test_junk_credentials_are_401(
    client: httpx.AsyncClient, headers: dict[bytes, bytes], query: str
) -> None:
    for method, path in (("GET", BASE), ("POST", BASE), ("PUT", BASE + "/0/" + "A" * 30)):
        response = await client.request(method, path + query, headers=headers, content=VALID)
        assert error_of(response) == (401, "access_denied")
        assert response.headers["www-authenticate"].startswith("Bearer")


# --- OAuth forms ----------------------------------------------------------------------------

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b'{"grant_type": "client_credentials"}', JSON, 400, "invalid_request"),
        (b"grant_type=client_credentials&client_id=a%00b&client_secret=x", FORM, 400, None),
        (b"grant_type=client_credentials&client_id=x&client_secret=%00", FORM, 400, None),
        (b"grant_type=client_credentials&client_id=caf%E9&client_secret=x", FORM, 401, None),
        (b"grant_type=client_credentials&client_id=\xe9&client_secret=x", FORM, 400, None),
        (b"grant_type=client_credentials&" + b"x" * (64 * KIB), FORM, 400, "invalid_request"),
        (b"grant_type=client_credentials&" + b"x" * (2 * MIB), FORM, 400, "invalid_request"),
        (b"grant_type=client_credentials&grant_type=password", FORM, 400, "invalid_request"),
        (b"%%%&&&===", FORM, 400, "invalid_request"),
        (b"", FORM, 400, "invalid_request"),
    ],
)
async def test_bad_token_requests(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str], status: int, error: str | None
) -> None:
    for path in ("/oauth/token.php", "/oauth/token"):
        response = await client.post(path, content=body, headers=headers)
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "error_description"}
        if error is not None:
            assert response.json()["error"] == error
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "credentials",
    [b"no-colon", b"a\x00b:secret", b"a%00b:secret", b"id:se%00cret", b"\xff\xfe:x"],
)
async def test_bad_basic_credentials(client: httpx.AsyncClient, credentials: bytes) -> None:
    import base64

    headers = {**FORM, "authorization": "Basic " + base64.b64encode(credentials).decode()}
    response = await client.post(
        "/oauth/token.php", content=b"grant_type=client_credentials", headers=headers
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_bad_revocations(client: httpx.AsyncClient, world: World) -> None:
    app = world.apps["org"]
    form = f"client_id={app.app.client_id}&client_secret={app.client_secret}".encode()
    for body in (form + b"&token=%00", form + b"&token=\xff", form):
        response = await client.post("/oauth/revoke", content=body, headers=FORM)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/oauth/authorize.php", "/oauth/authorize"])
@pytest.mark.parametrize(
    "query",
    [
        "",
        "?client_id=%ff%fe",
        "?client_id=" + "x" * 8000,
        "?client_id=x&redirect_uri=%00&state=%ff",
        "?client_id=a&client_id=b",
    ],
)
async def test_junk_authorization_requests_get_a_400_page(
    client: httpx.AsyncClient, path: str, query: str
) -> None:
    response = await client.get(path + query)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    posted = await client.post(path, content=query.lstrip("?").encode(), headers=FORM)
    assert posted.status_code == 400, posted.text
    assert posted.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/oauth/authorize.php", "/oauth/authorize"])
async def test_a_nul_in_an_authorization_request_gets_a_400_page(
    client: httpx.AsyncClient, path: str
) -> None:
    posted = await client.post(path, content=b"client_id=a%00b", headers=FORM)
    assert posted.status_code == 400, posted.text
    response = await client.get(path + "?client_id=a%00b")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")


# --- over a live server ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=ENGINES)
def live(
    request: pytest.FixtureRequest,
    sqlite_templates: SqliteTemplates,
    postgres_templates: PostgresTemplates | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, str]]:
    """A live server with the World on each engine, shared by this module's live tests, and the
    org app's token."""
    if request.param == "sqlite":
        url = sqlite_templates.clone()
    elif postgres_templates is None:
        pytest.skip("PostgreSQL tests need CALLHOOK_TEST_POSTGRES_URL")
    else:
        url = postgres_templates.clone()
    data_dir: Path = tmp_path_factory.mktemp("live") / "data"
    with LiveServer(Settings(data_dir=data_dir, database_url=url, rate_limit=0)) as server:
        world = server.build_world()
        yield server, server.token(world, "org")
    if postgres_templates is not None and request.param == "postgres":
        postgres_templates.drop(url)


def raw_request(
    server: LiveServer, method: str, target: str, token: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send ``target`` exactly as written (http.client does not normalise paths)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        if body is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def error_code(status: int, body: bytes) -> tuple[int, str]:
    parsed = json.loads(body)
    assert set(parsed) == {"error"}, parsed
    assert set(parsed["error"]) == {"code", "message"}, parsed
    return status, parsed["error"]["code"]


LONG = 8_000
PATHS = [
    ("/uapi/extensions/@me/../phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/../0003*210/phoneCallEvents", 400, "user_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/../0", 400, "pce_type_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/0/..", 400, "pce_id_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/../../../../healthz", 404, "not_found"),
    ("/uapi/extensions/@me/%2e%2e/phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/%2e%2e/0003*210/phoneCallEvents", 400, "user_invalid"),
    ("/uapi/extensions/@me/%2e%2e%2f/phoneCallEvents", 404, "not_found"),
    ("/uapi/extensions/@me/%2e%2e%2f%2e%2e%2fhealthz/phoneCallEvents", 404, "not_found"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/0/abc%2Fdef", 404, "not_found"),
    ("/uapi/extensions/@me/0003*210%00/phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/%00/0003*210/phoneCallEvents", 400, "user_invalid"),
    ("/uapi/extensions/@me%00/0003*210/phoneCallEvents", 400, "user_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/%00", 400, "pce_type_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/0/%00", 400, "pce_id_invalid"),
    ("/uapi/extensions/@me/%ff/phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/%ff%fe/0003*210/phoneCallEvents", 400, "user_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/%ff", 400, "pce_type_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/0/%ff", 400, "pce_id_invalid"),
    ("/uapi/extensions/@me/0003%2A%ff210/phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/@me/%20/phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/%20", 400, "pce_type_invalid"),
    ("/uapi/extensions/@me/@self/phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/@me/" + "1" * LONG + "/phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/@me/" + "%2e" * LONG + "/phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/" + "9" * LONG + "/0003*210/phoneCallEvents", 400, "user_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/" + "0" * LONG, 400, "pce_type_invalid"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents/0/" + "a" * LONG, 400, "pce_id_invalid"),
    ("/uapi/extensions/@me/9999999999*210/phoneCallEvents", 400, "extension_invalid"),
    ("/uapi/extensions/99999999999999999999/0003*210/phoneCallEvents", 400, "user_invalid"),
    ("/uapi/extensions/999999999999999999/0003*210/phoneCallEvents", 400, "user_invalid"),
    ("/uapi/extensions/@me/999999999*999999999999/phoneCallEvents", 400, "extension_invalid"),
    ("//uapi/extensions/@me/0003*210/phoneCallEvents", 404, "not_found"),
    ("/uapi/extensions/@me/0003*210/phoneCallEvents\\..\\..\\healthz", 404, "not_found"),
    ("/%2e%2e/%2e%2e/etc/passwd", 404, "not_found"),
    ("/uapi/%2e%2e/healthz", 404, "not_found"),
    ("*", 404, "not_found"),
]


@pytest.mark.parametrize(("target", "status", "code"), PATHS, ids=[p[0][:60] for p in PATHS])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_junk_in_path_segments(
    live: tuple[LiveServer, str], method: str, target: str, status: int, code: str
) -> None:
    server, token = live
    got_status, headers, body = raw_request(server, method, target, token, VALID)
    got = error_code(got_status, body)
    if got[0] == 405:  # a route that matched, but does not take this method
        assert method not in headers["allow"], headers
        return
    if method == "POST" and code == "pce_type_invalid":
        code = "pcet_type_invalid"  # Create spells it with a t (contract section 5)
    assert got == (status, code), body


def test_encoded_names_reach_the_extension(live: tuple[LiveServer, str]) -> None:
    server, token = live
    for target in ("/uapi/extensions/%40me/0003%2A210/phoneCallEvents%2F", BASE + "/%30/"):
        status, _, body = raw_request(server, "GET", target, token)
        assert status == 200, body
        assert "totalResults" in json.loads(body)


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_5_mib_body_over_http_is_413(live: tuple[LiveServer, str], streamed: bool) -> None:
    server, token = live
    body = b'{"type": 0, "url": "' + URL.encode() + b'", "note": "' + b"x" * (5 * MIB) + b'"}'

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * KIB):
            yield body[start : start + 64 * KIB]

    headers = {"Authorization": f"Bearer {token}", **JSON}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post(BASE, content=chunks() if streamed else body, headers=headers)
        assert error_of(response) == (413, "request_invalid")
        # the connection (or a new one) still serves the next request
        after = http.post(BASE, content=VALID, headers=headers)
        assert after.status_code == 201, after.text


def test_many_bad_requests_leave_the_server_healthy(live: tuple[LiveServer, str]) -> None:
    server, token = live
    for body in NOT_AN_OBJECT.values():
        status, _, _ = raw_request(server, "POST", BASE, token, body)
        assert status == 400
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/readyz").json() == {"status": "ready"}
