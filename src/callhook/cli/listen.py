"""``callhook listen``: a throwaway webhook receiver that prints every request it gets.

Point a PhoneCallEvent at it to see what callhook sends: the VoipNow parameters (query string of
a GET, form body of a POST), the ``webhook-id`` and ``X-Callhook-Seq`` headers, and whether the
Standard Webhooks signature verifies against ``--secret``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

import click
from aiohttp import web
from rich.console import Console
from rich.text import Text
from standardwebhooks import Webhook, WebhookVerificationError

from callhook.cli.output import json_option
from callhook.errors import ConfigError

FORM = "application/x-www-form-urlencoded"
#: the methods whose parameters are in the query string; the others carry them in the body
QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Received:
    """One request as ``listen`` reports it."""

    time: datetime
    method: str
    path: str
    params: list[tuple[str, str]]
    webhook_id: str | None
    seq: int | str | None
    #: "ok", "bad" or "unchecked"
    signature: str
    signature_error: str = ""
    #: content type and size of a body that is not a form (not shown as parameters)
    other_body: tuple[str, int] | None = None

    def document(self) -> dict[str, object]:
        return {
            "time": self.time.isoformat(timespec="milliseconds"),
            "method": self.method,
            "path": self.path,
            "params": dict(self.params),
            "webhook_id": self.webhook_id,
            "seq": self.seq,
            "signature": self.signature,
        }

    def text(self) -> Text:
        line = Text.assemble(
            (self.time.strftime("%H:%M:%S"), "dim"),
            "  ",
            (self.method, "bold"),
            " ",
            self.path,
        )
        if self.webhook_id is not None:
            line.append(f"  webhook-id {self.webhook_id}")
        if self.seq is not None:
            line.append(f"  seq {self.seq}")
        line.append("  ")
        if self.signature == "ok":
            line.append("signature ok", "green")
        elif self.signature == "bad":
            line.append(f"signature BAD ({self.signature_error})", "bold red")
        else:
            line.append("signature not checked (pass --secret)", "dim")
        for name, value in self.params:
            line.append(f"\n    {name} = {value}")
        if self.other_body is not None:
            kind, size = self.other_body
            line.append(f"\n    ({size} bytes of {kind or 'unknown type'}, not shown)", "dim")
        return line


def _seq(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[0].lower() + text[1:]


def check_signature(webhook: Webhook, payloads: list[str], headers: dict[str, str]) -> str:
    """Why the signature does not verify for any of ``payloads``; "" when it does for one."""
    first = ""
    for payload in payloads:
        try:
            webhook.verify(payload, headers, json_parse=False)
        except WebhookVerificationError as exc:
            first = first or _reason(exc)
            if str(exc) != "No matching signature found":
                break  # the headers are the problem, not the payload
        except ValueError:  # a malformed webhook-signature header (binascii.Error is one)
            return "malformed webhook-signature header"
        else:
            return ""
    return first


def signed_payloads(raw_query: str) -> list[str]:
    """What a GET's signature may cover: the whole query string or, when the rule's URL had a
    query of its own, the part callhook appended after it (``url?own=1&CallID=...``)."""
    starts = [i + 1 for i, char in enumerate(raw_query) if char == "&"]
    return [raw_query, *(raw_query[i:] for i in starts)]


async def describe(request: web.Request, webhook: Webhook | None) -> Received:
    """Read ``request`` and decide what to report about it."""
    raw_query = request.raw_path.partition("?")[2]
    body = await request.read()
    path = request.path
    other_body = None
    if request.method in QUERY_METHODS:
        payloads = signed_payloads(raw_query)
        params = parse_qsl(raw_query, keep_blank_values=True, errors="replace")
    else:
        payload = body.decode("utf-8", errors="replace")
        payloads = [payload]
        if raw_query:
            path = f"{path}?{raw_query}"
        if request.content_type == FORM:
            params = parse_qsl(payload, keep_blank_values=True, errors="replace")
        else:
            params = []
            if body:
                other_body = (request.content_type, len(body))
    headers = dict(request.headers)
    if webhook is None:
        signature, error = "unchecked", ""
    else:
        error = check_signature(webhook, payloads, headers)
        signature = "bad" if error else "ok"
    return Received(
        time=datetime.now().astimezone(),
        method=request.method,
        path=path,
        params=params,
        webhook_id=request.headers.get("webhook-id"),
        seq=_seq(request.headers.get("X-Callhook-Seq")),
        signature=signature,
        signature_error=error,
        other_body=other_body,
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Listener:
    def __init__(self, webhook: Webhook | None, status: int, as_json: bool) -> None:
        self.webhook = webhook
        self.status = status
        self.as_json = as_json
        self.console = Console(highlight=False, soft_wrap=True)

    async def handle(self, request: web.Request) -> web.Response:
        received = await describe(request, self.webhook)
        if self.as_json:
            click.echo(json.dumps(received.document(), ensure_ascii=False))
        else:
            self.console.print(received.text())
        return web.Response(status=self.status)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def run(self, host: str, port: int) -> str:
        """Serve until SIGINT or SIGTERM; the name of the signal that stopped it."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, shutdown_timeout=5)
            try:
                await site.start()
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise ConfigError(f"cannot listen on {_url_host(host)}:{port}: {reason}") from None
            bound = runner.addresses[0][1] if runner.addresses else port
            click.echo(
                f"listening on http://{_url_host(host)}:{bound} (Ctrl-C to stop)", err=self.as_json
            )
            return await _until_signal()
        finally:
            await runner.cleanup()


async def _until_signal() -> str:
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[str] = loop.create_future()
    signals = (signal.SIGINT, signal.SIGTERM)

    def stop(sig: signal.Signals) -> None:
        if not stopped.done():
            stopped.set_result(sig.name)

    for sig in signals:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await stopped
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _webhook(secret: str | None) -> Webhook | None:
    if secret is None:
        return None
    try:
        return Webhook(secret)
    except Exception as exc:  # binascii.Error, EmptyWebhookSecretError
        raise click.BadParameter(
            f"not a Standard Webhooks secret (whsec_ and base64): {_reason(exc)}",
            param_hint="'--secret'",
        ) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDRESS", help="Address.")
@click.option(
    "--port",
    default=9000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one (the first line shows it).",
)
@click.option(
    "--secret",
    metavar="WHSEC",
    help="Verify Standard Webhooks signatures with this secret (whsec_...).",
)
@click.option(
    "--status",
    default=204,
    show_default=True,
    type=click.IntRange(200, 599),
    help="HTTP status to answer every request with (empty body).",
)
@json_option
def listen(host: str, port: int, secret: str | None, status: int, as_json: bool) -> None:
    """Receive webhooks and print them: a stand-in receiver for trying PhoneCallEvents.

    Accepts any method on any path and prints each request: its parameters (query string of a
    GET, form body of a POST), the webhook-id and X-Callhook-Seq headers and, with --secret,
    whether its signature verifies. With --json, prints one JSON object per request and line
    (the "listening on" line goes to stderr). Stops on Ctrl-C or SIGTERM.
    """
    listener = Listener(_webhook(secret), status, as_json)
    stopped_by = asyncio.run(listener.run(host, port))
    click.echo(f"stopped ({stopped_by})", err=as_json)
