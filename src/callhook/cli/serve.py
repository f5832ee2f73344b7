"""``callhook serve``: migrate, bootstrap on the first start, then serve HTTP(S) with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click
import uvicorn
from sqlalchemy.exc import InterfaceError, OperationalError

from callhook import __version__, heap, logs, tls
from callhook.cli import context
from callhook.cli.output import emit_json, json_option, say
from callhook.config import Settings
from callhook.delivery.processes import WorkerProcesses
from callhook.delivery.runner import run_worker
from callhook.errors import ConfigError
from callhook.provisioning import NewApp
from callhook.service import utcnow
from callhook.sources.registry import SourceRegistry
from callhook.sources.spec import SourceSpec, parse_source_url, parse_source_urls
from callhook.store import outbox
from callhook.store.database import describe, writing
from callhook.wiring import Components, build_link_runner, build_worker

CREDENTIALS_FILE = "bootstrap-credentials.json"
#: seconds a thread holds the GIL while another waits for it (Python's default is 0.005): the
#: store's commit threads give the GIL up for each fsync and want it back right after; at 5 ms
#: they waited for the event loop's thread that long (decision 0012, "Create, third pass")
SWITCH_INTERVAL = 0.0002
#: worker processes `serve` starts by default: a worker process delivers ~6,000 requests/s on
#: one core, and a second one on a second core lets delivery keep up with ingest (decision
#: 0010, "Two worker processes by default"); one on a machine with a single core
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Tls:
    cert: Path | None = None
    key: Path | None = None
    #: "off", "files" or "self-signed"
    mode: str = "off"
    #: for a development certificate: "created", "renewed" or "reused"
    status: str = ""


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGINT and SIGTERM end ``serve`` and nothing more
    (uvicorn raises the signal again once stopped, which would kill the process)."""

    stopped_by: str = ""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopped_by = signal.Signals(sig).name
        super().handle_exit(sig, frame)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _connect_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on ``host``."""
    unspecified = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104
    return unspecified.get(host, host)


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {_url_host(host)}:{port}: {reason}") from None
    return sock


def _tls(data_dir: Path, cert: Path | None, key: Path | None, self_signed: bool) -> Tls:
    if self_signed and (cert or key):
        raise click.UsageError("use either --tls-self-signed or --tls-cert/--tls-key")
    if (cert is None) != (key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if self_signed:
        dev = tls.ensure_dev_certificate(data_dir, utcnow())
        return Tls(dev.cert_path, dev.key_path, "self-signed", dev.status)
    if cert is not None and key is not None:
        tls.check_pair(cert, key)
        return Tls(cert.resolve(), key.resolve(), "files")
    return Tls()


def _write_private(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temp, path)


def _loop_factory(config: uvicorn.Config) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (``loop="auto"``), as uvicorn itself would choose."""
    get = getattr(config, "get_loop_factory", None)  # newer uvicorn
    if get is not None:
        factory: Callable[[], asyncio.AbstractEventLoop] | None = get()
        return factory
    config.setup_event_loop()  # older uvicorn sets the event loop policy instead
    return None


