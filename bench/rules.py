"""Benchmark 2, rules at scale: end-to-end latency with 1 thousand to 1 million PhoneCallEvents.

For each rule count, a new deployment (SQLite by default) gets 100,000 extensions and the
PhoneCallEvents written in bulk straight into its database, with callhook's own table
definitions and the row format the UAPI writes. The calls of the load use the first 100
extensions, which carry exactly one PhoneCallEvent of each type 0..4 to nginx (6 deliveries per
answered call, as in benchmark 1); every other PhoneCallEvent is spread over the other 99,900
extensions (URLs on the same nginx, never fired). So every run sends the same requests and only
the size of the tables differs. ``callhook serve`` is started after the bulk load, then
offered 1,000 events/s for 10 s; it reports the latency from the 202 that accepted an event to
the arrival at nginx of each request it caused, and the memory of the serve process. The
baseline is the run with 1 thousand PhoneCallEvents.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import string
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bench import load
from bench.deploy import ORG_CODE, Deployment, Process, extension
from bench.nginx import Nginx
from bench.report import Table as ReportTable
from bench.report import fmt, progress, ratio, record
from callhook.store.database import create_engine
from callhook.store.tables import accounts, apps, extensions, phone_call_events

EXTENSIONS = 100_000
#: extensions the calls of the load use (as in benchmark 1); each has one rule of every type
FIRING = 100
TYPES = (0, 1, 2, 3, 4)
RULE_COUNTS = (1_000, 100_000, 1_000_000)
QUICK_RULE_COUNTS = (1_000, 10_000)
CHUNK = 50_000
PCE_COLUMNS = (
    "id",
    "extension_id",
    "type",
    "method",
    "url",
    "status",
    "note",
    "modified",
    "app_id",
)
_ID_ALPHABET = string.ascii_letters + string.digits


# --- bulk rows -----------------------------------------------------------------------------------


def _timestamp(conn: AsyncConnection, value: datetime) -> Any:
    """A UTC timestamp as the driver takes it: SQLAlchemy's SQLite text, or a datetime."""
    if conn.dialect.name == "sqlite":
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


