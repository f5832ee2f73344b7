"""Benchmark 5, durability cost: accepted events/s of callhook's ingest, with the durability
settings callhook ships with, against the same storage engine doing bare batched inserts of
the same rows.

In process, one engine at a time (a SQLite file with callhook's ``create_engine``: WAL,
``synchronous=FULL``; then PostgreSQL unless ``--sqlite-only``):

- callhook: a migrated database with one organization (code 3), 100 extensions and five
  PhoneCallEvents on each (Dial-In, Dial-Out, Hangup, Answer-in, Answer-out, all to one URL), so
  an answered extension-to-extension call makes 6 deliveries. After a warm-up (which also
  measures how many calls fill ``--seconds``, 15 by default; or ``--calls`` of them), N such
  calls (3 events each) go through ``Ingest.accept`` in requests of whole calls (99 events,
  parsed in advance), 4 requests at a time so group commit has something to group. Nothing
  claims the deliveries.
- baseline: the rows callhook wrote in that run (``calls`` with their final state,
  ``call_events``, ``deliveries``) read back and inserted again into a second fresh, migrated
  database on the same engine with the same settings, one writer, ``executemany`` within one
  transaction per batch, the batches as large as callhook's transactions were on average
  (callhook commits one group of requests at a time, so both make the same number of commits);
  repeated, each time into a fresh database, until the repeats took 3 s: the median one.
  An extra row does the same with the engine's fsync at commit turned off (SQLite
  ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``): what durability itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.deploy import postgres_database, psql
from bench.report import Table, progress, ratio, record
from callhook.domain.accounts import AccountKind, ExtensionType
from callhook.domain.calls import CallEvent, parse_batch
from callhook.domain.phone_call_events import EventType, PhoneCallEvent, new_event_id
from callhook.domain.retry import RetryPolicy
from callhook.ingest import Ingest
from callhook.service import utcnow
from callhook.sources.registry import SourceRegistry
from callhook.store import directory, events, migrate
from callhook.store.database import create_engine
from callhook.store.sources import Source
from callhook.store.tables import call_events, calls, deliveries, sources

ORG_CODE = 3
EXTENSIONS = 100
HOOK_URL = "http://127.0.0.1:9/hook"
EVENTS_PER_CALL = 3
DELIVERIES_PER_CALL = 6
CALLS_PER_REQUEST = 33  # 99 events per request
CONCURRENCY = 4
#: the call ids of the warm-up, whose rows are left out of the baseline
WARM = "warm"
#: the bare inserts are repeated (each time into a fresh database) for a steadier number
MAX_REPEATS = 8
#: a database of its own, so that a run does not drop the one another benchmark is using
PG_DATABASE = "callhook_bench_durability"

Rows = list[dict[str, Any]]
#: the calls, call_events and deliveries rows of one transaction
Batch = tuple[Rows, Rows, Rows]


def extended(n: int) -> str:
    return f"{ORG_CODE:04d}*{1000 + n % EXTENSIONS}"


def answered_call(n: int, prefix: str = "bench") -> list[dict[str, Any]]:
    """Call n: extension n calls extension n+1, who answers; then it ends."""
    call = f"{prefix}-{n}"
    at = "2026-11-27T18:00:00Z"
    caller, callee = extended(n), extended(n + 1)
    return [
        {
            "event_id": f"{call}-s",
            "call_id": call,
            "type": "call.started",
            "time": at,
            "caller": {"extension": caller},
            "callee": {"extension": callee},
        },
        {
            "event_id": f"{call}-a",
            "call_id": call,
            "type": "call.answered",
            "time": at,
            "extension": callee,
        },
        {
            "event_id": f"{call}-e",
            "call_id": call,
            "type": "call.ended",
            "time": at,
            "disposition": "ANSWER",
        },
    ]


def request(first: int, n_calls: int, prefix: str = "bench") -> list[CallEvent]:
    """One request body: calls ``first`` .. (at most ``CALLS_PER_REQUEST`` of them)."""
    last = min(first + CALLS_PER_REQUEST, n_calls)
    return parse_batch([e for n in range(first, last) for e in answered_call(n, prefix)])


# --- databases ---------------------------------------------------------------------------------


def fresh_postgres() -> str:
    """A new empty database (dropping the previous one of this benchmark); its URL."""
    return postgres_database(PG_DATABASE)


def drop_postgres() -> None:
    psql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


def _sqlite_no_fsync(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_engine(url: str, *, fsync: bool = True) -> AsyncEngine:
    """callhook's engine for ``url``; with ``fsync=False`` commits do not wait for the disk."""
    if fsync:
        return create_engine(url)
    if url.startswith("sqlite"):
        engine = create_engine(url)  # its pragmas first, then synchronous=NORMAL over them
        event.listen(engine.sync_engine, "connect", _sqlite_no_fsync)
        return engine
    return create_async_engine(url, connect_args={"server_settings": {"synchronous_commit": "off"}})


