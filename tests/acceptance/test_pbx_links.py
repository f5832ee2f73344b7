"""The PBX links end to end, with real processes: `callhook source ami` and `callhook serve
--source esl://...` follow replay servers that speak the real AMI and ESL framing, and the
webhooks reach a real receiver on 127.0.0.1.

Asterisk and FreeSWITCH cannot be installed here, so the PBX is a replay server playing
scripted call sequences built from the documented event shapes (tests/replay/, tests/data/):
not captures of a real PBX. Each run plays several call shapes and a dropped connection; the
requests that must arrive are worked out from the same scripts by the pure mappers and the
trigger mapping (pinned event by event in tests/unit/test_ami_calls.py and test_esl_calls.py),
and spot checks below say in plain words what some of them must be.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from callhook.domain.calls import CallEvent, Fired, fire_all
from callhook.sources.ami.calls import AmiCalls
from callhook.sources.esl.calls import EslCalls
from callhook.sources.link import Mapper
from callhook.sources.tracking import CallTracker, Numbering
from tests.acceptance.cli_process import CALLHOOK
from tests.acceptance.deployment import Deployment
from tests.receiver import Received, ThreadedReceiver
from tests.replay import ami_server, esl_server

pytestmark = pytest.mark.slow

WAIT = 90.0  # seconds: a limit on waiting, not a claim about speed
TYPES = (0, 1, 2, 3, 4)


@contextmanager
def replaying(server: AbstractAsyncContextManager[Any]) -> Iterator[Any]:
    """Run a replay server (an async context manager) on an event loop of its own."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        async with server:
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the replay server did not start"
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


Sessions = Sequence[tuple[Sequence[Mapping[str, str]], Sequence[Mapping[str, str]]]]


def made_by(mapper: Mapper, sessions: Sessions) -> list[CallEvent]:
    """The call events the scripts make: (live channels, events) of each connection, through
    the mapper as the runner drives it."""
    now = datetime.now(UTC)
    made: list[CallEvent] = []
    for channels, events in sessions:
        made += mapper.reconcile(channels, now)
        for message in events:
            made += mapper.feed(message, now)
    return made


def fired_by(events: list[CallEvent]) -> list[Fired]:
    """What they fire, call by call (the trigger mapping)."""
    return [f for _call, f in fire_all(events)]


def directory(extensions: set[str]) -> str:
    lines = [
        "service_providers:",
        "  - name: Acme Telecom",
        "    organizations:",
        "      - name: Example Corp",
        "        code: 3",
        "        users:",
        "          - name: Operator",
        "            extensions:",
    ]
    lines += [
        f'              - {{number: "{e.split("*")[1]}", type: phone-terminal}}'
        for e in sorted(extensions)
    ]
    return "\n".join(lines) + "\n"


def prepare(deployment: Deployment, receiver: ThreadedReceiver, fired: list[Fired]) -> None:
    """The directory with every extension the calls touch, and a rule of each type on each."""
    extensions = {f.extension for f in fired}
    path = deployment.tmp / "directory.yaml"
    path.write_text(directory(extensions), "utf-8")
    deployment.cli("admin", "import", str(path))
    for ext in sorted(extensions):
        for etype in TYPES:
            deployment.rule(ext, etype, f"{receiver.url}/{ext.replace('*', '-')}/{etype}")


def arrived(requests: list[Received]) -> Counter[tuple[str, int, tuple[tuple[str, str], ...]]]:
    got: Counter[tuple[str, int, tuple[tuple[str, str], ...]]] = Counter()
    for r in requests:
        _, ext, etype = r.path.split("/")
        got[(ext.replace("-", "*"), int(etype), tuple(sorted(r.params.items())))] += 1
    return got


def wanted(fired: list[Fired]) -> Counter[tuple[str, int, tuple[tuple[str, str], ...]]]:
    return Counter((f.extension, int(f.trigger), tuple(sorted(f.params.items()))) for f in fired)


def in_order_per_url_and_call(requests: list[Received]) -> bool:
    last: dict[tuple[str, str], int] = {}
    for r in requests:
        key = (r.path, r.params["CallID"])
        seq = int(r.headers["x-callhook-seq"])
        if seq <= last.get(key, 0):
            return False
        last[key] = seq
    return True


