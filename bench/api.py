"""Benchmark 3, API: requests/s and latency of List and Create of PhoneCallEvents over HTTP with
keep-alive, against a bare Starlette endpoint on the same server settings (bench/bare_app.py).

``python -m bench api [--quick] [--sqlite-only] [--no-record] [--profile DIR]``

The load generator is wrk (C, one thread, keep-alive connections), so that on a small machine
the CPU goes to the server measured. Every endpoint gets the same wrk settings; a short warm-up
run comes before each measured one. The ``done`` hook of a small Lua script prints wrk's exact
latency percentiles and error counts as one JSON line.

- List: ``GET /uapi/extensions/@me/0003*1000/phoneCallEvents`` on an extension with 20 rules
  (one page, the default count), against ``GET /list`` of the bare app answering the same body.
- Create: ``POST /uapi/extensions/@me/0003*1001/phoneCallEvents`` with a JSON rule, against
  ``POST /create`` of the bare app, which parses the JSON body and answers 201 with the same
  body as callhook's answer. Every POST creates a rule; they pile up on 0003*1001.

Target: List and Create at least 0.5x the bare endpoint's requests/s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.deploy import Deployment, extended, stop_process
from bench.report import Table, progress, ratio, record

TARGET = 0.5
LIST_RULES = 20
THREADS = 1
CONNECTIONS = 32
RULE = {"type": 0, "method": 1, "url": "http://127.0.0.1:9/hook/created", "note": "bench"}

#: prints one line "WRK {json}" at the end; latencies are in microseconds
DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "timeout": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d, '
    .. '"max": %d, "mean": %f}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class Load:
    """wrk's result for one endpoint."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else math.nan


def lua(method: str, headers: dict[str, str], body: str | None) -> str:
    def quote(text: str) -> str:
        return "[==[" + text + "]==]"

    lines = [f"wrk.method = {quote(method)}"]
    lines += [f"wrk.headers[ {quote(k)} ] = {quote(v)}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {quote(body)}")
    return "\n".join(lines) + "\n" + DONE


def wrk_binary() -> str:
    found = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)
    if found is None:
        raise SystemExit("wrk is not installed: run `make bench` (it installs Debian's wrk).")
    return found