@dataclass(frozen=True)
class Engine:
    name: str
    #: a new empty database on each call
    fresh: Callable[[], str]


def sqlite_engine(root: Path) -> Engine:
    count = iter(range(1_000_000))
    return Engine("sqlite", lambda: f"sqlite+aiosqlite:///{root / f'db{next(count)}.sqlite'}")


# --- callhook ----------------------------------------------------------------------------------


async def seed(engine: AsyncEngine) -> Source:
    """The organization, its extensions and their rules; a source."""
    now = utcnow()
    async with engine.begin() as conn:
        sp = await directory.insert_account(
            conn,
            kind=AccountKind.SERVICE_PROVIDER,
            name="Bench Telecom",
            parent=None,
            org_code=None,
            now=now,
        )
        org = await directory.insert_account(
            conn,
            kind=AccountKind.ORGANIZATION,
            name="Bench Corp",
            parent=sp,
            org_code=ORG_CODE,
            now=now,
        )
        user = await directory.insert_account(
            conn, kind=AccountKind.USER, name="Bench User", parent=org, org_code=None, now=now
        )
        for n in range(EXTENSIONS):
            ext = await directory.insert_extension(
                conn,
                owner=user,
                org=org,
                number=str(1000 + n),
                ext_type=ExtensionType.PHONE_TERMINAL,
                name=f"Extension {n}",
                now=now,
            )
            for etype in EventType:
                await events.insert_event(
                    conn,
                    PhoneCallEvent(
                        id=new_event_id(),
                        extension_id=ext.id,
                        type=etype,
                        method=1,
                        url=HOOK_URL,
                        status=1,
                        note="bench",
                        modified=now,
                    ),
                )
    made = await SourceRegistry(engine).create("bench")
    return made.source


class Ticker:
    """A progress line every couple of seconds while something counts up."""

    def __init__(self, label: str, total: int, unit: str) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(2)
            of = f"/{self.total:,}" if self.total else ""
            progress(f"{self.label}: {self.done:,}{of} {self.unit}")

    def __enter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


@dataclass
class Run:
    seconds: float
    events: int
    deliveries: int
    commits: int
    repeats: int = 1

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.seconds


@dataclass(frozen=True)
class Plan:
    """How many calls to measure: ``calls``, or as many as take about ``seconds``."""

    calls: int | None
    seconds: float
    warmup: float
    #: repeat the bare inserts until they have taken this long
    bare_seconds: float


async def _clients(
    ingest: Ingest, source: Source, bodies: Iterator[list[CallEvent]], ticker: Ticker
) -> tuple[int, int]:
    """``CONCURRENCY`` clients sending the bodies; (events accepted, deliveries made)."""
    accepted = made = 0

    async def client() -> None:
        nonlocal accepted, made
        for body in bodies:
            result = await ingest.accept(source, body)
            accepted += result.accepted
            made += result.deliveries
            ticker.done = accepted

    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return accepted, made