def link_status(deployment: Deployment, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        links = json.loads(deployment.cli("source", "status", "--json"))
        if links and done(links[0]):
            found: dict[str, Any] = links[0]
            return found
        assert time.monotonic() < deadline, links
        time.sleep(0.5)


#: every scripted call shape, played one after the other on one connection
AMI_SHAPES = sorted(p.stem for p in ami_server.DATA.glob("*.ami") if p.stem != "reconnect")


def test_callhook_source_ami_follows_asterisk_across_a_reconnect(
    deployment: Deployment, receiver: ThreadedReceiver
) -> None:
    script = ami_server.merge([ami_server.load_script(name) for name in (*AMI_SHAPES, "reconnect")])
    made = made_by(
        AmiCalls(Numbering(3), CallTracker()), [(s.channels, s.events) for s in script.sessions]
    )
    fired = fired_by(made)
    assert len(fired) > 30
    deployment.serve("--workers", "0")  # delivering inside serve (the ESL test: the default)
    prepare(deployment, receiver, fired)

    server = ami_server.AmiReplayServer(script, username="callhook", secret="s3cret")
    with replaying(server):
        where = ["--host", "127.0.0.1", "--port", str(server.port), "--username", "callhook"]
        link = subprocess.Popen(
            [*CALLHOOK, "source", "ami", *where, "--org", "3", "--json"],
            env={**deployment.env, "CALLHOOK_AMI_SECRET": "s3cret"},
            cwd=deployment.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            got = receiver.wait_until(lambda r: len(r) >= len(fired), WAIT)
            time.sleep(1)  # nothing more may come
            got = receiver.requests
            status = link_status(deployment, lambda s: s["reconnects"] == 1 and s["connected"])
        finally:
            link.send_signal(signal.SIGTERM)
            out, err = link.communicate(timeout=30)
    assert link.returncode == 0, err
    assert "Traceback" not in err

    assert arrived(got) == wanted(fired)
    assert in_order_per_url_and_call(got)
    # spot checks, in words: the busy call hung up BUSY for both ends; the queue's agents
    # that did not answer got CANCEL; the blind transfer's target got a call of its own
    hangups = [r for r in got if r.path.endswith("/2")]
    assert any(r.params["CallStatus"] == "BUSY" for r in hangups)
    assert any(r.params["CallStatus"] == "CANCEL" for r in hangups)
    assert any("/t1" in r.params["CallID"] for r in got)

    # the calls that ended while the link was down: hangups noted as reconstructed
    gone = {e.call_id for e in made if e.reconstructed}
    assert gone
    notes = [d for d in deployment.deliveries() if d["note"]]
    assert {d["call_id"] for d in notes} == gone
    assert all(d["note"].startswith("reconstructed: ") and d["type"] == "2" for d in notes)

    assert status["kind"] == "ami"
    assert status["target"] == f"127.0.0.1:{server.port}"
    assert status["events_seen"] > 0
    assert status["last_error"]  # the drop
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["connected"] for line in lines] == [True, False, True]
    stopped = link_status(deployment, lambda s: not s["connected"])
    assert stopped["state"] == "disconnected"
    assert stopped["last_error"] == "stopped"


#: every scripted call shape; the internal call (first) is cut off by the drop
ESL_SHAPES = [
    "internal-answered",
    *sorted(p.stem for p in esl_server.SCRIPTS.glob("*.esl") if p.stem != "internal-answered"),
]


def test_serve_follows_freeswitch_over_esl_across_a_reconnect(
    deployment: Deployment, receiver: ThreadedReceiver
) -> None:
    shapes = [esl_server.load_script(name) for name in ESL_SHAPES]
    # the internal call is cut off by the drop: it ends while the link is down
    internal, *others = shapes
    cut = next(
        i for i, e in enumerate(internal.events) if e["Event-Name"] == "CHANNEL_HANGUP_COMPLETE"
    )
    first = [e for s in others for e in s.events] + internal.events[:cut]
    plans = [
        esl_server.Plan(events=first, drop_after=len(first)),
        esl_server.Plan(events=[], channels=[]),
    ]
    made = made_by(EslCalls(Numbering(3), CallTracker()), [([], first), ([], [])])
    fired = fired_by(made)
    assert len(fired) > 20
    server = deployment.serve()
    prepare(deployment, receiver, fired)
    server.stop()

    esl = esl_server.EslReplayServer("ClueCon", plans)
    with replaying(esl):
        deployment.serve("--source", f"esl://:ClueCon@127.0.0.1:{esl.port}?org=3&name=fs")
        got = receiver.wait_until(lambda r: len(r) >= len(fired), WAIT)
        time.sleep(1)
        got = receiver.requests
        status = link_status(deployment, lambda s: s["reconnects"] >= 1 and s["connected"])

    assert arrived(got) == wanted(fired)
    assert in_order_per_url_and_call(got)
    hangups = [r for r in got if r.path.endswith("/2")]
    assert any(r.params["CallStatus"] == "BUSY" for r in hangups)
    assert any(r.params.get("CalledDID") for r in got)
    notes = [d for d in deployment.deliveries() if d["note"]]
    assert {d["call_id"] for d in notes} == {e.call_id for e in made if e.reconstructed}
    assert {d["call_id"] for d in notes} == {internal.uuid("a")}
    assert (status["name"], status["kind"]) == ("fs", "esl")
    sources = deployment.api("GET", "/callhook/v1/sources").json()["sources"]
    (fs,) = [s for s in sources if s["name"] == "fs"]
    assert fs["events"] > 0
    assert fs["link"]["state"] == "connected"
