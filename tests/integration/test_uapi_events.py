"""The PhoneCallEvents contract (spec sections 2-4), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import World, error_of

BASE = "/uapi/extensions/@me/0003*210/phoneCallEvents"
URL = "https://crm.example.com/hooks/call"


async def create(
    client: httpx.AsyncClient,
    world: World,
    body: dict[str, object],
    path: str = BASE,
    who: str = "org",
) -> httpx.Response:
    return await client.post(path, json=body, headers=await world.auth(who))


async def test_create_returns_the_full_resource_as_strings(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await create(client, world, {"type": 0, "url": URL, "note": "CRM screen pop"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"type", "id", "method", "note", "url", "status", "modified", "links"}
    assert body["type"] == "0"
    assert body["method"] == "0"
    assert body["status"] == "1"
    assert body["note"] == "CRM screen pop"
    assert body["url"] == URL
    assert re.fullmatch(r"[A-Za-z0-9]{30}", body["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", body["modified"])
    expected = f"https://callhook.test{BASE}/0/{body['id']}"
    assert body["links"] == {"self": expected}
    assert response.headers["location"] == expected


@pytest.mark.parametrize("trailing", ["", "/"])
async def test_create_with_type_in_path_and_trailing_slash(
    client: httpx.AsyncClient, world: World, trailing: str
) -> None:
    response = await create(
        client, world, {"url": URL, "method": "1", "status": "0"}, f"{BASE}/3{trailing}"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["type"], body["method"], body["status"]) == ("3", "1", "0")


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        (BASE, {"url": URL}, "pcet_type_invalid"),
        (BASE, {"type": 5, "url": URL}, "pcet_type_invalid"),
        (BASE, {"type": "x", "url": URL}, "pcet_type_invalid"),
        (BASE, {"type": True, "url": URL}, "pcet_type_invalid"),
        (BASE + "/7", {"url": URL}, "pcet_type_invalid"),
        (BASE + "/2", {"type": 3, "url": URL}, "pcet_type_invalid"),
        (BASE, {"type": 0, "url": URL, "method": 2}, "pce_method_invalid"),
        (BASE, {"type": 0, "url": URL, "method": "GET"}, "pce_method_invalid"),
        (BASE, {"type": 0}, "pce_url_invalid"),
        (BASE, {"type": 0, "url": "ftp://example.com/x"}, "pce_url_invalid"),
        (BASE, {"type": 0, "url": "/relative/path"}, "pce_url_invalid"),
        (BASE, {"type": 0, "url": "https:///nohost"}, "pce_url_invalid"),
        (BASE, {"type": 0, "url": "https://example.com/a b"}, "pce_url_invalid"),
        (BASE, {"type": 0, "url": "https://example.com/%zz"}, "pce_url_invalid"),
        (BASE, {"type": 0, "url": "https://example.com/" + "a" * 2030}, "pce_url_invalid"),
        (BASE, {"type": 0, "url": 5}, "pce_url_invalid"),
        (BASE, {"type": 0, "url": URL, "status": 2}, "pce_status_invalid"),
        (BASE, {"type": 0, "url": URL, "note": "x" * 1025}, "pce_note_invalid"),
        (BASE, {"type": 0, "url": URL, "note": 5}, "pce_note_invalid"),
        # the first failing field wins, in the order type, method, url, status, note
        (BASE, {"type": 9, "method": 9, "url": ""}, "pcet_type_invalid"),
        (BASE, {"type": 0, "method": 9, "url": ""}, "pce_method_invalid"),
        (BASE, {"type": 0, "url": "", "status": 9}, "pce_url_invalid"),
        (BASE, {"type": 0, "url": URL, "status": 9, "note": 1}, "pce_status_invalid"),
        (BASE, {"type": 0, "url": URL, "colour": "red"}, "request_invalid"),
    ],
)
async def test_create_errors(
    client: httpx.AsyncClient, world: World, path: str, body: dict[str, object], code: str
) -> None:
    assert error_of(await create(client, world, body, path)) == (400, code)


async def test_create_accepts_long_unicode_note_and_read_only_fields(
    client: httpx.AsyncClient, world: World
) -> None:
    note = "☎" * 1024
    body = {"type": "4", "url": URL + "?q=1&x=%20", "note": note, "id": "ignored", "links": {}}
    response = await create(client, world, body)
    assert response.status_code == 201, response.text
    assert response.json()["note"] == note
    assert response.json()["id"] != "ignored"


@pytest.mark.parametrize(
    ("who", "user", "ext", "echo", "extended"),
    [
        ("org", "@me", "210", "@me", "0003*210"),
        ("sp", "@viewer", "0003*210", "@viewer", "0003*210"),
        ("sp", "@owner", "0003*210", "@owner", "0003*210"),
        ("sp", "{alice}", "0003*210", "{alice}", "0003*210"),
        ("sp", "{org}", "210", "{org}", "0003*210"),
        ("sp", "{sp}", "0004*210", "{sp}", "0004*210"),
        ("alice", "@me", "210", "@me", "0003*210"),
    ],
)
async def test_user_id_forms_are_echoed_in_links(
    client: httpx.AsyncClient,
    world: World,
    who: str,
    user: str,
    ext: str,
    echo: str,
    extended: str,
) -> None:
    ids = {k: str(v.id) for k, v in world.accounts.items()}
    user, echo = user.format(**ids), echo.format(**ids)
    path = f"/uapi/extensions/{user}/{ext}/phoneCallEvents"
    response = await create(client, world, {"type": 1, "url": URL}, path, who=who)
    assert response.status_code == 201, response.text
    link = response.json()["links"]["self"]
    assert link.startswith(
        f"https://callhook.test/uapi/extensions/{echo}/{extended}/phoneCallEvents/1/"
    )


async def test_list_paging_keeps_the_query(client: httpx.AsyncClient, world: World) -> None:
    for i in range(25):
        response = await create(client, world, {"type": i % 5, "url": f"{URL}/{i:02d}"})
        assert response.status_code == 201
    headers = await world.auth("org")
    first = (
        await client.get(
            BASE + "?filterBy=url&filterOp=contains&filterValue=hooks", headers=headers
        )
    ).json()
    assert (first["startIndex"], first["itemsPerPage"], first["totalResults"]) == (0, 20, 25)
    assert [e["url"] for e in first["entry"]] == [f"{URL}/{i:02d}" for i in range(20)]
    assert "prev" not in first
    nxt = urlsplit(first["next"])
    assert nxt.path == BASE
    assert parse_qs(nxt.query) == {
        "filterBy": ["url"],
        "filterOp": ["contains"],
        "filterValue": ["hooks"],
        "startIndex": ["20"],
        "count": ["20"],
    }
    second = (await client.get(first["next"], headers=headers)).json()
    assert (second["startIndex"], second["itemsPerPage"]) == (20, 5)
    assert "next" not in second
    assert parse_qs(urlsplit(second["prev"]).query)["startIndex"] == ["0"]
    beyond = (await client.get(BASE + "?startIndex=100", headers=headers)).json()
    assert (beyond["itemsPerPage"], beyond["entry"], beyond["totalResults"]) == (0, [], 25)


async def test_list_sort_filter_and_fields(client: httpx.AsyncClient, world: World) -> None:
    await create(client, world, {"type": 0, "url": "https://b.example.com/", "note": "B"})
    await create(client, world, {"type": 0, "url": "https://a.example.com/"})
    await create(client, world, {"type": 2, "url": "https://c.example.com/", "method": 1})
    headers = await world.auth("org")

    async def urls(query: str, path: str = BASE) -> list[str]:
        response = await client.get(path + query, headers=headers)
        assert response.status_code == 200, response.text
        return [e.get("url", "") for e in response.json()["entry"]]

    assert await urls("") == [
        "https://a.example.com/",
        "https://b.example.com/",
        "https://c.example.com/",
    ]
    assert await urls("?sortOrder=descending") == [
        "https://c.example.com/",
        "https://b.example.com/",
        "https://a.example.com/",
    ]
    assert await urls("?sortOder=descending") == await urls("?sortOrder=descending")
    assert await urls("?filterBy=note&filterOp=present") == ["https://b.example.com/"]
    assert await urls("?filterBy=method&filterOp=equals&filterValue=1") == [
        "https://c.example.com/"
    ]
    assert await urls("?filterBy=url&filterOp=startsWith&filterValue=https://a") == [
        "https://a.example.com/"
    ]
    assert await urls("?filterBy=note&filterValue=b") == []  # case-sensitive
    assert await urls("", BASE + "/0") == ["https://a.example.com/", "https://b.example.com/"]
    response = await client.get(BASE + "?fields=id,url", headers=headers)
    assert all(set(e) == {"id", "url"} for e in response.json()["entry"])


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("count=0", "count_invalid"),
        ("count=5001", "count_invalid"),
        ("count=ten", "count_invalid"),
        ("startIndex=-1", "startindex_invalid"),
        ("startIndex=5001", "startindex_invalid"),
        ("filterBy=colour&filterValue=x", "filterby_invalid"),
        ("filterBy=url&filterOp=like&filterValue=x", "filterop_invalid"),
        ("filterBy=url&filterOp=equals", "filtervalue_invalid"),
        ("sortOrder=up", "sortorder_invalid"),
        ("sortOder=sideways", "sortorder_invalid"),
        ("fields=id,colour", "fields_invalid"),
    ],
)
async def test_list_query_errors(
    client: httpx.AsyncClient, world: World, query: str, code: str
) -> None:
    response = await client.get(f"{BASE}?{query}", headers=await world.auth("org"))
    assert error_of(response) == (400, code)


async def test_list_one_and_unknown_ids(client: httpx.AsyncClient, world: World) -> None:
    created = (await create(client, world, {"type": 2, "url": URL})).json()
    headers = await world.auth("org")
    one = await client.get(f"{BASE}/2/{created['id']}", headers=headers)
    assert one.status_code == 200
    assert one.json()["totalResults"] == 1
    assert one.json()["entry"] == [created]
    for path in (f"{BASE}/3/{created['id']}", f"{BASE}/2/{'A' * 30}", f"{BASE}/2/short"):
        assert error_of(await client.get(path, headers=headers)) == (400, "pce_id_invalid")
    assert error_of(await client.get(f"{BASE}/8", headers=headers)) == (400, "pce_type_invalid")


async def test_update_is_partial(client: httpx.AsyncClient, world: World) -> None:
    created = (await create(client, world, {"type": 3, "url": URL, "note": "keep"})).json()
    headers = await world.auth("org")
    path = f"{BASE}/3/{created['id']}"
    response = await client.put(path, json={"url": URL + "/v2", "status": "0"}, headers=headers)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["url"] == URL + "/v2"
    assert (updated["status"], updated["note"], updated["method"]) == ("0", "keep", "0")
    assert updated["id"] == created["id"]
    assert updated["links"] == created["links"]
    listed = (await client.get(path, headers=headers)).json()["entry"][0]
    assert listed == updated
    assert (await client.put(path + "/", json={"type": 3}, headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("suffix", "body", "code"),
    [
        ("/3/{id}", {"type": 4}, "pce_type_invalid"),
        ("/9/{id}", {"url": URL}, "pce_type_invalid"),
        ("/2/{id}", {"url": URL}, "pce_id_invalid"),
        ("/3/" + "Z" * 30, {"url": URL}, "pce_id_invalid"),
        ("/3/{id}", {"method": 3}, "pce_method_invalid"),
        ("/3/{id}", {"url": "nope"}, "pce_url_invalid"),
        ("/3/{id}", {"status": "yes"}, "pce_status_invalid"),
        ("/3/{id}", {"note": None}, "pce_note_invalid"),
        ("/3/{id}", {"urll": URL}, "request_invalid"),
    ],
)
async def test_update_errors(
    client: httpx.AsyncClient, world: World, suffix: str, body: dict[str, object], code: str
) -> None:
    created = (await create(client, world, {"type": 3, "url": URL})).json()
    response = await client.put(
        BASE + suffix.format(id=created["id"]), json=body, headers=await world.auth("org")
    )
    assert error_of(response) == (400, code)


async def test_delete_one_by_type_and_all(client: httpx.AsyncClient, world: World) -> None:
    made = [
        (await create(client, world, {"type": t, "url": f"{URL}/{t}{n}"})).json()
        for t in (0, 0, 1, 2)
        for n in "a"
    ]
    headers = await world.auth("org")
    one = await client.delete(f"{BASE}/1/{made[2]['id']}", headers=headers)
    assert one.status_code == 200
    assert one.json() == [made[2]]
    again = await client.delete(f"{BASE}/1/{made[2]['id']}", headers=headers)
    assert error_of(again) == (400, "pce_id_invalid")
    by_type = await client.delete(f"{BASE}/0/", headers=headers)
    assert sorted(e["id"] for e in by_type.json()) == sorted([made[0]["id"], made[1]["id"]])
    assert (await client.delete(f"{BASE}/4", headers=headers)).json() == []
    rest = await client.delete(BASE, headers=headers)
    assert [e["id"] for e in rest.json()] == [made[3]["id"]]
    assert (await client.get(BASE, headers=headers)).json()["totalResults"] == 0
    assert error_of(await client.delete(f"{BASE}/6", headers=headers)) == (400, "pce_type_invalid")


async def test_routes_never_redirect(client: httpx.AsyncClient, world: World) -> None:
    headers = await world.auth("org")
    for path in (BASE, BASE + "/", BASE + "/0", BASE + "/0/"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.status_code)