async def run_callhook(url: str, label: str, plan: Plan) -> tuple[Run, dict[str, Rows]]:
    """Ingest answered calls; the measurement and the rows callhook wrote."""
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        source = await seed(engine)
        ingest = Ingest(engine, policy=RetryPolicy(), clock=utcnow)

        # warm-up (the pool, statement caches), which also tells how many calls fill the time
        deadline = time.perf_counter() + plan.warmup

        def warm_bodies() -> Iterator[list[CallEvent]]:
            for first in itertools.count(0, CALLS_PER_REQUEST):
                if time.perf_counter() >= deadline:
                    return
                yield request(first, first + CALLS_PER_REQUEST, WARM)

        with Ticker(f"{label} warm-up", 0, "events accepted") as ticker:
            started = time.perf_counter()
            warmed, _ = await _clients(ingest, source, warm_bodies(), ticker)
            rate = warmed / (time.perf_counter() - started)
        n_calls = plan.calls or max(
            CALLS_PER_REQUEST * CONCURRENCY, round(rate * plan.seconds / EVENTS_PER_CALL)
        )
        progress(
            f"{label}: warm-up {rate:,.0f} events/s; measuring {n_calls:,} calls "
            f"({n_calls * EVENTS_PER_CALL:,} events)"
        )
        bodies = [request(first, n_calls) for first in range(0, n_calls, CALLS_PER_REQUEST)]

        commits_before = ingest.commits
        with Ticker(label, n_calls * EVENTS_PER_CALL, "events accepted") as ticker:
            started = time.perf_counter()
            accepted, made = await _clients(ingest, source, iter(bodies), ticker)
            seconds = time.perf_counter() - started
        commits = ingest.commits - commits_before
        if accepted != n_calls * EVENTS_PER_CALL or made != n_calls * DELIVERIES_PER_CALL:
            raise SystemExit(
                f"{label}: accepted {accepted} events making {made} deliveries; expected "
                f"{n_calls * EVENTS_PER_CALL} and {n_calls * DELIVERIES_PER_CALL}"
            )
        rows = await read_rows(engine)
    finally:
        await engine.dispose()
    return Run(seconds, accepted, made, commits), rows


async def read_rows(engine: AsyncEngine) -> dict[str, Rows]:
    """What callhook wrote: sources, calls, call_events, deliveries (without the warm-up)."""
    out: dict[str, Rows] = {}
    async with engine.connect() as conn:
        for table in (sources, calls, call_events, deliveries):
            result = await conn.execute(select(table).order_by(table.c.id))
            out[table.name] = [dict(r._mapping) for r in result]
    warm = {c["id"] for c in out["calls"] if c["call_id"].startswith(f"{WARM}-")}
    for name in ("calls", "call_events", "deliveries"):
        key = "id" if name == "calls" else "call_ref"
        out[name] = [r for r in out[name] if r[key] not in warm]
    return out


# --- the baseline ------------------------------------------------------------------------------


def batches(rows: dict[str, Rows], calls_per_batch: int) -> list[Batch]:
    """The rows in batches of whole calls, in the order callhook wrote them."""
    by_call: dict[str, dict[int, Rows]] = {"call_events": defaultdict(list)}
    by_call["deliveries"] = defaultdict(list)
    for name in by_call:
        for row in rows[name]:
            by_call[name][row["call_ref"]].append(row)
    out = []
    all_calls = rows["calls"]
    for first in range(0, len(all_calls), calls_per_batch):
        chunk = all_calls[first : first + calls_per_batch]
        out.append(
            (
                chunk,
                [r for c in chunk for r in by_call["call_events"][c["id"]]],
                [r for c in chunk for r in by_call["deliveries"][c["id"]]],
            )
        )
    return out


async def bare_once(
    url: str, label: str, rows: dict[str, Rows], work: list[Batch], *, fsync: bool
) -> float:
    """Insert the rows into a fresh database: one transaction per batch, executemany; the
    seconds it took."""
    setup = create_engine(url)
    try:
        await migrate.upgrade(setup)
        async with setup.begin() as conn:
            await conn.execute(insert(sources), rows["sources"])
    finally:
        await setup.dispose()
    engine = open_engine(url, fsync=fsync)
    try:
        async with engine.connect() as conn:  # connect (and run the pragmas) before the clock
            await conn.exec_driver_sql("SELECT 1")
        with Ticker(label, len(rows["call_events"]), "events inserted") as ticker:
            started = time.perf_counter()
            for call_rows, event_rows, delivery_rows in work:
                async with engine.begin() as conn:
                    await conn.execute(insert(calls), call_rows)
                    await conn.execute(insert(call_events), event_rows)
                    await conn.execute(insert(deliveries), delivery_rows)
                ticker.done += len(event_rows)
            return time.perf_counter() - started
    finally:
        await engine.dispose()


async def run_bare(
    engine: Engine,
    label: str,
    rows: dict[str, Rows],
    calls_per_batch: int,
    *,
    fsync: bool,
    min_seconds: float,
) -> Run:
    """The bare inserts, each time into a fresh database, repeated until they have taken
    ``min_seconds`` (at most ``MAX_REPEATS`` times): the median repeat."""
    work = batches(rows, calls_per_batch)
    times: list[float] = []
    while not times or (sum(times) < min_seconds and len(times) < MAX_REPEATS):
        times.append(await bare_once(engine.fresh(), label, rows, work, fsync=fsync))
    return Run(
        statistics.median(times),
        len(rows["call_events"]),
        len(rows["deliveries"]),
        len(work),
        repeats=len(times),
    )


