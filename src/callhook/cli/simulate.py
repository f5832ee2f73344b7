"""``callhook simulate call``: push one realistic call through callhook's ingest API.

The events are built here (pure: the options, ids and clock come in) and sent one request each,
in order, to ``POST /callhook/v1/call-events`` with a source token, as a PBX connector would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from callhook import tls
from callhook.cli import context
from callhook.cli.output import emit_json, json_option, say
from callhook.cli.serve import CREDENTIALS_FILE
from callhook.errors import CallhookError

INGEST_PATH = "/callhook/v1/call-events"
DEFAULT_URL = "https://127.0.0.1:8443"
#: how a call that nobody answered ends (ANSWER is for --answer)
UNANSWERED = ("BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "UNKNOWN")
EXTENDED = re.compile(r"[0-9]{1,9}\*[0-9]{1,12}")
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the options ask for."""

    caller: str
    callee: str
    dialled: str
    answer: bool
    status: str
    did: str | None = None
    agents: tuple[str, ...] = ()


def party(value: str) -> dict[str, str]:
    """An extension when ``value`` contains ``*`` (extended form), else an external number."""
    return {"extension": value} if "*" in value else {"number": value}


def short(value: str) -> str:
    """What a caller dials: the short part of an extended number, or the number itself."""
    return value.split("*", 1)[1] if "*" in value else value


def events(
    plan: Plan, call_id: str, new_id: Callable[[], str], now: Callable[[], str]
) -> list[dict[str, Any]]:
    """The events of the call, in order."""

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"event_id": new_id(), "call_id": call_id, "type": kind, "time": now(), **fields}

    started: dict[str, Any] = {"caller": party(plan.caller), "callee": party(plan.callee)}
    if plan.did:
        started["did"] = plan.did
    started["dialled"] = plan.dialled
    sequence = [event("call.started", **started)]
    sequence += [event("leg.ringing", extension=agent) for agent in plan.agents]
    if plan.answer:
        answerer = plan.agents[0] if plan.agents else plan.callee
        answered = {"extension": answerer} if "*" in answerer else {}
        sequence.append(event("call.answered", **answered))
    # the pause between these two is the sender's business (--duration)
    sequence.append(event("call.ended", disposition="ANSWER" if plan.answer else plan.status))
    return sequence


@dataclass
class Sent:
    event: dict[str, Any]
    status: int
    response: Any

    def document(self) -> dict[str, Any]:
        return {
            "type": self.event["type"],
            "event_id": self.event["event_id"],
            "status": self.status,
            "response": self.response,
            "event": self.event,
        }

    def line(self) -> str:
        body = self.response if isinstance(self.response, dict) else {}
        deliveries = body.get("deliveries", 0)
        plural = "delivery" if deliveries == 1 else "deliveries"
        outcome = "duplicate" if body.get("duplicates") and not body.get("accepted") else "accepted"
        ev = self.event
        detail = ev.get("extension") or ev.get("disposition") or ""
        if ev["type"] == "call.started":
            ends = [ev[k].get("extension") or ev[k].get("number") for k in ("caller", "callee")]
            detail = " -> ".join(ends)
        text = f"{ev['type']:<14} {ev['call_id']}  {self.status} {outcome}, {deliveries} {plural}"
        return f"{text}  {detail}".rstrip()


