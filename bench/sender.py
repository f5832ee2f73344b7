"""Benchmark 7, the sender alone: CPU per webhook request in the worker's HTTP path.

The same signed POSTs to the same nginx (answering 204) over 8 kept-alive connections, from one
process on uvloop: callhook's ``Sender`` (the request built and signed as the worker does, sent
through ``delivery/http1``) against a bare aiohttp client session posting the same bytes. It
reports requests/s and the process's CPU time per request, each measured after a warm-up; the
ratio is callhook's requests/s over the bare client's. It isolates what the end-to-end benchmark
mixes with the database, ingest and the load generator (decision 0014).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import resource
import time
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop

from bench.nginx import Nginx
from bench.report import Table, progress, ratio, record
from callhook.delivery.sender import Sender
from callhook.domain.payloads import (
    Timeouts,
    build_request,
    encode_params,
    new_secret,
    sign_with,
    signing_key,
)

CONCURRENCY = 8
PARAMS = {
    "CallID": "1712.42",
    "CallerIDNum": "210",
    "CalledExtension": "0003*211",
    "CallStatus": "ANSWER",
    "CallFlow": "OUT",
}

Send = Callable[[int], Awaitable[int]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(send: Send, requests: int) -> tuple[float, float]:
    """requests/s and CPU us per request over ``requests`` requests on CONCURRENCY lanes."""
    left = requests

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await send(left)
            if status != 204:
                raise SystemExit(f"the receiver answered {status}")

    started, cpu = time.perf_counter(), _cpu()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    elapsed, used = time.perf_counter() - started, _cpu() - cpu
    return requests / elapsed, used / requests * 1e6


async def _callhook(url: str, requests: int) -> tuple[float, float]:
    key = signing_key(new_secret())
    payload = encode_params(PARAMS)
    timeouts = Timeouts()
    async with Sender((ipaddress.ip_network("127.0.0.0/8"),), "callhook/bench") as sender:

        async def send(n: int) -> int:
            stamp = int(time.time())
            request = build_request(
                1,
                url,
                payload,
                webhook_id=f"msg_{n}",
                timestamp=stamp,
                signatures=sign_with([key], f"msg_{n}", stamp, payload),
                seq=n,
                user_agent="callhook/bench",
            )
            result = await sender.send(request, timeouts)
            return result.status or 0

        await _measure(send, requests // 10)
        return await _measure(send, requests)


async def _bare(url: str, requests: int) -> tuple[float, float]:
    payload = encode_params(PARAMS).encode()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1",
        "webhook-signature": "v1," + "A" * 44,
        "X-Callhook-Seq": "1",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(_: int) -> int:
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                return response.status

        await _measure(send, requests // 10)
        return await _measure(send, requests)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench sender", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run, for a smoke check")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--requests", type=int, help="requests per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, interleaved")
    args = parser.parse_args(argv)
    requests = args.requests or (2_000 if args.quick else 20_000)
    table = Table(
        f"Sender alone: signed POSTs to nginx, {CONCURRENCY} kept-alive connections, one "
        "process on uvloop",
        ["client", "round", "requests", "requests/s", "CPU us/request", "vs bare"],
    )
    ratios: list[float] = []
    with Nginx() as nginx:
        url = f"{nginx.url}/hook"
        for round_ in range(1, args.rounds + 1):
            progress(f"round {round_}: bare aiohttp client, {requests:,} requests")
            bare_rate, bare_cpu = uvloop.run(_bare(url, requests))
            progress(f"round {round_}: callhook's Sender, {requests:,} requests")
            rate, cpu = uvloop.run(_callhook(url, requests))
            ratios.append(rate / bare_rate)
            table.add("bare aiohttp client", round_, requests, round(bare_rate), bare_cpu, "1.00x")
            table.add("callhook Sender", round_, requests, round(rate), cpu, ratio(rate, bare_rate))
    table.note(
        "callhook Sender: each request built and signed as the worker does (build_request, "
        "sign_with), sent through Sender.send; the bare client posts fixed bytes"
    )
    summary = (
        f"callhook's sender sends {min(ratios):.2f}-{max(ratios):.2f}x the bare aiohttp "
        "client's requests/s from one process."
    )
    if args.no_record:
        print()
        print(table.text())
        print(summary)
        return
    record("sender", "7. Sender alone: CPU per request", [table], summary)
