"""callhook as a user runs it, for the benchmarks: ``callhook serve`` (and ``callhook worker``
processes) on SQLite or PostgreSQL, a directory of extensions, an app token, a source token.

PostgreSQL: the server of ``CALLHOOK_BENCH_POSTGRES_URL`` (default the local one with trust
auth, user postgres); each deployment gets a new database ``callhook_bench``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bench.report import progress

CALLHOOK = [sys.executable, "-m", "callhook.cli"]
POSTGRES = os.environ.get("CALLHOOK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
BENCH_DB = "callhook_bench"
ORG_CODE = 3

#: receivers on 127.0.0.1 allowed, the API not rate limited, logs quiet
BENCH_ENV = {
    "CALLHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
    "CALLHOOK_RATE_LIMIT": "0",
    "CALLHOOK_LOG_LEVEL": "WARNING",
}


def extension(n: int) -> str:
    """The short number of the n-th benchmark extension (1000, 1001, ...)."""
    return str(1000 + n)


def extended(n: int) -> str:
    return f"{ORG_CODE:04d}*{extension(n)}"


def directory_yaml(extensions: int) -> str:
    """One service provider, one organization (code 3), one user owning ``extensions``."""
    lines = [
        "service_providers:",
        "  - name: Bench Telecom",
        "    organizations:",
        "      - name: Bench Corp",
        f"        code: {ORG_CODE}",
        "        users:",
        "          - name: Bench User",
        "            extensions:",
    ]
    lines += [
        f'              - {{number: "{extension(n)}", type: phone-terminal}}'
        for n in range(extensions)
    ]
    return "\n".join(lines) + "\n"


def psql(sql: str) -> None:
    """Run one statement on the benchmark's PostgreSQL server (as its ``postgres`` database)."""
    done = subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{POSTGRES}/postgres", "-c", sql],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(
            f"PostgreSQL at {POSTGRES} is not usable ({done.stderr.strip()}); set "
            "CALLHOOK_BENCH_POSTGRES_URL or run only the SQLite benchmarks (--sqlite-only)."
        )


def postgres_database(name: str = BENCH_DB) -> str:
    """A new empty database ``name`` on the benchmark's PostgreSQL server; its SQLAlchemy URL."""
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(f"CREATE DATABASE {name}")
    return f"{POSTGRES.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Process:
    """A callhook process whose output is read as it comes (for its startup line)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [*CALLHOOK, *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            del self.err[:-100000]

    def first_json(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            if line.startswith("{"):
                found: dict[str, Any] = json.loads(line)
                return found
        self.stop()
        raise SystemExit(f"callhook {' '.join(self.args)} did not start:\n{''.join(self.err)}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)


class Deployment:
    """``with Deployment("sqlite") as d:`` a data directory, a database, processes on demand."""

    def __init__(self, engine: str = "sqlite", **env: str) -> None:
        if engine not in ("sqlite", "postgresql"):
            raise SystemExit(f"unknown database engine {engine!r}: sqlite or postgresql")
        self.engine = engine
        self.tmp = Path(tempfile.mkdtemp(prefix="callhook-bench-"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CALLHOOK_")}
        self.env.update({"CALLHOOK_DATA_DIR": str(self.tmp / "data"), **BENCH_ENV, **env})
        if engine == "postgresql":
            self.env["CALLHOOK_DATABASE_URL"] = postgres_database()
        self.processes: list[Process] = []
        self.url = ""
        self.client_id = self.client_secret = self.source_token = ""
        self._token = ""

    @property
    def database_url(self) -> str:
        return self.env.get(
            "CALLHOOK_DATABASE_URL", f"sqlite+aiosqlite:///{self.tmp / 'data' / 'callhook.db'}"
        )

    def __enter__(self) -> Deployment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for process in reversed(self.processes):
            process.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [*CALLHOOK, *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise SystemExit(f"callhook {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def serve(self, *args: str) -> Process:
        """``callhook serve`` on a free port over plain HTTP; the first start bootstraps."""
        process = Process(["serve", "--port", "0", "--json", *args], self.env, self.tmp)
        self.processes.append(process)
        startup = process.first_json()
        self.url = startup["url"]
        if boot := startup.get("bootstrap"):
            self.client_id, self.client_secret = boot["client_id"], boot["client_secret"]
            self.source_token = boot["source_token"]
        return process

    def worker(self, name: str) -> Process:
        process = Process(["worker", "--name", name], self.env, self.tmp)
        self.processes.append(process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        self.processes.remove(process)

    def import_directory(self, extensions: int) -> None:
        progress(f"importing a directory of {extensions:,} extensions")
        path = self.tmp / "directory.yaml"
        path.write_text(directory_yaml(extensions), "utf-8")
        self.cli("admin", "import", str(path))

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
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def rule(self, client: httpx.Client, number: str, event_type: int, url: str) -> None:
        """One PhoneCallEvent on ``number`` (extended: 0003*1000) through the UAPI."""
        response = client.post(
            f"{self.url}/uapi/extensions/@me/{number}/phoneCallEvents",
            json={"type": event_type, "url": url, "method": 1},
            headers=self.headers(),
        )
        if response.status_code != 201:
            raise SystemExit(f"creating a PhoneCallEvent failed: {response.text}")

    def rules(self, extensions: int, types: tuple[int, ...], url: str) -> None:
        """PhoneCallEvents of each of ``types`` on each of the first ``extensions`` benchmark
        extensions, all to ``url``, through the UAPI."""
        progress(f"creating {extensions * len(types)} PhoneCallEvents through the UAPI")
        with httpx.Client(timeout=30) as client:
            for n in range(extensions):
                for event_type in types:
                    self.rule(client, extended(n), event_type, url)
