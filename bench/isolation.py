"""Benchmark 4, isolation: healthy receivers while 1% of the rules point at a black hole.

For each offered rate (default 200 events/s, which one ``callhook serve`` on SQLite kept up
with on the 2-core machine, and 500 events/s), two runs, each on a new SQLite deployment (one
``callhook serve``), with the load of benchmark 1 (answered ext->ext calls among 100
extensions with one PhoneCallEvent of each type 0..4, 6 deliveries per call): the clean run
sends every rule to nginx; in the other, the 5 rules of one extension (1% of the rules, 1% of
the deliveries) point at a black hole, a TCP listener on 127.0.0.1 that accepts every
connection and never reads or answers, as a receiver does whose host is up but whose
application hangs. callhook keeps its default timeouts (connect 3 s, total 10 s), per-host
concurrency and circuit breaker. Reported: the latency from the 202 that accepted an event to
the arrival at nginx of each request it caused (the black-holed requests never arrive and are
left out), and the p99 of the black-hole run against the clean one at the same rate.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import threading
from dataclasses import dataclass
from types import TracebackType

import httpx
from sqlalchemy import func, select

from bench import load
from bench.deploy import Deployment, extended
from bench.nginx import Nginx
from bench.report import Table, fmt, progress, ratio, record
from bench.rules import FIRING, TYPES, drive
from callhook.store.database import create_engine
from callhook.store.tables import deliveries, delivery_attempts

#: the extension whose rules go to the black hole in the second run (1 of 100: 1% of rules)
BLACKHOLED = (FIRING - 1,)


class BlackHole:
    """``with BlackHole() as hole:`` a listener on 127.0.0.1:``hole.port`` that accepts every
    connection and never reads from it nor answers; all are closed on exit."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return len(self._held)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    def __enter__(self) -> BlackHole:
        self._sock.listen(4096)
        self._sock.settimeout(0.2)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


def healthy_expected(calls: int) -> tuple[int, int]:
    """(deliveries to healthy receivers, deliveries to the black hole) of ``calls`` calls:
    each party of an answered call gets 3 (see load.call_stream for who calls whom)."""
    healthy = holed = 0
    for k in range(calls):
        for party in ((2 * k) % FIRING, (2 * k + 1) % FIRING):
            if party in BLACKHOLED:
                holed += 3
            else:
                healthy += 3
    return healthy, holed


@dataclass
class HoleCounts:
    deliveries: int = 0
    attempts: int = 0
    pending: int = 0


