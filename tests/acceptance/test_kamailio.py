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

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.acceptance.deployment import Deployment
from tests.receiver import Received, ThreadedReceiver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib" / "kamailio"
SCENARIOS = CONTRIB / "sipp"
WAIT = 60.0  # seconds: a limit on waiting, not a claim about speed
ORG = "0003"  # the directory's organization (code 3), as CALLHOOK_ORG
NAME = "Alice Doe"  # the callers' display name
#: the PhoneCallEvent types registered on every extension of the test
TYPES = (0, 1, 2, 3, 4)

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


CALLS = [
    Call(
        "answered",
        "answered",
        "201",
        "210",
        {"201": caller_side("ANSWER", True), "210": callee_side("ANSWER", True)},
    ),
    Call(
        "callee-hangs-up",
        "callee-hangs-up",
        "201",
        "210",
        {"201": caller_side("ANSWER", True), "210": callee_side("ANSWER", True)},
    ),
    Call(
        "busy",
        "busy",
        "201",
        "210",
        {"201": caller_side("BUSY", False), "210": callee_side("BUSY", False)},
        events=2,
    ),
    Call(
        "no-answer",
        "no-answer",
        "201",
        "210",
        {"201": caller_side("NOANSWER", False), "210": callee_side("NOANSWER", False)},
        events=2,
    ),
    Call(
        "cancel",
        "cancel",
        "201",
        "210",
        {"201": caller_side("CANCEL", False), "210": callee_side("CANCEL", False)},
        events=2,
    ),
    # Kamailio gives up: on a callee that rings too long, and on one that never replies
    Call(
        "rings-out",
        "rings-out",
        "201",
        "210",
        {"201": caller_side("NOANSWER", False), "210": callee_side("NOANSWER", False)},
        events=2,
    ),
    Call(
        "unreachable",
        "unreachable",
        "201",
        "210",
        {"201": caller_side("CHANUNAVAIL", False), "210": callee_side("CHANUNAVAIL", False)},
        events=2,
    ),
    # from an outside number to an extension, and from an extension to an outside number
    Call("inbound", "answered", "+15551234567", "211", {"211": callee_side("ANSWER", True)}),
    Call("outbound", "answered", "201", "0040212345678", {"201": caller_side("ANSWER", True)}),
]
#: placed while callhook is down
WHILE_DOWN = Call(
    "while-down",
    "answered",
    "210",
    "211",
    {"210": caller_side("ANSWER", True), "211": callee_side("ANSWER", True)},
)


# --- the tools ---------------------------------------------------------------------------------


def ensure_tools() -> None:
    """Kamailio (with http_client and jansson) and SIPp, installed from Debian when missing."""
    script = CONTRIB / "install-packages.sh"
    try:
        done = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=900, check=False
        )
        reason = done.stderr.strip().splitlines()[-1] if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"{script.name} did not run: {exc}"
    if not reason and not (shutil.which("kamailio") or Path("/usr/sbin/kamailio").exists()):
        reason = "kamailio is not on PATH after the install"
    if not reason and not shutil.which("sipp"):
        reason = "sipp is not on PATH after the install"
    if reason:
        message = f"Kamailio and SIPp are needed and could not be installed: {reason}"
        if os.environ.get("CALLHOOK_REQUIRE_KAMAILIO") == "1":
            pytest.fail(message)
        pytest.skip(message)


def kamailio_binary() -> str:
    return shutil.which("kamailio") or "/usr/sbin/kamailio"


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def udp_listening(port: int) -> bool:
    """Whether a socket is bound to UDP ``port`` (from /proc/net/udp: address:PORT in hex)."""
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1].endswith(f":{port:04X}") for line in lines)


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not udp_listening(port):
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited {proc.returncode}:\n{log.read_text()}")
        assert time.monotonic() < deadline, f"nothing listens on UDP {port}"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL; and any process left in its process group (it leads one)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def render_config(tmp: Path, settings: dict[str, str]) -> Path:
    """contrib/kamailio/callhook.cfg with the values of some of its `#!define`s replaced."""
    text = (CONTRIB / "callhook.cfg").read_text("utf-8")
    for name, value in settings.items():
        text, count = re.subn(
            rf"^#!define {name} .*$", f"#!define {name} {value}", text, flags=re.M
        )
        assert count == 1, f"callhook.cfg has no single `#!define {name}`"
    path = tmp / "callhook.cfg"
    path.write_text(text, "utf-8")
    return path


class Sip:
    """Kamailio with the rendered recipe, the SIPp answering side, and calls placed by SIPp."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port(socket.SOCK_DGRAM)
        self.uas_port = free_port(socket.SOCK_DGRAM)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kamailio_log = tmp / "kamailio.log"

    def start(self, callhook_url: str, token: str) -> None:
        config = render_config(
            self.tmp,
            {
                "CALLHOOK_LISTEN": f"udp:127.0.0.1:{self.port}",
                "CALLHOOK_URL": json.dumps(f"{callhook_url}/callhook/v1/call-events"),
                "CALLHOOK_TOKEN": json.dumps(token),
                "CALLHOOK_ORG": json.dumps(ORG),
                "CALLHOOK_FORWARD": json.dumps(f"sip:127.0.0.1:{self.uas_port}"),
                "CALLHOOK_CTL": json.dumps(f"unix:{self.tmp / 'kamailio_ctl'}"),
                "CALLHOOK_RING_TIMEOUT": "1500",
                "CALLHOOK_REPLY_TIMEOUT": "1000",
            },
        )
        check = subprocess.run(
            [kamailio_binary(), "-c", "-f", str(config)],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        self._spawn(
            [kamailio_binary(), "-f", str(config), "-DD", "-E", "-m", "128"],
            self.kamailio_log,
            self.port,
        )
        uas = [
            "sipp",
            *("-sf", str(SCENARIOS / "uas.xml"), "-i", "127.0.0.1", "-p", str(self.uas_port)),
            *("-nostdin", "-d", "500", "-trace_err"),
        ]
        self._spawn(uas, self.tmp / "uas.log", self.uas_port)

    def _spawn(self, args: list[str], log: Path, port: int) -> None:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args,
                cwd=self.tmp,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=out,
                start_new_session=True,
            )
        self.procs.append(proc)
        wait_listening(port, proc, log)

    def call(self, call: Call) -> None:
        """One call with SIPp; it must go as its scenario says (exit status 0)."""
        calls = self.tmp / f"{call.name}.csv"
        calls.write_text(f"SEQUENTIAL\n{call.caller};{call.callee};{NAME}\n", "utf-8")
        done = subprocess.run(
            [
                "sipp",
                f"127.0.0.1:{self.port}",
                *("-sf", str(SCENARIOS / f"uac-{call.scenario}.xml"), "-inf", str(calls)),
                *("-i", "127.0.0.1", "-m", "1", "-nostdin", "-d", "500"),
                *("-cid_str", f"{call.name}-%u-%p@kamailio-test"),
                *("-timeout", "30s", "-timeout_error", "-trace_err"),
            ],
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
