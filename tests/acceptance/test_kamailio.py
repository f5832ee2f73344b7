"""Real SIP calls through Kamailio with contrib/kamailio/callhook.cfg, into a real callhook.

SIPp places the calls (answered, callee hangs up, busy, no answer, caller cancels, rings until
Kamailio gives up, never replies, from and to external numbers) through Kamailio to a SIPp
answering side; Kamailio posts the call events to `callhook serve` asynchronously; callhook
delivers the PhoneCallEvents registered on the extensions to a receiver on 127.0.0.1. One call
is placed while callhook is down: Kamailio keeps its events and sends them once callhook is
back.

Kamailio and SIPp come from Debian's packages (contrib/kamailio/install-packages.sh installs
them when missing). Where they cannot be installed the test is skipped with the reason, unless
CALLHOOK_REQUIRE_KAMAILIO=1 (CI), where it fails instead.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bench.sip import (
    control_socket,
    free_port,
    install_tools,
    kamailio_binary,
    kamailio_command,
    recipe_settings,
    render_config,
    start,
    stop,
    uac_command,
    uas_command,
)

from tests.acceptance.deployment import Deployment
from tests.receiver import Received, ThreadedReceiver

pytestmark = pytest.mark.slow

WAIT = 60.0  # seconds: a limit on waiting, not a claim about speed
ORG = "0003"  # the directory's organization (code 3), as CALLHOOK_ORG
NAME = "Alice Doe"  # the callers' display name
#: the PhoneCallEvent types registered on every extension of the test
TYPES = (0, 1, 2, 3, 4)
TALK_MS = 500  # SIPp's pauses, on both sides

#: (type, CallStatus, CallFlow) in the order an extension gets them
Expected = list[tuple[int, str, str]]


def caller_side(hangup: str, answered: bool) -> Expected:
    middle = [(4, "ANSWER", "OUT")] if answered else []
    return [(1, "CALLING", "OUT"), *middle, (2, hangup, "OUT")]


def callee_side(hangup: str, answered: bool) -> Expected:
    middle = [(3, "ANSWER", "IN")] if answered else []
    return [(0, "CALLING", "IN"), *middle, (2, hangup, "IN")]


@dataclass(frozen=True)
class Call:
    name: str  # the Call-ID starts with it
    scenario: str  # sipp/uac-SCENARIO.xml
    caller: str  # SIP user parts
    callee: str
    #: per extension (short number): what it gets, in order
    expected: dict[str, Expected] = field(default_factory=dict)
    #: how many call events Kamailio sends for it
    events: int = 3


def between_extensions(
    scenario: str,
    hangup: str,
    *,
    answered: bool = False,
    name: str = "",
    caller: str = "201",
    callee: str = "210",
) -> Call:
    """A call ``name`` (``scenario`` by default) with sipp/uac-SCENARIO.xml from extension
    ``caller`` to extension ``callee``, both sides ending with ``hangup``; Kamailio sends 3 call
    events for it when it was answered, 2 when not."""
    return Call(
        name or scenario,
        scenario,
        caller,
        callee,
        {caller: caller_side(hangup, answered), callee: callee_side(hangup, answered)},
        events=3 if answered else 2,
    )


CALLS = [
    between_extensions("answered", "ANSWER", answered=True),
    between_extensions("callee-hangs-up", "ANSWER", answered=True),
    between_extensions("busy", "BUSY"),
    between_extensions("no-answer", "NOANSWER"),
    between_extensions("cancel", "CANCEL"),
    # Kamailio gives up: on a callee that rings too long, and on one that never replies
    between_extensions("rings-out", "NOANSWER"),
    between_extensions("unreachable", "CHANUNAVAIL"),
    # from an outside number to an extension, and from an extension to an outside number
    Call("inbound", "answered", "+15551234567", "211", {"211": callee_side("ANSWER", True)}),
    Call("outbound", "answered", "201", "0040212345678", {"201": caller_side("ANSWER", True)}),
]
#: placed while callhook is down
WHILE_DOWN = between_extensions(
    "answered", "ANSWER", answered=True, name="while-down", caller="210", callee="211"
)


# --- the tools ---------------------------------------------------------------------------------


def ensure_tools() -> None:
    """Kamailio (with http_client and jansson) and SIPp, installed from Debian when missing; the
    test is skipped (failed with CALLHOOK_REQUIRE_KAMAILIO=1) when they cannot be."""
    reason = install_tools()
    if reason:
        message = f"Kamailio and SIPp are needed and could not be installed: {reason}"
        if os.environ.get("CALLHOOK_REQUIRE_KAMAILIO") == "1":
            pytest.fail(message)
        pytest.skip(message)


class Sip:
    """Kamailio with the rendered recipe, the SIPp answering side, and calls placed by SIPp."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.uas_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kamailio_log = tmp / "kamailio.log"

    def start(self, callhook_url: str, token: str) -> None:
        settings = recipe_settings(
            port=self.port,
            callhook_url=callhook_url,
            token=token,
            org=ORG,
            forward_port=self.uas_port,
            ctl=control_socket(self.tmp),
        )
        settings |= {"CALLHOOK_RING_TIMEOUT": "1500", "CALLHOOK_REPLY_TIMEOUT": "1000"}
        config = render_config(self.tmp, settings)
        check = subprocess.run(
            [kamailio_binary(), "-c", "-f", str(config)],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        kamailio = kamailio_command(config, 128)
        self.procs.append(start(kamailio, self.tmp, self.kamailio_log, self.port))
        uas = uas_command(self.uas_port, TALK_MS, "-trace_err")
        self.procs.append(start(uas, self.tmp, self.tmp / "uas.log", self.uas_port))

    def call(self, call: Call) -> None:
        """One call with SIPp; it must go as its scenario says (exit status 0)."""
        calls = self.tmp / f"{call.name}.csv"
        calls.write_text(f"SEQUENTIAL\n{call.caller};{call.callee};{NAME}\n", "utf-8")
        done = subprocess.run(
            uac_command(
                self.port,
                call.scenario,
                calls,
                TALK_MS,
                (call.name, "kamailio-test"),
                *("-m", "1", "-timeout", "30s", "-timeout_error", "-trace_err"),
            ),
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        errors = "".join(p.read_text() for p in self.tmp.glob(f"uac-{call.scenario}_*_errors.log"))
        assert done.returncode == 0, f"SIPp {call.name}: exit {done.returncode}\n{errors}"

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tools() -> None:
    ensure_tools()


@pytest.fixture
def sip(tools: None, tmp_path: Path) -> Iterator[Sip]:
    s = Sip(tmp_path)
    yield s
    s.close()


# --- the test ----------------------------------------------------------------------------------


def test_sip_calls_through_kamailio_fire_the_phone_call_events_in_order(
    deployment: Deployment, receiver: ThreadedReceiver, sip: Sip
) -> None:
    port = free_port(socket.SOCK_STREAM)
    server = deployment.serve("--port", str(port))
    deployment.import_directory()
    token = json.loads(deployment.cli("admin", "source", "create", "kamailio", "--json"))["token"]
    for ext in ("201", "210", "211"):
        for etype in TYPES:
            deployment.rule(f"{ORG}*{ext}", etype, f"{receiver.url}/hook/{ext}")
    sip.start(deployment.url, token)

    for call in CALLS:
        sip.call(call)
    first = sum(len(e) for c in CALLS for e in c.expected.values())
    receiver.wait_until(lambda got: len({r.webhook_id for r in got}) >= first, WAIT)
    # and recorded as delivered: one received but not yet recorded would be sent again after
    # the kill below (at least once), which is not what this test looks at
    deadline = time.monotonic() + WAIT
    while any(d["state"] != "delivered" for d in deployment.deliveries()):
        assert time.monotonic() < deadline, "deliveries not recorded as delivered"
        time.sleep(0.1)

    # callhook goes away (kill -9); a call happens; callhook comes back on the same address:
    # Kamailio kept the call's events and sends them now
    server.kill()
    sip.call(WHILE_DOWN)
    deployment.serve("--port", str(port))
    total = first + sum(len(e) for e in WHILE_DOWN.expected.values())
    got = receiver.wait_until(lambda got: len({r.webhook_id for r in got}) >= total, WAIT)

    calls = [*CALLS, WHILE_DOWN]
    deliveries = {d["id"]: d for d in deployment.deliveries()}
    assert len(deliveries) == total, "no delivery beyond the expected ones"
    assert all(d["state"] == "delivered" for d in deliveries.values())
    assert {r.webhook_id for r in got} == set(deliveries)
    assert len(got) == total, "each delivery received once"

    # each call's events reached callhook once: nothing more, nothing twice
    (source,) = [
        s
        for s in json.loads(deployment.cli("admin", "source", "list", "--json"))
        if s["name"] == "kamailio"
    ]
    assert source["events"] == sum(c.events for c in calls)

    # per call and extension URL, in the order they arrived
    arrived: dict[tuple[str, str], list[Received]] = defaultdict(list)
    for request in got:
        arrived[(request.params["CallID"], request.path)].append(request)
    for call in calls:
        ids = {i for i, p in arrived if i.startswith(f"{call.name}-")}
        assert len(ids) == 1, f"{call.name}: one call id, got {ids}"
        (call_id,) = ids
        assert {p for i, p in arrived if i == call_id} == {f"/hook/{e}" for e in call.expected}
        for ext, expected in call.expected.items():
            requests = arrived[(call_id, f"/hook/{ext}")]
            seen = [
                (
                    int(deliveries[r.webhook_id]["type"]),
                    r.params["CallStatus"],
                    r.params["CallFlow"],
                )
                for r in requests
            ]
            assert seen == expected, f"{call.name}, extension {ext}"
            seqs = [int(r.headers["x-callhook-seq"]) for r in requests]
            assert seqs == sorted(seqs), f"{call.name}, extension {ext}: out of order"
            for r in requests:
                assert deliveries[r.webhook_id]["extension"] == f"{ORG}*{ext}"
                check_params(call, ext, call_id, r.params)

    log = sip.kamailio_log.read_text()
    assert "callhook: POST failed" in log, "the call placed while callhook was down was kept"
    assert "callhook: event dropped" not in log
    assert "queue full" not in log
    assert "runaway" not in log


def check_params(call: Call, ext: str, call_id: str, params: dict[str, str]) -> None:
    """The VoipNow parameters of one request for ``ext`` in ``call``."""

    def extension(user: str) -> str | None:
        return f"{ORG}*{user}" if user.isdigit() and len(user) <= 7 else None

    flow_in = params["CallFlow"] == "IN"
    caller_ext, callee_ext = extension(call.caller), extension(call.callee)
    wanted = {
        "CallID": call_id,
        "CallerIDNum": call.caller,
        "CallerIDName": NAME,
        "CallerExtension": caller_ext,
        "CalledExtension": f"{ORG}*{ext}" if flow_in else callee_ext,
        "CalledNumber": call.callee,
    }
    for key, value in wanted.items():
        assert params.get(key) == value, f"{call.name}, extension {ext}: {key} in {params}"