def run_wrk(
    url: str,
    method: str,
    headers: dict[str, str],
    body: str | None,
    seconds: float,
    connections: int = CONNECTIONS,
) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua(method, headers, body))
    try:
        done = subprocess.run(
            [
                wrk_binary(),
                f"--threads={THREADS}",
                f"--connections={connections}",
                f"--duration={max(1, round(seconds))}s",
                "--timeout=10s",
                "--latency",
                f"--script={script.name}",
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(script.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK ")), None)
    if done.returncode or line is None:
        raise SystemExit(f"wrk failed on {url}:\n{done.stdout}\n{done.stderr}")
    found = json.loads(line[4:])
    errors = sum(found[k] for k in ("non2xx", "connect", "read", "write", "timeout"))
    return Load(
        requests=found["requests"],
        seconds=found["duration_us"] / 1e6,
        errors=errors,
        p50_ms=found["p50"] / 1000,
        p90_ms=found["p90"] / 1000,
        p99_ms=found["p99"] / 1000,
    )


def measure(
    name: str,
    url: str,
    method: str,
    headers: dict[str, str],
    body: str | None,
    seconds: float,
    profile: tuple[Path, int] | None = None,
) -> Load:
    """A warm-up run, then the measured one (with py-spy recording the server, if asked)."""
    run_wrk(url, method, headers, body, min(2.0, seconds))
    spy = None
    if profile is not None:
        out, pid = profile
        out.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                "250",
                "--nonblocking",
                "--format",
                "speedscope",
                "--output",
                str(out / f"{name}.speedscope.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    load = run_wrk(url, method, headers, body, seconds)
    if spy is not None:
        spy.wait()
    progress(
        f"  {name}: {load.per_s:,.0f} requests/s, p50 {load.p50_ms:.1f} ms, "
        f"p99 {load.p99_ms:.1f} ms, {load.errors} errors"
    )
    if load.errors:
        raise SystemExit(f"{name}: {load.errors} requests failed (non-2xx or socket errors)")
    return load


class BareApp:
    """``python -m bench.bare_app`` as a subprocess, answering the given bodies."""

    def __init__(self, list_body: str, create_body: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="callhook-bench-bare-"))
        (self.tmp / "list.json").write_text(list_body, "utf-8")
        (self.tmp / "create.json").write_text(create_body, "utf-8")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bare_app",
                "--port",
                "0",
                "--list-body",
                str(self.tmp / "list.json"),
                "--create-body",
                str(self.tmp / "create.json"),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first.startswith("{"):
            self.stop()
            raise SystemExit("the bare Starlette app did not start")
        self.url: str = json.loads(first)["url"]

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass
class EngineResult:
    engine: str
    list_load: Load
    create_load: Load
    rules_after: int
    list_bytes: int
    create_bytes: int


def run_engine(
    engine: str, seconds: float, profile: Path | None, bodies: dict[str, str]
) -> EngineResult:
    progress(f"{engine}: starting callhook serve")
    with Deployment(engine) as d:
        server = d.serve()
        d.import_directory(2)
        listed, created = extended(0), extended(1)
        headers = {**d.headers(), "Connection": "keep-alive"}
        with httpx.Client(timeout=30) as client:
            for n in range(LIST_RULES):
                d.rule(client, listed, n % 5, f"http://127.0.0.1:9/hook/{n}")
            base = f"{d.url}/uapi/extensions/@me"
            answer = client.get(f"{base}/{listed}/phoneCallEvents", headers=headers)
            answer.raise_for_status()
            bodies.setdefault("list", answer.text)
            sample = client.post(f"{base}/{created}/phoneCallEvents", json=RULE, headers=headers)
            if sample.status_code != 201:
                raise SystemExit(f"Create failed: {sample.status_code} {sample.text}")
            bodies.setdefault("create", sample.text)
        at = (profile / engine, server.pid) if profile else None
        list_load = measure(
            f"{engine} List",
            f"{base}/{listed}/phoneCallEvents",
            "GET",
            headers,
            None,
            seconds,
            at and (at[0] / "list", at[1]),
        )
        post_headers = {**headers, "Content-Type": "application/json"}
        create_load = measure(
            f"{engine} Create",
            f"{base}/{created}/phoneCallEvents",
            "POST",
            post_headers,
            json.dumps(RULE),
            seconds,
            at and (at[0] / "create", at[1]),
        )
        with httpx.Client(timeout=60) as client:
            total = client.get(
                f"{base}/{created}/phoneCallEvents", params={"count": 1}, headers=headers
            ).json()["totalResults"]
        return EngineResult(
            engine,
            list_load,
            create_load,
            int(total),
            len(answer.content),
            len(sample.content),
        )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench api")
    parser.add_argument("--quick", action="store_true", help="3 s runs, a smoke check")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="record callhook with py-spy into DIR"
    )
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else 10.0
    engines = ["sqlite"] if args.sqlite_only else ["sqlite", "postgresql"]
    wrk_binary()

    bodies: dict[str, str] = {}
    results = [run_engine(e, seconds, args.profile, bodies) for e in engines[:1]]
    progress("bare Starlette app (same uvicorn settings), answering callhook's bodies")
    bare = BareApp(bodies["list"], bodies["create"])
    try:
        bare_list = measure("bare GET", f"{bare.url}/list", "GET", {}, None, seconds)
        bare_create = measure(
            "bare POST",
            f"{bare.url}/create",
            "POST",
            {"Content-Type": "application/json"},
            json.dumps(RULE),
            seconds,
        )
    finally:
        bare.stop()
    results += [run_engine(e, seconds, args.profile, bodies) for e in engines[1:]]

    table = Table(
        f"API over HTTP keep-alive: wrk, {THREADS} thread, {CONNECTIONS} connections, "
        f"{seconds:.0f} s per endpoint",
        ["endpoint", "engine", "requests/s", "p50 ms", "p90 ms", "p99 ms", "ratio to bare"],
    )
    table.add("bare GET (fixed body)", "-", bare_list.per_s, bare_list.p50_ms,
              bare_list.p90_ms, bare_list.p99_ms, "1.00x")  # fmt: skip
    table.add("bare POST (parse JSON, 201)", "-", bare_create.per_s, bare_create.p50_ms,
              bare_create.p90_ms, bare_create.p99_ms, "1.00x")  # fmt: skip
    missed: list[str] = []
    for r in results:
        for name, load, bare_load in (
            ("List", r.list_load, bare_list),
            ("Create", r.create_load, bare_create),
        ):
            table.add(name, r.engine, load.per_s, load.p50_ms, load.p90_ms, load.p99_ms,
                      ratio(load.per_s, bare_load.per_s))  # fmt: skip
            if load.per_s < TARGET * bare_load.per_s:
                missed.append(f"{name} on {r.engine} ({ratio(load.per_s, bare_load.per_s)})")
    first = results[0]
    table.note(
        f"List: GET .../@me/{extended(0)}/phoneCallEvents, {LIST_RULES} rules, one page "
        f"({first.list_bytes:,} bytes); the bare GET answers the same body."
    )
    table.note(
        f"Create: POST .../@me/{extended(1)}/phoneCallEvents ({first.create_bytes:,}-byte answer); "
        "each request creates a rule: "
        + ", ".join(f"{r.rules_after:,} rules on {r.engine} at the end" for r in results)
        + ". The bare POST parses the same JSON body and answers callhook's body with 201."
    )
    table.note(
        "Same server settings for both: uvicorn (uvloop, httptools), callhook's JSON logging "
        "at WARNING with the access log on, rate limit off, one process."
    )
    verdict = f"Target (at least {TARGET}x the bare endpoint): " + (
        "met by List and Create." if not missed else f"missed by {', '.join(missed)}."
    )
    progress(verdict)
    if args.no_record:
        print()
        print(table.text())
        print(verdict)
    else:
        record("api", "3. API: List and Create vs a bare Starlette endpoint", [table], verdict)