@dataclass
class Startup:
    settings: Settings
    url: str
    tls: Tls
    migrated: tuple[str | None, str]
    bootstrap: NewApp | None = None
    #: the first start's source, "default" (for the ingest API and `callhook simulate`)
    source_token: str | None = None
    credentials_file: Path | None = None
    credentials_error: str = ""
    #: the PBX links this process runs
    links: tuple[SourceSpec, ...] = ()

    @property
    def token_url(self) -> str:
        host, port = self.settings.host, self.url.rsplit(":", 1)[1]
        scheme = "https" if self.tls.cert else "http"
        return f"{scheme}://{_url_host(_connect_host(host))}:{port}/oauth/token.php"

    def curl(self, client_id: str, secret: str) -> str:
        words = ["curl"]
        if self.tls.mode == "self-signed" and self.tls.cert:
            if _connect_host(self.settings.host) in tls.DEV_NAMES:
                words += ["--cacert", str(self.tls.cert)]
            else:
                words.append("--insecure")
        words += [self.token_url, "-d", "grant_type=client_credentials"]
        words += ["-d", f"client_id={client_id}", "-d", f"client_secret={secret}"]
        return shlex.join(words)

    def document(self) -> dict[str, Any]:
        boot = self.bootstrap
        return {
            "version": __version__,
            "url": self.url,
            "database": describe(self.settings.effective_database_url),
            "data_dir": str(self.settings.data_dir),
            "migrated": {"from": self.migrated[0], "to": self.migrated[1]},
            "tls": {"mode": self.tls.mode, "cert": self.tls.cert, "status": self.tls.status},
            "bootstrap": None
            if boot is None
            else {
                "account_id": boot.app.account_id,
                "client_id": boot.app.client_id,
                "client_secret": boot.client_secret,
                "token_url": self.token_url,
                "source_token": self.source_token,
            },
            "credentials_file": self.credentials_file,
            "sources": [spec.describe() for spec in self.links],
        }

    def announce(self) -> None:
        before, after = self.migrated
        schema = f"schema {after}" + (
            f", migrated from {before or 'empty'}" if before != after else ""
        )
        say(f"callhook {__version__} serving {self.url}  (Ctrl-C to stop)")
        say(f"  database  {describe(self.settings.effective_database_url)} ({schema})")
        say(f"  data dir  {self.settings.data_dir}")
        if self.tls.mode == "self-signed":
            say(f"  TLS       development certificate {self.tls.cert} ({self.tls.status})")
        elif self.tls.mode == "files":
            say(f"  TLS       {self.tls.cert}")
        for spec in self.links:
            say(f"  source    {spec.describe()}")
        boot = self.bootstrap
        if boot is not None:
            say()
            admin = boot.app.account_id
            say(f"First start: created an Administrator (account {admin}) with an app.")
            say(f"  client_id:     {boot.app.client_id}")
            say(f"  client_secret: {boot.client_secret}")
            if self.source_token:
                say(f"  source token:  {self.source_token}  (source 'default', for the ingest API)")
            if self.credentials_file:
                say(f"Shown only now; also saved in {self.credentials_file} (mode 0600).")
            else:
                say(f"Shown only now, and not saved ({self.credentials_error}): copy them.")
            say("Get an access token:")
            say(f"  {self.curl(boot.app.client_id, boot.client_secret)}")
        elif self.credentials_file:
            say(f"  bootstrap credentials: {self.credentials_file}")


def _save_credentials(startup: Startup) -> None:
    boot, path = startup.bootstrap, startup.settings.data_dir / CREDENTIALS_FILE
    if boot is None:
        startup.credentials_file = path if path.exists() else None
        return
    doc = {
        "account_id": boot.app.account_id,
        "client_id": boot.app.client_id,
        "client_secret": boot.client_secret,
        "token_url": startup.token_url,
        "source_token": startup.source_token,
        "created": boot.app.created.isoformat(),
    }
    try:
        _write_private(path, json.dumps(doc, indent=2) + "\n")
        startup.credentials_file = path
    except OSError as exc:
        startup.credentials_error = f"cannot write {path}: {exc.strerror or exc}"


def _links(settings: Settings, urls: tuple[str, ...]) -> tuple[SourceSpec, ...]:
    specs = parse_source_urls(settings.sources)
    specs += [parse_source_url(url, f"--source #{i}: ") for i, url in enumerate(urls, 1)]
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"two PBX sources are named {name!r}; give each its own name=...")
    return tuple(specs)


def _child_env(settings: Settings) -> dict[str, str]:
    """The environment of worker processes: this one's, with the settings given as options."""
    env = dict(os.environ)
    env["CALLHOOK_DATA_DIR"] = str(settings.data_dir)
    env["CALLHOOK_DATABASE_URL"] = settings.effective_database_url
    env["CALLHOOK_LOG_LEVEL"] = settings.log_level
    return env


async def _serve(
    components: Components,
    server: _Server,
    sock: socket.socket,
    startup: Startup,
    as_json: bool,
    workers: int | None,
) -> None:
    """Serve; ``workers``: None for no worker, 0 for one in this process, N for N processes."""
    try:
        startup.migrated = await context.prepare(components)
        try:
            startup.bootstrap = await components.provisioning.bootstrap()
        except (OperationalError, InterfaceError) as exc:
            raise context.database_error(components.settings, exc) from None
        if startup.bootstrap is not None:
            made = await SourceRegistry(components.engine).create("default")
            startup.source_token = made.token
        _save_credentials(startup)
        if as_json:
            emit_json(startup.document(), compact=True)
        else:
            startup.announce()
        stop = asyncio.Event()
        working = None
        children = None
        owns = components.settings.effective_database_url.startswith("sqlite")
        if workers == 0:
            worker, _ = build_worker(components)
            components.ingest.wake = worker.wake
            working = asyncio.create_task(run_worker(worker, stop, owns_database=owns))
        elif workers:
            if owns:  # leases of a previous run's workers: nobody else works on this database
                async with writing(components.engine) as conn:
                    await outbox.release_all(conn)
            children = WorkerProcesses(
                workers, components.engine, _child_env(components.settings), owns_database=owns
            )
            await children.start()
            components.ingest.wake = children.wake
        links = await _start_links(components, startup.links, stop)
        heap.settle()
        try:
            await server.serve(sockets=[sock])
        finally:
            stop.set()
            if links:
                await asyncio.gather(*links)  # their queued call events are committed first
            if working is not None:
                await working
            if children is not None:
                await children.stop()
    finally:
        await components.close()


