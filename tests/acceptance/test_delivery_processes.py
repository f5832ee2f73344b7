"""Nothing accepted is lost, shown with real processes and a real receiver on 127.0.0.1:
kill -9 in the middle of ingesting, a receiver that is down for a while, a black-holed
destination next to a healthy one, and three workers sharing one PostgreSQL database."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.acceptance.deployment import Deployment, call_events
from tests.databases import PostgresTemplates
from tests.receiver import Received, ThreadedReceiver

pytestmark = pytest.mark.slow

CALLER, CALLEE = "0003*201", "0003*210"
WAIT = 180.0  # seconds: a limit on waiting, not a claim about speed


def distinct_ids(requests: list[Received]) -> set[str]:
    return {r.webhook_id for r in requests}


def test_kill_9_while_ingesting_loses_nothing(
    deployment: Deployment, receiver: ThreadedReceiver
) -> None:
    server = deployment.serve()
    deployment.import_directory()
    deployment.rule(CALLER, 1, f"{receiver.url}/dial-out")
    deployment.rule(CALLER, 2, f"{receiver.url}/hangup")
    calls = [call_events(f"call-{i}", CALLER, CALLEE, answered=False) for i in range(1000)]
    # 100 batches of 10 calls: 2,000 events
    batches = [list(itertools.chain(*calls[i : i + 10])) for i in range(0, len(calls), 10)]
    acknowledged: set[int] = set()
    killed = threading.Event()

    def push(index: int) -> None:
        if killed.is_set():
            return
        try:
            deployment.ingest(batches[index])
            acknowledged.add(index)
        except (httpx.HTTPError, AssertionError):
            pass  # the server died under this request: the PBX would send it again
        if len(acknowledged) >= len(batches) // 2 and not killed.is_set():
            killed.set()
            server.proc.send_signal(signal.SIGKILL)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(push, range(len(batches))))
    server.kill()
    assert killed.is_set()
    assert 0 < len(acknowledged) < len(batches)

    # what was acknowledged before the kill is already on disk: its deliveries reach the
    # receiver after the restart with nothing re-sent by the PBX
    deployment.serve()
    expected_acked = 2 * 10 * len(acknowledged)
    receiver.wait_until(lambda got: len(distinct_ids(got)) >= expected_acked, WAIT)
    # then the PBX re-sends everything it is unsure of (duplicates are ignored by event id)
    with httpx.Client() as client:
        for index in range(len(batches)):
            deployment.ingest(batches[index], client)
    got = receiver.wait_until(lambda got: len(distinct_ids(got)) >= 2000, WAIT)
    pairs = {(r.params["CallID"], r.path) for r in got}
    assert len(pairs) == 2000, "every call has its Dial-Out and its Hangup"
    assert len(distinct_ids(got)) == 2000, "one delivery per (call, rule), none made twice"
    # a request in flight at the kill may come twice, always with the same webhook-id
    by_id: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in got:
        by_id[r.webhook_id].add((r.params["CallID"], r.path))
    assert all(len(v) == 1 for v in by_id.values())


def test_a_receiver_that_comes_back_gets_everything_with_attempts_spaced_by_the_policy(
    tmp_path: Path,
) -> None:
    # the breaker would space the attempts further apart (it only adds delay): keep it out
    deployment = Deployment(tmp_path, CALLHOOK_BREAKER_FAILURES="1000")
    try:
        _down_then_up(deployment)
    finally:
        deployment.close()


def _down_then_up(deployment: Deployment) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    deployment.serve()
    deployment.import_directory()
    deployment.rule(CALLER, 2, f"http://127.0.0.1:{port}/hangup")
    for i in range(5):
        deployment.ingest(call_events(f"down-{i}", CALLER, CALLEE, answered=True))

    def attempts_made() -> int:
        return min(d["attempts"] for d in deployment.deliveries())

    deadline = datetime.now().timestamp() + WAIT
    while attempts_made() < 4:
        assert datetime.now().timestamp() < deadline
        threading.Event().wait(0.2)
    receiver = ThreadedReceiver(port=port)
    try:
        got = receiver.wait_until(lambda got: len(distinct_ids(got)) >= 5, WAIT)
        assert {r.params["CallID"] for r in got} == {f"down-{i}" for i in range(5)}
    finally:
        receiver.close()
    for delivery in deployment.deliveries():
        shown = deployment.api("GET", f"/callhook/v1/deliveries/{delivery['id']}").json()
        log = shown["attempt_log"]
        assert log[-1]["status"] == 204
        assert all(a["error_class"] == "connect_error" for a in log[:-1])
        times = [datetime.fromisoformat(a["at"]) for a in log]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        # retry n waits between half and all of min(0.2 s * 2**(n-1), 2 s), after the attempt
        for n, gap in enumerate(gaps, start=1):
            assert gap >= 0.5 * min(0.2 * 2 ** (n - 1), 2.0) - 0.01, (n, gaps)


def test_a_black_holed_destination_does_not_delay_a_healthy_one(
    deployment: Deployment, receiver: ThreadedReceiver
) -> None:
    # a listening socket that is never accepted from: connections hang until the timeout
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1000)
    try:
        deployment.serve()
        deployment.import_directory()
        hole_url = f"http://127.0.0.1:{hole.getsockname()[1]}/never"
        deployment.rule("0003*211", 2, hole_url)
        deployment.rule(CALLER, 2, f"{receiver.url}/healthy")
        events = []
        for i in range(40):
            events += call_events(f"hole-{i}", "0003*211", CALLEE, answered=False)
            events += call_events(f"ok-{i}", CALLER, CALLEE, answered=False)
        deployment.ingest(events)
        receiver.wait_until(lambda got: len(distinct_ids(got)) >= 40, WAIT)
        # by the time the healthy receiver has all of its requests, not one request to the
        # black hole has even timed out: the healthy ones never waited behind them
        holed = [d for d in deployment.deliveries() if d["call_id"].startswith("hole-")]
        stuck = [d for d in holed if d["state"] == "pending"]
        assert len(stuck) == 40
        assert all(d["attempts"] == 0 for d in stuck)
    finally:
        hole.close()


@pytest.fixture
def postgres_url(postgres_templates: PostgresTemplates | None) -> Iterator[str]:
    if postgres_templates is None:
        pytest.skip("PostgreSQL tests need CALLHOOK_TEST_POSTGRES_URL")
    url = postgres_templates.empty()
    yield url
    postgres_templates.drop(url)


@pytest.fixture
def slow_receiver() -> Iterator[ThreadedReceiver]:
    """Answers each request after 10 ms: 900 take a worker with 2 in flight 4.5 s at least."""
    r = ThreadedReceiver(delay=0.01)
    yield r
    r.close()


def test_three_workers_on_postgresql_send_each_delivery_once_and_in_order_per_url_and_call(
    tmp_path: Path, postgres_url: str, slow_receiver: ThreadedReceiver
) -> None:
    # a worker keeps the work it can hold (it records a call's delivery and claims the next
    # one in the same transaction): with 2 requests in flight each (holding 16) to a receiver
    # that takes 10 ms an answer, no worker can hold or quickly send the 900 deliveries, so the
    # three must share them, as they do under load (a fast receiver let two workers send all)
    receiver = slow_receiver
    deployment = Deployment(tmp_path, postgres_url, CALLHOOK_WORKER_CONCURRENCY="2")
    try:
        deployment.serve("--no-worker")
        deployment.import_directory()
        for etype in (1, 2, 4):
            deployment.rule(CALLER, etype, f"{receiver.url}/caller")
        for etype in (0, 2, 3):
            deployment.rule(CALLEE, etype, f"{receiver.url}/callee")
        for name in ("w1", "w2", "w3"):
            deployment.worker(name)
        calls = [call_events(f"pg-{i}", CALLER, CALLEE, answered=True) for i in range(150)]
        with httpx.Client() as client:
            for i in range(0, len(calls), 5):
                deployment.ingest(list(itertools.chain(*calls[i : i + 5])), client)
        expected = 150 * 6
        got = receiver.wait_until(lambda got: len(got) >= expected, WAIT)
        threading.Event().wait(1.0)  # anything sent twice would arrive now
        got = receiver.requests
        assert len(got) == expected
        assert len(distinct_ids(got)) == expected, "each delivery sent exactly once"
        sequences: dict[tuple[str, str], list[int]] = defaultdict(list)
        for r in got:  # in arrival order
            sequences[(r.path, r.params["CallID"])].append(int(r.headers["x-callhook-seq"]))
        assert len(sequences) == 300
        assert all(seq == sorted(seq) and len(seq) == 3 for seq in sequences.values())
        sample = deployment.deliveries()[::10]
        workers = {a["worker"] for d in sample for a in _log(deployment, d)}
        assert workers == {"w1", "w2", "w3"}, "the work was shared"
    finally:
        deployment.close()


def _log(deployment: Deployment, delivery: dict[str, object]) -> list[dict[str, str]]:
    shown = deployment.api("GET", f"/callhook/v1/deliveries/{delivery['id']}").json()
    log: list[dict[str, str]] = shown["attempt_log"]
    return log


def _wait_for_children(parent: int, count: int, gone: int | None = None) -> list[int]:
    """The worker processes of ``parent`` once there are ``count`` of them besides ``gone``
    (they start right after the startup line), or what there is after 30 s."""
    children: list[int] = []
    deadline = datetime.now().timestamp() + 30
    while datetime.now().timestamp() < deadline:
        children = _worker_children(parent)
        if len([pid for pid in children if pid != gone]) >= count:
            break
        threading.Event().wait(0.1)
    return children


def _worker_children(parent: int) -> list[int]:
    """Processes started as `callhook worker --parent PARENT`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in args and b"--parent" in args and str(parent).encode() in args:
            found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int]) -> list[int]:
    deadline = datetime.now().timestamp() + 30
    alive = pids
    while alive and datetime.now().timestamp() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
        threading.Event().wait(0.1)
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_serve_with_worker_processes_on_sqlite_delivers_once_in_order_and_they_die_with_it(
    deployment: Deployment, receiver: ThreadedReceiver
) -> None:
    server = deployment.serve("--workers", "2")
    children = _wait_for_children(server.proc.pid, 2)
    assert len(children) == 2, "serve --workers 2 starts two worker processes"
    deployment.import_directory()
    for etype in (1, 2, 4):
        deployment.rule(CALLER, etype, f"{receiver.url}/caller")
    for etype in (0, 2, 3):
        deployment.rule(CALLEE, etype, f"{receiver.url}/callee")
    calls = [call_events(f"w-{i}", CALLER, CALLEE, answered=True) for i in range(100)]
    with httpx.Client() as client:
        for i in range(0, len(calls), 10):
            deployment.ingest(list(itertools.chain(*calls[i : i + 10])), client)
    receiver.wait_until(lambda got: len(got) >= 600, WAIT)
    threading.Event().wait(1.0)  # anything sent twice would arrive now
    got = receiver.requests
    assert len(got) == 600
    assert len(distinct_ids(got)) == 600, "each delivery sent exactly once"
    sequences: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in got:
        sequences[(r.path, r.params["CallID"])].append(int(r.headers["x-callhook-seq"]))
    assert all(seq == sorted(seq) and len(seq) == 3 for seq in sequences.values())

    # kill -9 of serve takes its workers with it: no orphan keeps sending
    server.proc.send_signal(signal.SIGKILL)
    assert _wait_gone(children) == []
    server.kill()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_serve_starts_a_worker_process_again_when_one_dies(
    deployment: Deployment, receiver: ThreadedReceiver
) -> None:
    server = deployment.serve("--workers", "1")
    children = _wait_for_children(server.proc.pid, 1)
    assert len(children) == 1
    deployment.import_directory()
    for etype in (1, 2, 4):
        deployment.rule(CALLER, etype, f"{receiver.url}/caller")

    killed = children[0]
    os.kill(killed, signal.SIGKILL)
    successor = [pid for pid in _wait_for_children(server.proc.pid, 1, killed) if pid != killed]
    assert len(successor) == 1, "a new worker process took the dead one's place"

    with httpx.Client() as client:
        deployment.ingest(call_events("after-restart", CALLER, CALLEE, answered=True), client)
    receiver.wait_until(lambda got: len(got) >= 3, WAIT)
    assert [r.params["CallID"] for r in receiver.requests] == ["after-restart"] * 3
    assert "exited with status -9; starting another" in server.err
    server.kill()
