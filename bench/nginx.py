"""A fast receiver: nginx from Debian answering 204, logging when each request arrived.

nginx costs almost no CPU, so what a benchmark measures is callhook, not its receiver. Its
access log has one line per request: the arrival time (``$msec``, seconds since the epoch
with milliseconds), the ``webhook-id`` header and the URI.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench.deploy import stop_process

CONFIG = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    log_format arrivals '$msec $http_webhook_id $uri';
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            access_log {dir}/arrivals.log arrivals;
            return 204;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_installed() -> str:
    """The nginx binary; `make bench` installs Debian's nginx-light when it is missing."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        raise SystemExit(
            "nginx is not installed: run `make bench` (it installs Debian's nginx-light), "
            "or `apt-get install nginx-light`."
        )
    return found


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float
    webhook_id: str
    uri: str


class Nginx:
    """``with Nginx() as receiver:`` a receiver on 127.0.0.1:``receiver.port``."""

    def __init__(self) -> None:
        self.binary = ensure_installed()
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="callhook-bench-nginx-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Nginx:
        conf = self._dir / "nginx.conf"
        conf.write_text(CONFIG.format(dir=self._dir, port=self.port), "utf-8")
        self._proc = subprocess.Popen(
            [self.binary, "-p", str(self._dir), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise SystemExit(f"nginx did not start: {err.strip()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx did not start listening within 10 s")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            stop_process(self._proc, 10)
        shutil.rmtree(self._dir, ignore_errors=True)

    def reopen(self) -> None:
        """Forget what arrived so far: ``arrivals`` reports only what comes next."""
        log = self._dir / "arrivals.log"
        self._offset = log.stat().st_size if log.exists() else 0

    def arrivals(self) -> list[Arrival]:
        """Everything received since the start or the last ``reopen`` (the log is unbuffered:
        one write per request, so nothing waits in nginx's memory)."""
        log = self._dir / "arrivals.log"
        if not log.exists():
            return []
        with log.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        found: list[Arrival] = []
        for line in data.decode("utf-8", "replace").splitlines():
            parts = line.split(" ")
            if len(parts) == 3:
                found.append(Arrival(float(parts[0]), parts[1], parts[2]))
        return found

    def count(self) -> int:
        return len(self.arrivals())