async def _insert(
    conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """INSERT ``rows`` (driver-ready values) with executemany, in chunks, with progress."""
    for name in columns:
        if name not in table.c:
            raise SystemExit(f"{table.name} has no column {name}: the bench is out of date")
    if conn.dialect.name == "postgresql":
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    else:
        marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
    for start in range(0, len(rows), CHUNK):
        await conn.exec_driver_sql(sql, list(rows[start : start + CHUNK]))
        if len(rows) > CHUNK:
            progress(f"    {table.name}: {min(len(rows), start + CHUNK):,}/{len(rows):,} rows")


def rule_ids(count: int, seed: int) -> Iterator[str]:
    """PhoneCallEvent ids as the service makes them (30 letters and digits), quickly."""
    choices = random.Random(seed).choices
    for _ in range(count):
        yield "".join(choices(_ID_ALPHABET, k=30))


def spread(rules: int, firing: int, total: int) -> list[tuple[int, int]]:
    """(extension index, type) of every PhoneCallEvent: one of each type on the ``firing``
    extensions, the rest round-robin over the others (types cycling per round)."""
    placed = [(n, t) for n in range(firing) for t in TYPES]
    idle = total - firing
    for i in range(max(0, rules - len(placed))):
        placed.append((firing + i % idle, TYPES[(i // idle) % len(TYPES)]))
    return placed


def firing_rule_url(receiver: str, n: int) -> str:
    """Where the rules of firing extension ``n`` send; isolation.py overrides some of them."""
    return f"{receiver}/hook"


async def bulk_load(
    database_url: str,
    client_id: str,
    *,
    total_extensions: int,
    rules: int,
    urls: dict[int, str],
    idle_url: str,
) -> None:
    """Add extensions ``FIRING``.. up to ``total_extensions`` beside the imported ones, and
    ``rules`` PhoneCallEvents: those of the firing extension n to ``urls[n]``, the others to
    ``idle_url``/NUMBER. The imported directory must hold extensions 0..FIRING-1."""
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            org_id = (
                await conn.execute(select(accounts.c.id).where(accounts.c.org_code == ORG_CODE))
            ).scalar_one()
            first = (
                await conn.execute(
                    select(extensions).where(
                        extensions.c.org_id == org_id, extensions.c.number == extension(0)
                    )
                )
            ).one()
            app_id = (
                await conn.execute(select(apps.c.id).where(apps.c.client_id == client_id))
            ).scalar_one()
            same_name = first.name == first.number
            created = _timestamp(conn, now)
            progress(f"  bulk: {total_extensions - FIRING:,} extensions")
            await _insert(
                conn,
                extensions,
                ("org_id", "owner_id", "number", "type", "name", "created"),
                [
                    (
                        org_id,
                        first.owner_id,
                        extension(n),
                        first.type,
                        extension(n) if same_name else first.name,
                        created,
                    )
                    for n in range(FIRING, total_extensions)
                ],
            )
            ids = {
                r.number: r.id
                for r in await conn.execute(
                    select(extensions.c.id, extensions.c.number).where(
                        extensions.c.org_id == org_id
                    )
                )
            }
            placed = spread(rules, FIRING, total_extensions)
            progress(f"  bulk: {len(placed):,} PhoneCallEvents")
            rows = [
                (
                    rule_id,
                    ids[extension(n)],
                    t,
                    1,  # POST
                    urls[n] if n < FIRING else f"{idle_url}/{extension(n)}",
                    1,  # enabled
                    "",
                    created,
                    app_id,
                )
                for rule_id, (n, t) in zip(rule_ids(len(placed), rules), placed, strict=True)
            ]
            await _insert(
                conn,
                phone_call_events,
                PCE_COLUMNS,
                rows,
            )
    finally:
        await engine.dispose()


# --- the run -------------------------------------------------------------------------------------


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB: resident now, and the peak."""
    found = {"VmRSS": float("nan"), "VmHWM": float("nan")}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in found:
                found[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return found["VmRSS"], found["VmHWM"]


def database_mib(deployment: Deployment) -> float:
    """The SQLite file's size (with its WAL), or NaN on PostgreSQL."""
    data = deployment.tmp / "data"
    if deployment.engine != "sqlite":
        return float("nan")
    return sum(p.stat().st_size for p in data.glob("callhook.db*")) / 2**20


def drive(
    deployment: Deployment,
    receiver: Nginx,
    *,
    rate: float,
    seconds: float,
    drain: float,
    prefix: str,
    expected: int | None = None,
) -> tuple[load.Outcome, load.Offered]:
    """Answered ext->ext calls among the first FIRING extensions at ``rate`` events/s for
    ``seconds``, then wait (at most ``drain`` s) for ``expected`` arrivals at ``receiver``
    (default: 6 per call); the outcome as benchmark 1 measures it."""
    receiver.reopen()
    calls = max(1, int(rate * seconds) // load.EVENTS_PER_CALL)
    stagger = max(1, int(rate / load.EVENTS_PER_CALL * 0.5))
    events = load.call_stream(calls, FIRING, stagger, prefix)
    if expected is None:
        expected = calls * load.DELIVERIES_PER_CALL
    progress(f"  offering {len(events):,} events at {fmt(rate)}/s")
    offered = asyncio.run(load.offer(deployment.url, deployment.source_token, events, rate=rate))
    progress(f"  accepted {offered.events_per_s:,.0f} events/s; waiting for deliveries")
    arrivals = load.wait_for_arrivals(receiver, expected, drain, deployment.database_url)
    keys = asyncio.run(load.delivery_keys(deployment.database_url))
    return load.measure(offered, arrivals, keys, expected), offered


@dataclass
class Row:
    rules: int
    outcome: load.Outcome
    rss_idle: float
    rss: float
    hwm: float
    db_mib: float
    bulk_s: float


def run_count(
    engine: str,
    receiver: Nginx,
    rules: int,
    *,
    rate: float,
    seconds: float,
    drain: float,
    workers: int,
) -> Row:
    with Deployment(engine) as deployment:
        progress(f"{rules:,} PhoneCallEvents over {EXTENSIONS:,} extensions ({engine})")
        first = deployment.serve()
        deployment.import_directory(FIRING)
        deployment.stop(first)
        started = time.monotonic()
        asyncio.run(
            bulk_load(
                deployment.database_url,
                deployment.client_id,
                total_extensions=EXTENSIONS,
                rules=rules,
                urls={n: firing_rule_url(receiver.url, n) for n in range(FIRING)},
                idle_url=f"{receiver.url}/idle",
            )
        )
        bulk_s = time.monotonic() - started
        progress(f"  bulk load took {bulk_s:.1f} s; starting callhook serve")
        serving: Process = deployment.serve("--workers", str(workers))
        time.sleep(1)
        rss_idle, _ = memory_mib(serving.pid)
        outcome, _ = drive(
            deployment, receiver, rate=rate, seconds=seconds, drain=drain, prefix=f"n{rules}"
        )
        rss, hwm = memory_mib(serving.pid)
        progress(
            f"  p50 {fmt(outcome.p50_ms)} ms, p99 {fmt(outcome.p99_ms)} ms, "
            f"delivered {outcome.delivered:,}/{outcome.expected:,}, RSS {rss:.0f} MiB"
        )
        return Row(rules, outcome, rss_idle, rss, hwm, database_mib(deployment), bulk_s)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench rules", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1k and 10k rules, 3 s of load")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--engine", default="sqlite", help="sqlite or postgresql")
    parser.add_argument(
        "--rules", default=None, help="comma-separated rule counts (default 1000,100000,1000000)"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="offered events/s")
    parser.add_argument(
        "--workers", type=int, default=1, help="serve --workers N (0: the worker inside serve)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="offered seconds per run")
    parser.add_argument("--drain", type=float, default=180.0, help="longest wait for deliveries")
    args = parser.parse_args(argv)
    if args.rules:
        counts = [int(x) for x in args.rules.split(",")]
    else:
        counts = list(QUICK_RULE_COUNTS if args.quick else RULE_COUNTS)
    if min(counts) < FIRING * len(TYPES):
        raise SystemExit(f"at least {FIRING * len(TYPES)} rules: the firing extensions need them")
    seconds = 3.0 if args.quick else args.seconds

    rows: list[Row] = []
    with Nginx() as receiver:
        for count in counts:
            rows.append(
                run_count(
                    args.engine,
                    receiver,
                    count,
                    rate=args.rate,
                    seconds=seconds,
                    drain=args.drain,
                    workers=args.workers,
                )
            )
    base = rows[0]
    table = ReportTable(
        f"Rules at scale: {fmt(args.rate)} events/s offered for {fmt(seconds)} s ({args.engine}, "
        f"callhook serve --workers {args.workers}), answered ext->ext calls (6 POSTs each) "
        "to nginx on 127.0.0.1",
        [
            "rules",
            "extensions",
            "p50 ms",
            "p99 ms",
            "max ms",
            f"p99 vs {_short(base.rules)}",
            "delivered",
            "RSS idle MiB",
            "RSS MiB",
            "peak RSS MiB",
            "db MiB",
            "bulk load s",
        ],
    )
    for row in rows:
        out = row.outcome
        table.add(
            row.rules,
            EXTENSIONS,
            out.p50_ms,
            out.p99_ms,
            out.max_ms,
            ratio(out.p99_ms, base.outcome.p99_ms),
            f"{out.delivered:,}/{out.expected:,}",
            row.rss_idle,
            row.rss,
            row.hwm,
            row.db_mib,
            row.bulk_s,
        )
    table.note(
        f"every run fires the same rules: the calls use {FIRING} extensions with one "
        f"PhoneCallEvent of each type 0..4 to nginx; the other rules are spread round-robin over "
        f"the other {EXTENSIONS - FIRING:,} extensions (URLs on nginx, never fired)"
    )
    table.note(
        "extensions and PhoneCallEvents written in bulk into the database (the UAPI's row "
        "format) before `callhook serve` starts; RSS idle: 1 s after start, RSS and peak "
        "(VmHWM): after the run"
    )
    table.note("target: p99 with 1 million PhoneCallEvents at most 1.2x the p99 with 1 thousand")
    if not args.no_record:
        record("rules", "2. Rules at scale", [table])
    else:
        print(table.text())


def _short(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000}k"
    return str(count)