async def _start_links(
    components: Components, specs: tuple[SourceSpec, ...], stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """Run each PBX link of CALLHOOK_SOURCES / --source in this process."""
    registry = SourceRegistry(components.engine)
    tasks = []
    for spec in specs:
        source = await registry.ensure(spec.name)
        runner = build_link_runner(components, spec, source)
        tasks.append(asyncio.create_task(runner.run(stop), name=f"source-{spec.name}"))
    return tasks


@click.command()
@context.setting_option(
    "--host",
    env="CALLHOOK_HOST",
    metavar="ADDRESS",
    help="Address to listen on [default: 127.0.0.1]",
)
@context.setting_option(
    "--port",
    env="CALLHOOK_PORT",
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one [default: 8080]",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Serve HTTPS with this PEM certificate (chain); needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The PEM private key of --tls-cert.",
)
@click.option(
    "--tls-self-signed",
    is_flag=True,
    help="Serve HTTPS with a development certificate for localhost, 127.0.0.1 and ::1, "
    "made once in DATA_DIR/tls and reused.",
)
@click.option(
    "--proxy-headers",
    is_flag=True,
    help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy).",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    metavar="IPS",
    help="Comma-separated addresses whose proxy headers are trusted.",
)
@context.setting_option(
    "--log-level",
    env="CALLHOOK_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging level (logs are JSON lines on stderr) [default: INFO]",
)
@click.option(
    "--no-worker",
    is_flag=True,
    help="Serve the API only; deliveries are sent by `callhook worker` processes (PostgreSQL).",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    default=DEFAULT_WORKERS,
    help="Worker processes to start and watch, each with a core of its own (on SQLite too; "
    "their metrics are not in this process's /metrics); 0 delivers in this process. "
    "[default: 2, or 1 on a machine with one core]",
)
@click.option(
    "--source",
    "source_urls",
    multiple=True,
    metavar="URL",
    help="Follow a PBX in this process: ami://USER:SECRET@HOST:5038?org=3 (Asterisk) or "
    "esl://:PASSWORD@HOST:8021?org=3 (FreeSWITCH); repeat for more. Adds to CALLHOOK_SOURCES.",
)
@context.database_options
@json_option
@click.pass_context
def serve(
    ctx: click.Context,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_self_signed: bool,
    proxy_headers: bool,
    forwarded_allow_ips: str,
    no_worker: bool,
    workers: int,
    source_urls: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run the server: the UnifiedAPI, OAuth, ingest and health endpoints, worker processes
    that deliver the webhooks (unless --no-worker; --workers 0: inside this process), and the
    PBX links given with --source or CALLHOOK_SOURCES.

    Applies pending migrations first. On the first start with an empty database it creates an
    Administrator with an app and prints the app's credentials once (they are also written to
    DATA_DIR/bootstrap-credentials.json, mode 0600). Stops cleanly on Ctrl-C or SIGTERM.
    With --json, prints the startup details as one JSON line.
    """
    settings = context.settings(ctx)
    data_dir = settings.data_dir.resolve()
    settings = dataclasses.replace(settings, data_dir=data_dir)
    for name in sorted(settings.extra):
        click.echo(f"warning: {name} is not a callhook setting; it is ignored", err=True)
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create the data directory {data_dir}: {exc.strerror}") from None
    links = _links(settings, source_urls)
    served_tls = _tls(data_dir, tls_cert, tls_key, tls_self_signed)
    logs.configure(settings.log_level)
    sock = _listen(settings.host, settings.port)
    port = sock.getsockname()[1]
    scheme = "https" if served_tls.cert else "http"
    startup = Startup(
        settings,
        f"{scheme}://{_url_host(settings.host)}:{port}",
        served_tls,
        (None, ""),
        links=links,
    )
    components = context.open_components(settings)
    config = uvicorn.Config(
        components.app,
        loop="auto",
        http="auto",
        ws="none",
        lifespan="auto",
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        ssl_certfile=served_tls.cert,
        ssl_keyfile=served_tls.key,
        log_config=None,
        access_log=True,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(config)) as runner:
            chosen = None if no_worker else workers
            runner.run(_serve(components, server, sock, startup, as_json, chosen))
    finally:
        sock.close()
    if not as_json:
        say(f"callhook stopped{f' ({server.stopped_by})' if server.stopped_by else ''}")
