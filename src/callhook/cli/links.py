"""``callhook source ami|esl|status``: follow a PBX (Asterisk AMI, FreeSWITCH ESL) and see how
each link is doing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import click

from callhook import logs
from callhook.cli import context
from callhook.cli.output import emit_json, json_option, say, table
from callhook.errors import ConfigError
from callhook.service import utcnow
from callhook.sources.registry import SourceRegistry
from callhook.sources.spec import SourceSpec, make_spec, parse_age
from callhook.sources.status import LinkStatus
from callhook.sources.tracking import DEFAULT_EXTENSION_PATTERN
from callhook.wiring import Components, build_link_runner

F = Callable[..., Any]


@click.group()
def source() -> None:
    """Follow a PBX and turn its calls into PhoneCallEvents; see how each link is doing."""


def _age(_ctx: click.Context, _param: click.Parameter, value: str) -> timedelta:
    try:
        return parse_age(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc).split("=", 1)[-1]) from None


def _common(default_name: str, default_port: int) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        options = [
            click.option("--host", required=True, help="The PBX's address."),
            click.option("--port", type=click.IntRange(1, 65535), default=default_port),
            click.option(
                "--org",
                type=click.IntRange(0, 999_999_999),
                required=True,
                help="Organization code of the PBX's extensions: 3 makes endpoint 210 the "
                "extension 0003*210.",
            ),
            click.option(
                "--name",
                default=default_name,
                show_default=True,
                help="The callhook source the calls belong to (created when missing).",
            ),
            click.option(
                "--extensions",
                "extension_pattern",
                default=DEFAULT_EXTENSION_PATTERN,
                show_default=True,
                metavar="REGEX",
                help="Endpoints matching this are extensions; others (trunks) are external.",
            ),
            click.option(
                "--max-call-age",
                default="4h",
                show_default=True,
                callback=_age,
                help="Close a call still open after this long (a lost BYE): 90m, 4h, 1d.",
            ),
            context.setting_option(
                "--log-level",
                env="CALLHOOK_LOG_LEVEL",
                type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
                help="Logging level (logs are JSON lines on stderr) [default: INFO]",
            ),
            context.database_options,
            json_option,
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _report(as_json: bool) -> Callable[[LinkStatus], None]:
    def changed(status: LinkStatus) -> None:
        if as_json:
            emit_json(
                {
                    "connected": status.connected,
                    "target": status.target,
                    "error": None if status.connected else status.last_error,
                    "tracked_calls": status.tracked_calls,
                },
                compact=True,
            )
        elif status.connected:
            again = f" (reconnect {status.reconnects})" if status.reconnects else ""
            say(f"connected to {status.target}{again}; following {status.tracked_calls} calls")
        else:
            say(f"link down: {status.last_error}; reconnecting")

    return changed


async def _follow(components: Components, spec: SourceSpec, as_json: bool) -> None:
    try:
        await context.prepare(components)
        source = await SourceRegistry(components.engine).ensure(spec.name)
        runner = build_link_runner(components, spec, source, on_change=_report(as_json))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if not as_json:
            say(f"callhook following {spec.describe()}  (Ctrl-C to stop)")
        await runner.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await components.close()


def _run(ctx: click.Context, kind: str, given: dict[str, Any], **specific: str) -> None:
    """Follow the PBX the options describe until stopped."""
    spec = make_spec(
        kind,
        given["host"],
        given["port"],
        name=given["name"],
        org=given["org"],
        extension_pattern=given["extension_pattern"],
        max_call_age=given["max_call_age"],
        **specific,
    )
    as_json = given["as_json"]
    settings = context.settings(ctx)
    logs.configure(settings.log_level)
    asyncio.run(_follow(context.open_components(settings), spec, as_json))
    if not as_json:
        say(f"callhook stopped following {spec.target}")


@source.command("ami")
@_common("asterisk", 5038)
@click.option("--username", required=True, help="The AMI user (a [section] of manager.conf).")
@click.option(
    "--secret",
    envvar="CALLHOOK_AMI_SECRET",
    show_envvar=True,
    required=True,
    help="The AMI user's secret (better from the environment than on the command line).",
)
@click.pass_context
def ami(ctx: click.Context, /, **given: Any) -> None:
    """Follow an Asterisk PBX over AMI (Asterisk 12 or newer; chan_pjsip or chan_sip).

    Logs in with Events: call,agent, turns DialBegin, DialEnd, BridgeEnter and Hangup into call
    events (grouped by Linkedid; the extension is the endpoint of the channel), and keeps
    following across reconnects: calls that ended while the link was down get a hangup
    marked reconstructed. Runs until Ctrl-C or SIGTERM. See docs/howto/asterisk.md.
    """
    _run(ctx, "ami", given, username=given["username"], secret=given["secret"])


@source.command("esl")
@_common("freeswitch", 8021)
@click.option(
    "--password",
    envvar="CALLHOOK_ESL_PASSWORD",
    show_envvar=True,
    required=True,
    help="The event socket password (event_socket.conf.xml).",
)
@click.option(
    "--format",
    "event_format",
    type=click.Choice(["plain", "json"]),
    default="plain",
    show_default=True,
    help="Event encoding asked of FreeSWITCH.",
)
@click.pass_context
def esl(ctx: click.Context, /, **given: Any) -> None:
    """Follow a FreeSWITCH PBX over the inbound event socket (ESL).

    Subscribes to the channel events, turns CHANNEL_CREATE, the B leg's CHANNEL_ANSWER,
    CHANNEL_BRIDGE and CHANNEL_HANGUP_COMPLETE into call events, and keeps following across
    reconnects: calls that ended while the link was down get a hangup marked reconstructed.
    Runs until Ctrl-C or SIGTERM. See docs/howto/freeswitch.md.
    """
    _run(ctx, "esl", given, secret=given["password"], event_format=given["event_format"])


def _ago(text: str | None) -> str:
    if not text:
        return "-"
    seconds = int((utcnow() - datetime.fromisoformat(text)).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


@source.command("status")
@context.database_options
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each PBX link: connected or not, since when, events seen, calls followed,
    reconnects and the last error (as reported by the process running it)."""

    async def work(components: Components) -> list[dict[str, Any]]:
        return await SourceRegistry(components.engine).links()

    links = context.run(ctx, work)
    if as_json:
        emit_json(links)
        return
    table(
        ["source", "kind", "pbx", "state", "since", "events", "calls", "reconnects"],
        [
            [
                link["name"],
                link["kind"],
                link["target"],
                link["state"],
                _ago(link["since"]),
                str(link["events_seen"]),
                str(link["tracked_calls"]),
                str(link["reconnects"]),
            ]
            for link in links
        ],
        empty="no PBX links yet; start one with `callhook source ami ...` or "
        "`callhook source esl ...`, or give `callhook serve --source URL`",
    )
    for link in links:
        if link["state"] == "unknown":
            say(
                f"{link['name']}: no report from {link['runner']} since "
                f"{_ago(link['last_report'])}: is it still running?"
            )
        if link["last_error"]:
            say(f"{link['name']}: last error {_ago(link['last_error_at'])}: {link['last_error']}")