# --- the benchmark -----------------------------------------------------------------------------


async def measure(engine: Engine, plan: Plan, table: Table) -> tuple[Run, Run]:
    name = engine.name
    progress(f"{name}: callhook ingest")
    ingest, rows = await run_callhook(engine.fresh(), f"{name} callhook", plan)
    per_commit = ingest.events / ingest.commits
    calls_per_batch = max(1, round(len(rows["calls"]) / ingest.commits))
    progress(
        f"{name}: callhook {ingest.events_per_s:,.0f} events/s, "
        f"{ingest.commits} commits ({per_commit:.0f} events each)"
    )
    bare = await run_bare(
        engine, f"{name} bare", rows, calls_per_batch, fsync=True, min_seconds=plan.bare_seconds
    )
    progress(f"{name}: bare inserts {bare.events_per_s:,.0f} events/s")
    loose = await run_bare(
        engine,
        f"{name} bare, no fsync",
        rows,
        calls_per_batch,
        fsync=False,
        min_seconds=plan.bare_seconds,
    )
    progress(f"{name}: bare inserts without fsync {loose.events_per_s:,.0f} events/s")
    no_fsync = "synchronous=NORMAL" if name == "sqlite" else "synchronous_commit=off"
    shipped = "synchronous=FULL" if name == "sqlite" else "synchronous_commit=on"
    events_per_batch = calls_per_batch * EVENTS_PER_CALL
    table.add(
        name,
        f"callhook ingest, {shipped} ({CONCURRENCY} x {CALLS_PER_REQUEST * 3}-event requests, "
        f"{per_commit:.0f} events/commit)",
        ingest.events,
        ingest.events_per_s,
        ingest.deliveries_per_s,
        ratio(ingest.events_per_s, ingest.events_per_s),
    )
    for run, what in (
        (bare, f"bare inserts, {shipped} ({events_per_batch} events/commit, {bare.repeats}x)"),
        (loose, f"bare inserts, {no_fsync} ({events_per_batch} events/commit, {loose.repeats}x)"),
    ):
        table.add(
            name,
            what,
            run.events,
            run.events_per_s,
            run.deliveries_per_s,
            ratio(ingest.events_per_s, run.events_per_s),
        )
    return ingest, bare


async def run_all(names: Sequence[str], plan: Plan, table: Table) -> dict[str, float]:
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="callhook-durability-") as tmp:
        for name in names:
            engine = sqlite_engine(Path(tmp)) if name == "sqlite" else Engine(name, fresh_postgres)
            try:
                ingest, bare = await measure(engine, plan, table)
            finally:
                if name == "postgresql":
                    drop_postgres()
            ratios[name] = ingest.events_per_s / bare.events_per_s
    return ratios


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench durability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run, for a smoke check")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--calls", type=int, help="answered calls to ingest (3 events each)")
    parser.add_argument(
        "--seconds", type=float, help="without --calls: how long callhook's run should last"
    )
    args = parser.parse_args(argv)
    plan = Plan(
        calls=args.calls,
        seconds=args.seconds or (3.0 if args.quick else 15.0),
        warmup=1.0 if args.quick else 2.0,
        bare_seconds=0.5 if args.quick else 3.0,
    )
    names = ["sqlite"] if args.sqlite_only else ["sqlite", "postgresql"]
    table = Table(
        "Durability cost: answered ext-to-ext calls (3 events, 6 deliveries each) through "
        "Ingest.accept in process, no worker",
        ["engine", "what", "events", "events/s", "deliveries/s written", "ratio callhook/row"],
    )
    ratios = asyncio.run(run_all(names, plan, table))
    table.note(
        "bare inserts: the calls, call_events and deliveries rows callhook wrote in the same "
        "run, read back and inserted into a fresh migrated database (same indexes, same "
        "engine settings), one writer, executemany, one transaction per batch of whole calls "
        "as large as callhook's average commit group"
    )
    table.note(
        "the no-fsync row is informative: the same bare inserts with commits not waiting "
        "for the disk"
    )
    summary = (
        "callhook's ingest runs at "
        + ", ".join(f"{r:.2f}x the bare inserts' events/s on {name}" for name, r in ratios.items())
        + " (both with the durability settings callhook ships with)."
    )
    if args.no_record:
        print()
        print(table.text())
        print(summary)
    else:
        record("durability", "5. Durability cost: ingest vs bare batched inserts", [table], summary)