@dataclass
class Sender:
    url: str
    token: str
    ssl_context: ssl.SSLContext | bool
    sent: list[Sent] = field(default_factory=list)

    async def send(self, session: aiohttp.ClientSession, event: dict[str, Any]) -> Sent:
        endpoint = self.url + INGEST_PATH
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with session.post(
                endpoint, json=event, headers=headers, ssl=self.ssl_context
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
        except aiohttp.ClientConnectorCertificateError:
            raise CallhookError(
                f"the TLS certificate of {self.url} is not trusted: "
                "pass --cacert FILE (or --insecure for a test server)"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            error = exc.os_error
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise CallhookError(
                f"cannot reach {self.url}: is `callhook serve` running? ({reason})"
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise CallhookError(f"no answer from {self.url} in time") from None
        except aiohttp.ClientError as exc:
            raise CallhookError(f"cannot talk to {self.url}: {exc or type(exc).__name__}") from None
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text[:500]
        sent = Sent(event, status, body)
        self.sent.append(sent)
        if status >= 400:
            raise CallhookError(f"{event['type']}: {endpoint} answered {status}: {_message(body)}")
        return sent


def _message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        code = f" ({error['code']})" if error.get("code") else ""
        return f"{error['message']}{code}"
    return str(body).strip()[:200] or "(empty answer)"


def _pause(seconds: float, answered: bool, as_json: bool) -> None:
    if seconds <= 0:
        return
    if as_json:
        time.sleep(seconds)
        return
    doing = "talking" if answered else "ringing"
    console = Console(highlight=False)
    if not console.is_terminal:
        say(f"  {doing} for {seconds:g} s")
        time.sleep(seconds)
        return
    with Progress(
        TextColumn(f"  {doing}"), BarColumn(), TimeRemainingColumn(), transient=True
    ) as progress:
        task = progress.add_task(doing, total=seconds)
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            progress.update(task, completed=elapsed)
            time.sleep(min(0.1, seconds - elapsed))


async def _run(
    sender: Sender, sequence: list[dict[str, Any]], plan: Plan, duration: float, as_json: bool
) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for event in sequence:
            if event["type"] == "call.ended":
                await asyncio.to_thread(_pause, duration, plan.answer, as_json)
            event["time"] = _now()
            sent = await sender.send(session, event)
            if not as_json:
                say(sent.line())


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _check_party(value: str, option: str) -> str:
    value = value.strip()
    if not value:
        raise click.BadParameter("must not be empty", param_hint=option)
    if "*" in value and not EXTENDED.fullmatch(value):
        raise click.BadParameter(
            f"{value!r} is not an extended number such as 0003*210", param_hint=option
        )
    return value


def _token(token: str | None, data_dir: Path) -> str:
    if token:
        return token
    path = data_dir / CREDENTIALS_FILE
    found: Any = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        found = json.loads(path.read_text("utf-8")).get("source_token")
    if not isinstance(found, str) or not found:
        raise CallhookError(
            f"no source token (none in {path}): pass --token TOKEN, "
            "or create one with `callhook admin source create NAME`"
        )
    return found


def _ssl(url: str, cacert: Path | None, insecure: bool, data_dir: Path) -> ssl.SSLContext | bool:
    if urlsplit(url).scheme != "https":
        return True
    if insecure:
        if cacert is not None:
            raise click.UsageError("use either --cacert or --insecure")
        click.echo("warning: --insecure: the server's TLS certificate is not checked", err=True)
        return False
    if cacert is None:
        dev = data_dir / "tls" / tls.CERT_FILE
        cacert = dev if dev.is_file() else None
    if cacert is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(cacert))
    except (OSError, ssl.SSLError) as exc:
        raise CallhookError(f"cannot use {cacert} as a CA certificate: {exc}") from None


def _url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="'--url'")
    return url.rstrip("/")


def _plan(
    caller: str,
    to: str | None,
    answer: bool,
    status: str | None,
    did: str | None,
    queue: str | None,
    agents: str | None,
) -> Plan:
    caller = _check_party(caller, "'--from'")
    if answer and status is not None:
        raise click.UsageError(
            "--status is how an unanswered call ends; leave it out with --answer"
        )
    if (queue is None) != (agents is None):
        raise click.UsageError("--via-queue and --agents go together")
    members: tuple[str, ...] = ()
    if queue is not None and agents is not None:
        queue = _check_party(queue, "'--via-queue'")
        members = tuple(_check_party(a, "'--agents'") for a in agents.split(",") if a.strip())
        if "*" not in queue or not members or any("*" not in a for a in members):
            raise click.UsageError("--via-queue and --agents take extended numbers (0003*300)")
    if to is None and queue is None:
        raise click.UsageError("Missing option '--to'.")
    dialled = _check_party(to, "'--to'") if to is not None else str(queue)
    callee = queue or dialled
    return Plan(
        caller, callee, short(dialled), answer, (status or "NOANSWER").upper(), did, members
    )


@click.group()
def simulate() -> None:
    """Make calls happen without a PBX, through callhook's ingest API."""


@simulate.command("call")
@click.option(
    "--from",
    "caller",
    required=True,
    metavar="PARTY",
    help="The caller: an extension (0003*201) or an external number (+15551234567).",
)
@click.option(
    "--to",
    metavar="PARTY",
    help="What the caller dials: an extension or an external number "
    "[default with --via-queue: the queue].",
)
@click.option("--answer", is_flag=True, help="The call is answered (by --to, or the first agent).")
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=3,
    show_default=True,
    metavar="SECONDS",
    help="Time between the answer (or the start) and the hangup.",
)
@click.option(
    "--status",
    type=click.Choice(UNANSWERED, case_sensitive=False),
    help="How an unanswered call ends [default: NOANSWER].",
)
@click.option("--did", metavar="NUMBER", help="The public number (DID) the call came in on.")
@click.option(
    "--via-queue",
    "queue",
    metavar="EXTENSION",
    help="The call goes to this queue extension, which rings --agents.",
)
@click.option(
    "--agents",
    metavar="EXT,EXT,...",
    help="Comma-separated extensions the queue rings, in order; the first answers.",
)
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    help="Where callhook serves (make serve: https://127.0.0.1:8443).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="A source token [default: source_token in DATA_DIR/bootstrap-credentials.json].",
)
@click.option(
    "--cacert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trust this PEM CA certificate [default for https: "
    "DATA_DIR/tls/dev-cert.pem when it exists].",
)
@click.option("--insecure", is_flag=True, help="Do not check the server's TLS certificate.")
@context.setting_option(
    "--data-dir",
    env="CALLHOOK_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to find the bootstrap credentials and the development certificate "
    "[default: ./callhook-data]",
)
@json_option
@click.pass_context
def call(
    ctx: click.Context,
    caller: str,
    to: str | None,
    answer: bool,
    duration: float,
    status: str | None,
    did: str | None,
    queue: str | None,
    agents: str | None,
    url: str,
    token: str | None,
    cacert: Path | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """Send the events of one call: started, legs ringing (queue), answered, ended.

    Prints a line per event with the server's answer; with --json, one document at the end:
    {"call_id", "events": [{"type", "event_id", "status", "response", "event"}]}.
    """
    plan = _plan(caller, to, answer, status, did, queue, agents)
    url = _url(url)
    data_dir = context.settings(ctx).data_dir
    sender = Sender(url, _token(token, data_dir), _ssl(url, cacert, insecure, data_dir))
    call_id = f"sim-{uuid.uuid4().hex[:12]}"
    sequence = events(plan, call_id, lambda: uuid.uuid4().hex, _now)
    asyncio.run(_run(sender, sequence, plan, duration, as_json))
    if as_json:
        emit_json({"call_id": call_id, "events": [s.document() for s in sender.sent]})
