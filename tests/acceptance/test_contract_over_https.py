"""The whole contract as a UnifiedAPI client sees it: a real `callhook serve` process over HTTPS,
a directory loaded with `callhook admin import` while it runs, then every operation and a sample of
its errors, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.cli_process import Cli, cli_env
from tests.acceptance.test_serve import Server, wait_healthy
from tests.databases import PostgresTemplates

pytestmark = pytest.mark.slow

DIRECTORY = {
    "service_providers": [
        {
            "name": "Acme Telecom",
            "organizations": [
                {
                    "name": "Example Corp",
                    "code": 3,
                    "apps": [
                        {
                            "name": "crm",
                            "client_id": "crm-client-0003",
                            "client_secret": "crm-secret-moved-from-voipnow",
                        }
                    ],
                    "users": [
                        {
                            "name": "Alice",
                            "extensions": [{"number": "210", "type": "phone-terminal"}],
                            "apps": [
                                {
                                    "name": "alice",
                                    "client_id": "alice-client-01",
                                    "client_secret": "alice-secret-0123456789",
                                }
                            ],
                        },
                        {"name": "Bob", "extensions": [{"number": "211", "type": "queue"}]},
                    ],
                }
            ],
        }
    ]
}


@pytest.fixture
def server_env(
    engine_name: str, tmp_path: Path, postgres_templates: PostgresTemplates | None
) -> Iterator[dict[str, str]]:
    if engine_name == "sqlite":
        yield cli_env(tmp_path / "data")
        return
    if postgres_templates is None:
        pytest.skip("PostgreSQL tests need CALLHOOK_TEST_POSTGRES_URL")
    url = postgres_templates.empty()
    yield cli_env(tmp_path / "data", url)
    postgres_templates.drop(url)


def test_every_operation_over_https(server_env: dict[str, str], tmp_path: Path) -> None:
    server = Server(["--tls-self-signed", "--port", "0", "--json"], server_env, tmp_path)
    try:
        startup = json.loads(server.wait_for(r"^\{").string)
        url = startup["url"]
        assert url.startswith("https://127.0.0.1:")
        tls = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / "dev-cert.pem"))
        wait_healthy(url, tls)
        directory_file = tmp_path / "directory.json"
        directory_file.write_text(json.dumps(DIRECTORY))
        Cli(server_env, tmp_path).ok("admin", "import", str(directory_file))
        with httpx.Client(base_url=url, verify=tls, follow_redirects=False, timeout=30) as http:
            run_contract(http)
        assert server.stop() == 0
    finally:
        server.kill()
    assert "Traceback" not in server.err
    assert "crm-secret-moved-from-voipnow" not in server.err


def token(http: httpx.Client, client_id: str, secret: str) -> str:
    response = http.post(
        "/oauth/token.php",
        data={"grant_type": "client_credentials", "type": "unifiedapi", "redirect_uri": "x"},
        auth=(client_id, secret),
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    value: str = response.json()["access_token"]
    return value


def run_contract(http: httpx.Client) -> None:
    org = {
        "Authorization": f"Bearer {token(http, 'crm-client-0003', 'crm-secret-moved-from-voipnow')}"
    }
    alice_token = token(http, "alice-client-01", "alice-secret-0123456789")
    alice = {"Authorization": f"Bearer {alice_token}"}
    base = "/uapi/extensions/@me/0003*210/phoneCallEvents"

    created = []
    for kind in range(5):
        response = http.post(
            base + "/",
            json={
                "type": str(kind),
                "method": kind % 2,
                "url": f"https://crm.example.com/e/{kind}",
            },
            headers=org,
        )
        assert response.status_code == 201, response.text
        assert response.headers["location"] == response.json()["links"]["self"]
        assert response.json()["links"]["self"].startswith(f"{http.base_url}".rstrip("/"))
        created.append(response.json())
    by_type = http.post(base + "/2", json={"url": "https://crm.example.com/hangup"}, headers=org)
    assert by_type.status_code == 201

    listed = http.get(base, params={"count": "2", "sortOrder": "descending"}, headers=org).json()
    assert (listed["totalResults"], listed["itemsPerPage"]) == (6, 2)
    assert http.get(listed["next"], headers=org).json()["startIndex"] == 2
    query_token = http.get(base, params={"accessRequestToken": f"Bearer {alice_token}"})
    assert query_token.status_code == 200
    one = http.get(f"{base}/3/{created[3]['id']}", headers=alice).json()
    assert one["entry"] == [created[3]]
    assert len(http.get(f"{base}/2", headers=org).json()["entry"]) == 2

    updated = http.put(f"{base}/3/{created[3]['id']}/", json={"status": "0"}, headers=alice)
    assert (updated.status_code, updated.json()["status"]) == (200, "0")

    assert http.delete(f"{base}/4/{created[4]['id']}", headers=org).json() == [created[4]]
    assert len(http.delete(f"{base}/2", headers=org).json()) == 2
    assert len(http.delete(base, headers=org).json()) == 3
    assert http.delete(base, headers=org).json() == []

    errors = [
        (http.post(base, json={"url": "https://x.example"}, headers=org), 400, "pcet_type_invalid"),
        (http.get(f"{base}/9", headers=org), 400, "pce_type_invalid"),
        (
            http.get("/uapi/extensions/@me/0003*211/phoneCallEvents", headers=alice),
            400,
            "pce_access_denied",
        ),
        (
            http.get("/uapi/extensions/@me/0003*999/phoneCallEvents", headers=org),
            400,
            "extension_invalid",
        ),
        (http.get("/uapi/extensions/nobody/210/phoneCallEvents", headers=org), 400, "user_invalid"),
        (http.get(base + "?count=0", headers=org), 400, "count_invalid"),
        (http.get(base), 401, "access_denied"),
        (http.patch(base, headers=org), 405, "method_not_allowed"),
        (http.get("/uapi/nothing-here", headers=org), 404, "not_found"),
    ]
    for response, status, code in errors:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code

    revoked = http.post(
        "/oauth/revoke",
        data={"token": alice_token},
        auth=("alice-client-01", "alice-secret-0123456789"),
    )
    assert revoked.status_code == 200
    assert http.get(base, headers=alice).status_code == 401
    assert http.get("/openapi.json").json()["openapi"].startswith("3.1")
