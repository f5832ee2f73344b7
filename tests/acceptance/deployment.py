"""A callhook deployment of real processes for the engine's acceptance tests: `serve` (and
`worker`s), a directory, an admin token, rules made through the UAPI, a source token."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.acceptance.cli_process import CALLHOOK, TIMEOUT, cli_env
from tests.acceptance.test_serve import Server

DIRECTORY = """
service_providers:
  - name: Acme Telecom
    organizations:
      - name: Example Corp
        code: 3
        users:
          - name: Alice
            extensions:
              - {number: "201", type: phone-terminal}
              - {number: "210", type: phone-terminal}
              - {number: "211", type: phone-terminal}
"""

#: fast retries, so a test sees several attempts in seconds
ENGINE_ENV = {
    "CALLHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
    "CALLHOOK_RETRY_FIRST_DELAY_MS": "200",
    "CALLHOOK_RETRY_MAX_DELAY": "2",
    "CALLHOOK_CONNECT_TIMEOUT_MS": "2000",
    "CALLHOOK_TIMEOUT_MS": "3000",
    "CALLHOOK_LOG_LEVEL": "WARNING",
    "CALLHOOK_RATE_LIMIT": "0",
}


class Deployment:
    def __init__(self, tmp: Path, database_url: str | None = None, **env: str) -> None:
        self.tmp = tmp
        self.env = cli_env(tmp / "data", database_url, **{**ENGINE_ENV, **env})
        self.servers: list[Server] = []
        self.workers: list[subprocess.Popen[str]] = []
        self.url = ""
        self.source_token = ""
        self.client_id = self.client_secret = ""
        self._token = ""

    # --- processes ---------------------------------------------------------------------------

    def serve(self, *args: str) -> Server:
        server = Server(["--port", "0", "--json", *args], self.env, self.tmp)
        startup = json.loads(server.wait_for(r"^\{.*").group(0))
        self.url = startup["url"]
        if startup["bootstrap"]:
            boot = startup["bootstrap"]
            self.client_id, self.client_secret = boot["client_id"], boot["client_secret"]
            self.source_token = boot["source_token"]
        self.servers.append(server)
        return server

    def worker(self, name: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*CALLHOOK, "worker", "--name", name],
            env=self.env,
            cwd=self.tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.workers.append(proc)
        return proc

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [*CALLHOOK, *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def import_directory(self) -> None:
        path = self.tmp / "directory.yaml"
        path.write_text(DIRECTORY, "utf-8")
        self.cli("admin", "import", str(path))

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(TIMEOUT)
        for server in self.servers:
            server.kill()

    # --- the APIs ----------------------------------------------------------------------------

    def token(self) -> str:
        if not self._token:
            response = httpx.post(
                f"{self.url}/oauth/token.php",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
                timeout=30,
            )
            assert response.status_code == 200, response.text
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def rule(self, ext: str, etype: int, url: str) -> None:
        response = self.api(
            "POST",
            f"/uapi/extensions/@me/{ext}/phoneCallEvents",
            json={"type": etype, "url": url, "method": 1},
        )
        assert response.status_code == 201, response.text

    def deliveries(self, **filters: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        path = "/callhook/v1/deliveries"
        params: dict[str, str] | None = {"limit": "500", **filters}
        while True:
            page = self.api("GET", path, params=params).json()
            found += page["deliveries"]
            if not page["next"]:
                return found
            path, params = page["next"].removeprefix(self.url), None

    def ingest(self, events: list[dict[str, Any]], client: httpx.Client | None = None) -> int:
        poster = client or httpx
        response = poster.post(
            f"{self.url}/callhook/v1/call-events",
            json=events,
            headers={"Authorization": f"Bearer {self.source_token}"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        accepted: int = response.json()["accepted"]
        return accepted


def call_events(call: str, caller: str, callee: str, answered: bool) -> list[dict[str, Any]]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    events: list[dict[str, Any]] = [
        {
            "event_id": f"{call}-start",
            "call_id": call,
            "type": "call.started",
            "time": now,
            "caller": {"extension": caller},
            "callee": {"extension": callee},
        }
    ]
    if answered:
        events.append(
            {
                "event_id": f"{call}-answer",
                "call_id": call,
                "type": "call.answered",
                "time": now,
                "extension": callee,
            }
        )
    events.append(
        {
            "event_id": f"{call}-end",
            "call_id": call,
            "type": "call.ended",
            "time": now,
            "disposition": "ANSWER" if answered else "BUSY",
        }
    )
    return events
