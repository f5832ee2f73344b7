"""Benchmark 1, end to end: call events in through the ingest API, POSTs out to nginx.

For each database setup (SQLite in one ``serve`` process; PostgreSQL with ``serve
--no-worker`` and 1 or 2 ``callhook worker`` processes) and each offered load (events/s, or
``max``: as fast as ingest accepts), it reports accepted events/s, delivered requests/s and
the latency from the 202 that accepted an event to the arrival at the receiver of each request
it caused. The baseline, measured in the same run: a bare aiohttp client sending the same
requests to the same nginx at the same concurrency, with no persistence at all, once before
callhook's runs and once after them (the ratios use the mean of the two).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import aiohttp

from bench import load
from bench.deploy import Deployment, extended
from bench.nginx import Nginx
from bench.report import Table, fmt, progress, ratio, record
from callhook.domain.payloads import build_request, encode_params, new_secret, sign

EXTENSIONS = 100
TYPES = (0, 1, 2, 3, 4)
HOST_CONCURRENCY = 8  # callhook's default CALLHOOK_HOST_CONCURRENCY


@dataclass(frozen=True)
class Setup:
    name: str
    engine: str
    #: serve's own arguments
    serve: tuple[str, ...]
    #: `callhook worker` processes started beside it
    workers: int
    label: str


SETUPS = {
    "sqlite": Setup("sqlite", "sqlite", ("--workers", "0"), 0, "sqlite, serve --workers 0"),
    "sqlite-w1": Setup("sqlite-w1", "sqlite", ("--workers", "1"), 0, "sqlite, serve --workers 1"),
    "sqlite-w2": Setup("sqlite-w2", "sqlite", ("--workers", "2"), 0, "sqlite, serve --workers 2"),
    "pg1": Setup("pg1", "postgresql", ("--no-worker",), 1, "postgresql, 1 worker"),
    "pg2": Setup("pg2", "postgresql", ("--no-worker",), 2, "postgresql, 2 workers"),
}


async def bare_client(url: str, requests: int, concurrency: int) -> float:
    """Requests/s of a bare aiohttp client sending callhook-shaped signed form POSTs."""
    secret = new_secret()
    stamp = int(time.time())
    bodies = []
    for n in range(min(requests, 1000)):
        payload = encode_params(
            {
                "CallID": f"bare-{n}",
                "CallerExtension": extended(0),
                "CalledExtension": extended(1),
                "CallStatus": "ANSWER",
                "CallFlow": "out",
            }
        )
        wid = f"msg_bare{n:023d}"
        bodies.append(
            build_request(
                1,
                f"{url}/hook",
                payload,
                webhook_id=wid,
                timestamp=stamp,
                signatures=sign(secret, wid, stamp, payload),
                seq=1,
                user_agent="callhook/0.1.0",
            )
        )
    queue = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def lane() -> None:
            for n in queue:
                req = bodies[n % len(bodies)]
                async with session.request(
                    req.method, req.url, data=req.body, headers=list(req.headers)
                ) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


def run_setup(
    setup: Setup, receiver: Nginx, loads: list[float | None], seconds: float, drain: float
) -> list[tuple[float | None, load.Outcome]]:
    results = []
    with Deployment(setup.engine) as deployment:
        deployment.serve(*setup.serve)
        for n in range(setup.workers):
            deployment.worker(f"bench-{n}")
        deployment.import_directory(EXTENSIONS)
        deployment.rules(EXTENSIONS, TYPES, f"{receiver.url}/hook")
        for index, rate in enumerate(loads):
            receiver.reopen()
            events_n = int((rate or 1500) * seconds)
            calls = max(1, events_n // load.EVENTS_PER_CALL)
            # a call answers 0.5 s after it starts and ends 0.5 s later; as fast as possible, its
            # events are never in requests that are in flight together (which may commit in
            # any order)
            stagger = max(1, int(rate / load.EVENTS_PER_CALL * 0.5)) if rate else 500
            events = load.call_stream(calls, EXTENSIONS, stagger, f"r{index}")
            expected = calls * load.DELIVERIES_PER_CALL
            progress(
                f"{setup.label}: offering {len(events):,} events "
                f"at {fmt(rate) + '/s' if rate else 'the maximum rate'}"
            )
            offered = asyncio.run(
                load.offer(deployment.url, deployment.source_token, events, rate=rate)
            )
            progress(f"  accepted {offered.events_per_s:,.0f} events/s; waiting for deliveries")
            arrivals = load.wait_for_arrivals(receiver, expected, drain, deployment.database_url)
            keys = asyncio.run(load.delivery_keys(deployment.database_url))
            results.append((rate, load.measure(offered, arrivals, keys, expected)))
    return results


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench e2e", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small runs, SQLite only")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--setups", default=",".join(SETUPS), help=",".join(SETUPS))
    parser.add_argument("--loads", default="100,1000,max", help="events/s, or max")
    parser.add_argument("--seconds", type=float, default=10.0, help="offered seconds per load")
    parser.add_argument("--drain", type=float, default=180.0, help="longest wait for deliveries")
    args = parser.parse_args(argv)
    setups = ["sqlite"] if args.quick else args.setups.split(",")
    loads: list[float | None] = [None if x == "max" else float(x) for x in args.loads.split(",")]
    seconds = 2.0 if args.quick else args.seconds
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        raise SystemExit(f"unknown setup {', '.join(unknown)}; choose from {', '.join(SETUPS)}")

    with Nginx() as receiver:

        def baseline(when: str) -> float:
            progress(f"baseline ({when}): bare aiohttp client, {HOST_CONCURRENCY} connections")
            bare = asyncio.run(
                bare_client(receiver.url, 4000 if args.quick else 30000, HOST_CONCURRENCY)
            )
            progress(f"  {bare:,.0f} requests/s")
            return bare

        before = baseline("before")
        runs = [
            (SETUPS[name], rate, out)
            for name in setups
            for rate, out in run_setup(SETUPS[name], receiver, loads, seconds, args.drain)
        ]
        after = baseline("after")
    # the machine's speed drifts during a run of several minutes (the bare client's own
    # result moved by 10-20 % between runs minutes apart): the baseline is the mean of one
    # measurement before callhook's runs and one after
    bare = (before + after) / 2
    table = Table(
        "End to end: answered ext->ext calls (3 events, 6 POSTs each) to nginx on 127.0.0.1",
        [
            "setup",
            "offered ev/s",
            "accepted ev/s",
            "delivered",
            "delivered req/s",
            "vs bare",
            "p50 ms",
            "p99 ms",
            "max ms",
            "dups",
        ],
    )
    table.add("bare aiohttp client", "", "", "", bare, "1.00x", "", "", "", "")
    for setup, rate, out in runs:
        table.add(
            setup.label,
            fmt(rate) if rate else "max",
            out.accepted_per_s,
            f"{out.delivered:,}/{out.expected:,}",
            out.delivered_per_s,
            ratio(out.delivered_per_s, bare),
            out.p50_ms,
            out.p99_ms,
            out.max_ms,
            out.duplicates,
        )
    table.note(
        f"bare aiohttp client: the mean of {before:,.0f} requests/s measured before callhook's "
        f"runs and {after:,.0f} after them."
    )
    table.note(
        f"{EXTENSIONS} extensions with {len(TYPES)} PhoneCallEvents each, all to one URL "
        f"(so a call's 6 requests go in order); callhook's default "
        f"CALLHOOK_HOST_CONCURRENCY={HOST_CONCURRENCY}, the bare client uses as many connections."
    )
    table.note(
        "delivered req/s: requests received / time from the first event offered to the last "
        "arrival; at a fixed load it follows the offered rate (2 requests per event)."
    )
    if not args.no_record:
        record("e2e", "1. End to end", [table])
    else:
        print(table.text())
