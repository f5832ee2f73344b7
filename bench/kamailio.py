"""Benchmark 6, Kamailio: real SIP calls through contrib/kamailio/callhook.cfg to webhooks at nginx.

SIPp places answered extension-to-extension calls (1 s of talk) through Kamailio to a SIPp
answering side, at increasing rates (calls/s, each for ``--seconds``). Kamailio posts each call's
3 events to ``callhook serve`` (``--workers 1``, SQLite) from its queue; callhook delivers the 6
PhoneCallEvents of each call to nginx. For each rate: calls placed, SIP failures (SIPp's failed
calls) and retransmissions, call events accepted by callhook, deliveries made and delivered,
and the latency from the call event at Kamailio (the ``time`` Kamailio stamps on it) to the
arrival of each webhook at nginx (p50/p99/max). At a rate, *all delivered* means no call failed
in SIP, every call's 3 events reached callhook and all its 6 deliveries were made and delivered
(however late: Kamailio queues what callhook cannot take yet); *kept up* means that and a p99
latency under 1 s (no backlog built up).

The baseline, measured in the same run: the same SIPp load through the same configuration with
``-A CALLHOOK_NO_EVENTS`` (SIP only). The figures are the highest rates all delivered and kept up
with events against the highest rate SIP alone carries without failures.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from bench.deploy import Deployment, extension
from bench.load import EVENT_OF_TYPE, delivery_keys, wait_for_arrivals
from bench.nginx import Nginx
from bench.report import Table, fmt, percentile, progress, ratio, record
from bench.sip import (
    CONTRIB,
    SipError,
    control_socket,
    define_args,
    free_port,
    install_tools,
    kamailio_command,
    recipe_settings,
    running,
    tools_present,
    uac_command,
    uas_command,
)
from callhook.store.database import create_engine
from callhook.store.tables import call_events, calls, deliveries

EXTENSIONS = 100
TYPES = (0, 1, 2, 3, 4)
EVENTS_PER_CALL = 3
DELIVERIES_PER_CALL = 6
TALK_MS = 1000
#: p99 latency under which a rate counts as kept up
KEPT_UP_MS = 1000.0
ORG = "0003"


def ensure_tools() -> None:
    """Kamailio and SIPp, installed from Debian when missing."""
    if not tools_present():
        progress("installing Kamailio and SIPp (contrib/kamailio/install-packages.sh)")
    reason = install_tools()
    if reason:
        raise SystemExit(f"Kamailio and SIPp are needed: {reason}")


@dataclass
class Kamailio:
    port: int
    ctl: str

    def queued(self) -> int:
        """Events waiting in Kamailio's queue (not counting the batch being sent)."""
        done = subprocess.run(
            ["kamcmd", "-s", self.ctl, "mqueue.get_size", "callhook"],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in done.stdout.splitlines():
            if line.strip().startswith("size:"):
                return int(line.split(":", 1)[1])
        return -1


@contextmanager
def kamailio(
    tmp: Path, uas_port: int, callhook: str, token: str, events: bool
) -> Iterator[Kamailio]:
    """Kamailio on the recipe, its settings given with -A as a user may."""
    port = free_port()
    ctl = control_socket(tmp)
    settings = recipe_settings(
        port=port, callhook_url=callhook, token=token, org=ORG, forward_port=uas_port, ctl=ctl
    )
    args = kamailio_command(CONTRIB / "callhook.cfg", 512, *define_args(settings))
    if not events:
        args += ["-A", "CALLHOOK_NO_EVENTS"]
    with running(args, tmp, tmp / f"kamailio-{'events' if events else 'sip'}.log", port):
        yield Kamailio(port, ctl)


@dataclass
class Sip:
    """SIPp's counts for one run (its statistics file, cumulative)."""

    created: int
    successful: int
    failed: int
    retransmissions: int


def place_calls(tmp: Path, port: int, rate: int, seconds: float, prefix: str) -> Sip:
    """``rate`` answered calls per second for ``seconds`` with SIPp; waits for them to end."""
    total = int(rate * seconds)
    calls_csv = tmp / "calls.csv"
    with calls_csv.open("w") as f:
        f.write("SEQUENTIAL\n")
        for k in range(EXTENSIONS // 2):
            f.write(f"{extension(2 * k)};{extension(2 * k + 1)};Bench Caller\n")
    stats = tmp / f"{prefix}.csv"
    done = subprocess.run(
        uac_command(
            port,
            "answered",
            calls_csv,
            TALK_MS,
            (prefix, "bench"),
            *("-r", str(rate), "-rp", "1000", "-m", str(total), "-l", "100000"),
            *("-trace_stat", "-stf", str(stats), "-fd", "1"),
            *("-timeout", f"{int(seconds) + 60}s"),
        ),
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"SIPp failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    with stats.open() as f:
        rows = list(csv.reader(f, delimiter=";"))
    last = dict(zip(rows[0], rows[-1], strict=False))
    return Sip(
        created=int(last["TotalCallCreated"]),
        successful=int(last["SuccessfulCall(C)"]),
        failed=int(last["FailedCall(C)"]),
        retransmissions=int(last["Retransmissions(C)"]),
    )


@dataclass
class Counts:
    events: int
    deliveries: int
    delivered: int


async def counts(database_url: str, prefix: str) -> Counts:
    """Call events and deliveries of this run's calls (their call ids start with ``prefix-``)."""
    engine = create_engine(database_url)
    like = f"{prefix}-%"
    try:
        async with engine.connect() as conn:
            events = await conn.scalar(
                select(func.count())
                .select_from(call_events.join(calls, call_events.c.call_ref == calls.c.id))
                .where(calls.c.call_id.like(like))
            )
            made = await conn.scalar(
                select(func.count()).select_from(deliveries).where(deliveries.c.call_id.like(like))
            )
            delivered = await conn.scalar(
                select(func.count())
                .select_from(deliveries)
                .where(deliveries.c.call_id.like(like), deliveries.c.state == "delivered")
            )
            return Counts(events or 0, made or 0, delivered or 0)
    finally:
        await engine.dispose()


async def event_times(database_url: str, prefix: str) -> dict[tuple[str, str], float]:
    """(call id, kind) -> when Kamailio says the event happened (epoch seconds)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(calls.c.call_id, call_events.c.kind, call_events.c.time)
                .select_from(call_events.join(calls, call_events.c.call_ref == calls.c.id))
                .where(calls.c.call_id.like(f"{prefix}-%"))
            )
            found: dict[tuple[str, str], float] = {}
            for call_id, kind, at in rows:
                stamp: datetime = at
                found[(call_id, kind)] = stamp.timestamp()
            return found
    finally:
        await engine.dispose()


def wait_for_events(k: Kamailio, database_url: str, prefix: str, drain: float) -> Counts:
    """Until Kamailio's queue is empty and callhook's count of this run's events holds still."""
    deadline = time.monotonic() + drain
    last = asyncio.run(counts(database_url, prefix))
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = asyncio.run(counts(database_url, prefix))
        if now.events != last.events:
            progress(f"  callhook has {now.events:,} events")
            last, still_since = now, time.monotonic()
        elif k.queued() == 0 and time.monotonic() - still_since >= 3:
            break
    return last


@dataclass
class Run:
    rate: int
    sip: Sip
    counts: Counts | None = None
    received: int = 0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan

    @property
    def sip_clean(self) -> bool:
        return self.sip.failed == 0 and self.sip.successful == self.sip.created

    @property
    def kept_up(self) -> bool:
        return self.all_delivered and self.p99_ms < KEPT_UP_MS

    @property
    def all_delivered(self) -> bool:
        c = self.counts
        return (
            self.sip_clean
            and c is not None
            and c.events == EVENTS_PER_CALL * self.sip.successful
            and c.deliveries == DELIVERIES_PER_CALL * self.sip.successful
            and c.delivered == c.deliveries
            and self.received == c.deliveries
        )


def run_with_events(
    k: Kamailio,
    tmp: Path,
    deployment: Deployment,
    receiver: Nginx,
    rate: int,
    seconds: float,
    drain: float,
) -> Run:
    prefix = f"r{rate}"
    receiver.reopen()
    progress(f"with events: {rate} calls/s for {seconds:.0f} s")
    run = Run(rate, place_calls(tmp, k.port, rate, seconds, prefix))
    progress(f"  SIP: {run.sip.successful:,}/{run.sip.created:,} calls, {run.sip.failed} failed")
    url = deployment.database_url
    made = wait_for_events(k, url, prefix, drain)
    arrivals = wait_for_arrivals(receiver, made.deliveries, drain, url)
    run.counts = asyncio.run(counts(url, prefix))
    keys = asyncio.run(delivery_keys(url))
    times = asyncio.run(event_times(url, prefix))
    latencies: list[float] = []
    seen: set[str] = set()
    for arrival in arrivals:
        key = keys.get(arrival.webhook_id)
        if key is None or arrival.webhook_id in seen or not key[0].startswith(f"{prefix}-"):
            continue
        seen.add(arrival.webhook_id)
        at = times.get((key[0], EVENT_OF_TYPE[key[1]]))
        if at is not None:
            latencies.append(max(0.0, arrival.at - at) * 1000)
    run.received = len(seen)
    run.p50_ms = percentile(latencies, 0.5)
    run.p99_ms = percentile(latencies, 0.99)
    run.max_ms = max(latencies, default=math.nan)
    return run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench kamailio", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="25 and 50 calls/s, 3 s each")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--rates", default="25,50,100,200,400,800,1600", help="calls/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of calls per rate")
    parser.add_argument("--drain", type=float, default=180.0, help="longest wait per rate")
    parser.add_argument("--serve", default="--workers 1", help="callhook serve's arguments")
    args = parser.parse_args(argv)
    rates = [25, 50] if args.quick else [int(r) for r in args.rates.split(",")]
    seconds = 3.0 if args.quick else args.seconds

    ensure_tools()
    tmp = Path(tempfile.mkdtemp(prefix="callhook-bench-kamailio-"))
    uas_port = free_port()
    uas = uas_command(uas_port, TALK_MS)
    baseline: list[Run] = []
    runs: list[Run] = []
    try:
        with (
            Nginx() as receiver,
            Deployment("sqlite") as deployment,
            running(uas, tmp, tmp / "uas.log", uas_port),
        ):
            deployment.serve(*args.serve.split())
            deployment.import_directory(EXTENSIONS)
            deployment.rules(EXTENSIONS, TYPES, f"{receiver.url}/hook")
            created = deployment.cli("admin", "source", "create", "kamailio", "--json")
            token = json.loads(created)["token"]

            with kamailio(tmp, uas_port, deployment.url, token, events=False) as k:
                for rate in rates:
                    progress(f"SIP only: {rate} calls/s for {seconds:.0f} s")
                    run = Run(rate, place_calls(tmp, k.port, rate, seconds, f"s{rate}"))
                    progress(
                        f"  {run.sip.successful:,}/{run.sip.created:,}, {run.sip.failed} failed"
                    )
                    baseline.append(run)
            with kamailio(tmp, uas_port, deployment.url, token, events=True) as k:
                for rate in rates:
                    runs.append(
                        run_with_events(k, tmp, deployment, receiver, rate, seconds, args.drain)
                    )
    except SipError as exc:  # Kamailio or SIPp did not start
        raise SystemExit(str(exc)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    table = Table(
        "Kamailio: answered SIP calls (1 s talk) through callhook.cfg, 6 webhooks each to nginx",
        [
            "mode",
            "calls/s",
            "calls",
            "SIP failed",
            "retrans",
            "events",
            "deliveries",
            "delivered",
            "p50 ms",
            "p99 ms",
            "max ms",
            "all delivered",
            "kept up",
        ],
    )
    for run in baseline:
        table.add(
            "SIP only",
            run.rate,
            run.sip.created,
            run.sip.failed,
            run.sip.retransmissions,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        )
    for run in runs:
        c = run.counts or Counts(0, 0, 0)
        table.add(
            "with events",
            run.rate,
            run.sip.created,
            run.sip.failed,
            run.sip.retransmissions,
            f"{c.events:,}/{EVENTS_PER_CALL * run.sip.successful:,}",
            f"{c.deliveries:,}/{DELIVERIES_PER_CALL * run.sip.successful:,}",
            f"{run.received:,}",
            run.p50_ms,
            run.p99_ms,
            run.max_ms,
            "yes" if run.all_delivered else "no",
            "yes" if run.kept_up else "no",
        )
    top = max(rates)

    def highest(found: list[int]) -> str:
        best = max(found, default=0)
        return f"{fmt(best)} calls/s{' (the highest tried)' if best == top else ''}"

    sip_clean = max((r.rate for r in baseline if r.sip_clean), default=0)
    delivered = max((r.rate for r in runs if r.all_delivered), default=0)
    kept_up = max((r.rate for r in runs if r.kept_up), default=0)
    summary = (
        f"SIP only, no failed call up to {highest([r.rate for r in baseline if r.sip_clean])}. "
        f"With events, every event reached callhook and every webhook was delivered up to "
        f"**{highest([r.rate for r in runs if r.all_delivered])}** "
        f"(**{ratio(float(delivered), float(sip_clean))}** the SIP-only rate), and callhook kept "
        f"up (p99 under {KEPT_UP_MS / 1000:.0f} s from the event at Kamailio to the webhook at "
        f"nginx) up to **{highest([r.rate for r in runs if r.kept_up])}** "
        f"(**{ratio(float(kept_up), float(sip_clean))}**)."
    )
    table.note(
        f"{EXTENSIONS} extensions with {len(TYPES)} PhoneCallEvents each, all to one nginx URL; "
        f"callhook `serve {args.serve}` on SQLite; Kamailio with 4 SIP workers and the recipe's "
        "one sender; SIPp caller and answering side, Kamailio, callhook and nginx share the cores."
    )
    table.note(
        "events: accepted by callhook / 3 per successful call; deliveries: made / 6 per call; "
        "delivered: distinct webhooks that reached nginx. Latency: from the event's time stamped "
        "by Kamailio to the webhook's arrival at nginx, over every webhook (a backlog shows here)."
    )
    table.note(
        "all delivered: no SIP failure, every event accepted, every delivery made and delivered "
        f"(within the drain limit); kept up: that, with p99 under {KEPT_UP_MS:,.0f} ms. "
        "Baseline: the same load with -A CALLHOOK_NO_EVENTS (SIP only)."
    )
    if args.no_record:
        print(table.text())
        print(summary)
    else:
        record("kamailio", "6. Kamailio: SIP calls to webhooks", [table], summary)
