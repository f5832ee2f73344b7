"""``callhook serve`` as a real process: TLS, first-start credentials, clean stops, restarts."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import ssl
import stat
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.cli_process import CALLHOOK, cli_env

pytestmark = pytest.mark.slow

WAIT = 60.0  # seconds; a limit on waiting for the process, not a claim about its speed


class Server:
    """``callhook serve ...`` in a subprocess; stdout is read line by line as it comes."""

    def __init__(
        self, args: list[str], env: dict[str, str], cwd: Path, *, terminal: bool = False
    ) -> None:
        """``terminal``: in a process group of its own, as a shell or a service manager runs
        it, so that ``stop_group`` reaches it and everything it started."""
        self.proc = subprocess.Popen(
            [*CALLHOOK, "serve", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=terminal,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self._err.extend(self.proc.stderr)

    @property
    def err(self) -> str:
        return "".join(self._err)

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first line from now on that matches ``pattern``."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.out.append(line)
            if found := re.search(pattern, line):
                return found
        self.kill()
        raise AssertionError(f"no line matched {pattern!r}:\n{self.text}\n{self.err}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig``, wait for the process to end; its exit status."""
        self.proc.send_signal(sig)
        return self._ended()

    def stop_group(self, sig: signal.Signals) -> int:
        """``sig`` to the whole process group, as Ctrl-C in a terminal (SIGINT) or systemd's
        stop (SIGTERM to every process of the service); the exit status."""
        os.killpg(self.proc.pid, sig)
        return self._ended()

    def _ended(self) -> int:
        try:
            self.proc.wait(timeout=WAIT)
        finally:
            self.kill()
        while (line := self.lines.get(timeout=WAIT)) is not None:
            self.out.append(line)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)
        for reader in self._readers:
            reader.join(timeout=WAIT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    @property
    def text(self) -> str:
        return "\n".join(self.out)


def wait_healthy(url: str, verify: ssl.SSLContext) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            response = httpx.get(f"{url}/healthz", verify=verify, timeout=5)
            assert response.json()["status"] == "ok"
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def get_token(url: str, verify: ssl.SSLContext, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{url}/oauth/token.php",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        verify=verify,
        timeout=10,
    )


def test_self_signed_first_start_then_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = cli_env(data_dir)
    args = ["--tls-self-signed", "--port", "0"]
    cert = data_dir / "tls" / "dev-cert.pem"

    first = Server(args, env, tmp_path)
    try:
        url = first.wait_for(r"serving (https://127\.0\.0\.1:\d+)").group(1)
        client_id = first.wait_for(r"client_id:\s+(\S+)").group(1)
        secret = first.wait_for(r"client_secret:\s+(\S+)").group(1)
        first.wait_for(r"curl --cacert .*dev-cert\.pem https://127\.0\.0\.1:\d+/oauth/token\.php")
        verify = ssl.create_default_context(cafile=str(cert))
        wait_healthy(url, verify)

        saved_path = data_dir / "bootstrap-credentials.json"
        assert stat.S_IMODE(saved_path.stat().st_mode) == 0o600
        assert stat.S_IMODE((data_dir / "tls" / "dev-key.pem").stat().st_mode) == 0o600
        saved = json.loads(saved_path.read_text())
        assert (saved["client_id"], saved["client_secret"]) == (client_id, secret)

        token = get_token(url, verify, client_id, secret)
        assert token.status_code == 200, token.text
        assert token.json()["token_type"] == "Bearer"
        assert get_token(url, verify, client_id, "wrong-secret").status_code in (400, 401)
        assert first.stop() == 0
    finally:
        first.kill()
    assert first.text.count(secret) == 2  # once on its own line, once in the curl command
    assert "callhook stopped (SIGTERM)" in first.text
    assert "Traceback" not in first.err
    logged = [json.loads(line) for line in first.err.splitlines()]
    requests = [entry for entry in logged if entry["msg"] == "request"]
    assert {"ts", "level", "logger", "client", "method", "path", "status"} <= set(requests[0])
    assert secret not in first.err
    cert_bytes = cert.read_bytes()

    second = Server(args, env, tmp_path)
    try:
        url = second.wait_for(r"serving (https://127\.0\.0\.1:\d+)").group(1)
        second.wait_for(r"development certificate .* \(reused\)")
        second.wait_for(r"bootstrap credentials: .*bootstrap-credentials\.json")
        wait_healthy(url, ssl.create_default_context(cafile=str(cert)))
        token = get_token(url, ssl.create_default_context(cafile=str(cert)), client_id, secret)
        assert token.status_code == 200, token.text
        assert second.stop(signal.SIGINT) == 0
    finally:
        second.kill()
    assert cert.read_bytes() == cert_bytes
    assert "client_secret" not in second.text
    assert secret not in second.text
    assert "callhook stopped (SIGINT)" in second.text


def test_json_startup_line_and_plain_http(tmp_path: Path) -> None:
    server = Server(["--port", "0", "--json"], cli_env(tmp_path / "data"), tmp_path)
    try:
        startup = json.loads(server.wait_for(r"^\{").string)
        assert startup["url"].startswith("http://127.0.0.1:")
        assert startup["tls"]["mode"] == "off"
        assert startup["bootstrap"]["client_secret"]
        assert startup["credentials_file"].endswith("bootstrap-credentials.json")
        assert startup["migrated"]["from"] is None
        response = httpx.get(f"{startup['url']}/readyz", timeout=10)
        assert response.json() == {"status": "ready"}
        assert server.stop() == 0
    finally:
        server.kill()
    assert server.out == [server.out[0]]  # one JSON document, nothing else on stdout


def test_unusable_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", "postgresql://callhook:pw@127.0.0.1:1/callhook")
    done = subprocess.run(
        [*CALLHOOK, "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert errors == [
        "error: cannot use the database postgresql+asyncpg://callhook:***@127.0.0.1:1/callhook: "
        "Connection refused"
    ]
    assert "Traceback" not in done.stderr


def test_tls_options_are_checked_before_starting(tmp_path: Path) -> None:
    junk = tmp_path / "cert.pem"
    junk.write_text("junk")
    env = cli_env(tmp_path / "data")

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CALLHOOK, "serve", "--port", "0", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )

    done = serve("--tls-cert", str(junk), "--tls-key", str(junk))
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot use the TLS certificate")
    done = serve("--tls-cert", str(junk))
    assert done.returncode == 2
    assert "--tls-cert and --tls-key go together" in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "systemd-stop"])
def test_a_signal_to_the_group_stops_serve_and_its_workers_without_restarting_them(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Ctrl-C or a service manager's stop reaches every process of the group: the worker
    processes are serve's to stop (they finish their requests first), not restarted as if
    they had died."""
    server = Server(
        ["--port", "0", "--workers", "2"], cli_env(tmp_path / "data"), tmp_path, terminal=True
    )
    try:
        url = server.wait_for(r"serving (http://127\.0\.0\.1:\d+)").group(1)
        deadline = time.monotonic() + WAIT
        while server.err.count("worker started") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.err.count("worker started") == 2, server.err
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        assert server.stop_group(sig) == 0
    finally:
        server.kill()
    assert f"callhook stopped ({sig.name})" in server.text
    assert server.err.count("worker stopped") == 2, server.err
    assert "starting another" not in server.err
    assert "Traceback" not in server.err