async def hole_counts(database_url: str, host: str) -> HoleCounts:
    """What callhook made and tried for the black-holed receiver (``host``: host:port)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            made = (
                await conn.execute(
                    select(func.count()).select_from(deliveries).where(deliveries.c.host == host)
                )
            ).scalar_one()
            pending = (
                await conn.execute(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.host == host, deliveries.c.state == "pending")
                )
            ).scalar_one()
            tried = (
                await conn.execute(
                    select(func.count())
                    .select_from(
                        delivery_attempts.join(
                            deliveries, deliveries.c.id == delivery_attempts.c.delivery_id
                        )
                    )
                    .where(deliveries.c.host == host)
                )
            ).scalar_one()
            return HoleCounts(int(made), int(tried), int(pending))
    finally:
        await engine.dispose()


@dataclass
class Run:
    label: str
    outcome: load.Outcome
    holes: HoleCounts
    connections: int


def run_one(
    receiver: Nginx,
    hole: BlackHole | None,
    *,
    rate: float,
    seconds: float,
    drain: float,
    workers: int,
) -> Run:
    label = "1% black-holed" if hole else "clean"
    with Deployment("sqlite") as deployment:
        progress(f"{label}: SQLite, callhook serve --workers {workers}")
        deployment.serve("--workers", str(workers))
        deployment.import_directory(FIRING)
        progress(f"  creating {FIRING * len(TYPES)} PhoneCallEvents through the UAPI")
        with httpx.Client(timeout=30) as client:
            for n in range(FIRING):
                base = hole.url if hole and n in BLACKHOLED else receiver.url
                for event_type in TYPES:
                    deployment.rule(client, extended(n), event_type, f"{base}/hook")
        calls = max(1, int(rate * seconds) // load.EVENTS_PER_CALL)
        healthy = healthy_expected(calls)[0] if hole else calls * load.DELIVERIES_PER_CALL
        before = hole.connections if hole else 0
        outcome, _ = drive(
            deployment,
            receiver,
            rate=rate,
            seconds=seconds,
            drain=drain,
            prefix="bh" if hole else "clean",
            expected=healthy,
        )
        counts = HoleCounts()
        if hole:
            counts = asyncio.run(hole_counts(deployment.database_url, f"127.0.0.1:{hole.port}"))
        connections = hole.connections - before if hole else 0
        progress(
            f"  healthy p50 {fmt(outcome.p50_ms)} ms, p99 {fmt(outcome.p99_ms)} ms, "
            f"delivered {outcome.delivered:,}/{outcome.expected:,}"
            + (
                f"; black hole: {counts.attempts:,} attempts, {connections:,} connections"
                if hole
                else ""
            )
        )
        return Run(label, outcome, counts, connections)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench isolation", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one 5 s pair of runs at 200/s")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument(
        "--rates", default="500", help="offered events/s, comma-separated: pairs per rate"
    )
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs per rate")
    parser.add_argument(
        "--workers", type=int, default=1, help="serve --workers N (0: the worker inside serve)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="offered seconds per run")
    parser.add_argument("--drain", type=float, default=180.0, help="longest wait for deliveries")
    args = parser.parse_args(argv)
    rates = [200.0] if args.quick else [float(x) for x in args.rates.split(",")]
    seconds = 5.0 if args.quick else args.seconds
    repeat = 1 if args.quick else args.repeat

    pairs: list[tuple[float, Run, Run]] = []
    with Nginx() as receiver, BlackHole() as hole:
        for rate in [r for r in rates for _ in range(max(1, repeat))]:
            clean = run_one(
                receiver, None, rate=rate, seconds=seconds, drain=args.drain, workers=args.workers
            )
            holed = run_one(
                receiver, hole, rate=rate, seconds=seconds, drain=args.drain, workers=args.workers
            )
            pairs.append((rate, clean, holed))
    table = Table(
        f"Isolation: {fmt(seconds)} s of answered ext->ext calls (6 POSTs each) per run, SQLite, "
        f"callhook serve --workers {args.workers}; latency of the requests to nginx",
        [
            "offered ev/s",
            "run",
            "accepted ev/s",
            "healthy delivered",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p99 vs clean",
            "black-holed deliveries",
            "their attempts",
            "connections to the hole",
            "still pending",
        ],
    )
    for rate, clean, holed in pairs:
        for run in (clean, holed):
            out = run.outcome
            hole_cells: tuple[object, ...] = (
                (run.holes.deliveries, run.holes.attempts, run.connections, run.holes.pending)
                if run is holed
                else ("", "", "", "")
            )
            table.add(
                fmt(rate),
                run.label,
                out.accepted_per_s,
                f"{out.delivered:,}/{out.expected:,}",
                out.p50_ms,
                out.p99_ms,
                out.max_ms,
                ratio(out.p99_ms, clean.outcome.p99_ms),
                *hole_cells,
            )
    table.note(
        f"black-holed: the 5 PhoneCallEvents of extension {extended(BLACKHOLED[0])} "
        f"(1 of {FIRING} extensions: 1% of the rules and of the deliveries) to a listener that "
        "accepts and never answers; callhook defaults: connect timeout 3 s, total 10 s, "
        "8 requests in flight per host, breaker after 5 consecutive failures"
    )
    table.note(
        "attempts, connections and pending are counted when the healthy deliveries have all "
        "arrived; black-holed requests never arrive and are not in the latency"
    )
    if repeat > 1:
        for rate in rates:
            ratios = [h.outcome.p99_ms / c.outcome.p99_ms for r, c, h in pairs if r == rate]
            table.note(
                f"{fmt(rate)} events/s: median p99 ratio of {len(ratios)} pairs "
                f"{statistics.median(ratios):.2f}x"
            )
    table.note("target: healthy-receiver p99 with 1% black-holed rules at most 1.5x the clean run")
    if not args.no_record:
        record("isolation", "4. Isolation", [table])
    else:
        print(table.text())
