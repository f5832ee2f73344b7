"""Kamailio and SIPp as processes: tools, ports, config rendering, start/stop.

Shared by the Kamailio benchmark (``bench/kamailio.py``) and the Kamailio acceptance test
(``tests/acceptance/test_kamailio.py``): both run Kamailio on ``contrib/kamailio/callhook.cfg``
with a SIPp answering side behind it and SIPp placing the calls, all on 127.0.0.1.
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
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib" / "kamailio"
SCENARIOS = CONTRIB / "sipp"
WAIT = 60.0  # seconds: a limit on waiting for a process to listen, not a claim about speed


class SipError(RuntimeError):
    """A process of the harness did not start, or the recipe could not be rendered."""


# --- the tools ---------------------------------------------------------------------------------


def kamailio_binary() -> str:
    return shutil.which("kamailio") or "/usr/sbin/kamailio"


def tools_present() -> bool:
    """Whether the kamailio binary and SIPp are there (not whether Kamailio has its modules)."""
    return Path(kamailio_binary()).exists() and shutil.which("sipp") is not None


def install_tools(timeout: float = 900) -> str:
    """Kamailio (with http_client and jansson) and SIPp, installed from Debian when missing
    (contrib/kamailio/install-packages.sh): why they are still missing, or "" when they are all
    there."""
    script = CONTRIB / "install-packages.sh"
    try:
        done = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=timeout, check=False
        )
        reason = (done.stderr.strip() or f"exit {done.returncode}") if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"{script.name} did not run: {exc}"
    if not reason and not Path(kamailio_binary()).exists():
        reason = "kamailio is not on PATH after the install"
    if not reason and not shutil.which("sipp"):
        reason = "sipp is not on PATH after the install"
    return reason


# --- ports and processes -----------------------------------------------------------------------


def free_port(kind: socket.SocketKind = socket.SOCK_DGRAM) -> int:
    """A port of 127.0.0.1 free for now (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def udp_listening(port: int) -> bool:
    """Whether a socket is bound to UDP ``port`` (from /proc/net/udp: address:PORT in hex)."""
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1].endswith(f":{port:04X}") for line in lines)


def wait_listening(
    proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = WAIT
) -> None:
    """Until something listens on UDP ``port``; SipError, with the end of ``log``, if ``proc``
    exits first or nothing listens within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not udp_listening(port):
        if proc.poll() is not None:
            raise SipError(f"{proc.args!r} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise SipError(f"nothing listens on UDP {port}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def start(
    args: Sequence[str], cwd: Path, log: Path, port: int, timeout: float = WAIT
) -> subprocess.Popen[bytes]:
    """``args`` in the background, leading a process group of its own, its stderr in ``log``;
    returns once it listens on UDP ``port`` (see wait_listening; stopped if it does not)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    try:
        wait_listening(proc, port, log, timeout)
    except BaseException:
        stop(proc)
        raise
    return proc


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


@contextlib.contextmanager
def running(
    args: Sequence[str], cwd: Path, log: Path, port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """A background process that listens on UDP ``port`` (see start); stopped on leaving."""
    proc = start(args, cwd, log, port)
    try:
        yield proc
    finally:
        stop(proc)


# --- Kamailio ----------------------------------------------------------------------------------


def control_socket(tmp: Path) -> str:
    """The address of Kamailio's ``kamcmd`` socket in ``tmp`` (CALLHOOK_CTL, ``kamcmd -s``)."""
    return f"unix:{tmp / 'kamailio_ctl'}"


def recipe_settings(
    *, port: int, callhook_url: str, token: str, org: str, forward_port: int, ctl: str
) -> dict[str, str]:
    """The recipe's `#!define`s for a Kamailio on UDP 127.0.0.1:``port`` that posts its call
    events to the callhook at ``callhook_url`` (its base URL) with the source ``token``, for the
    organization ``org``, and forwards the calls to the SIPp answering side on ``forward_port``;
    values written as in callhook.cfg (strings quoted)."""
    return {
        "CALLHOOK_LISTEN": f"udp:127.0.0.1:{port}",
        "CALLHOOK_URL": json.dumps(f"{callhook_url}/callhook/v1/call-events"),
        "CALLHOOK_TOKEN": json.dumps(token),
        "CALLHOOK_ORG": json.dumps(org),
        "CALLHOOK_FORWARD": json.dumps(f"sip:127.0.0.1:{forward_port}"),
        "CALLHOOK_CTL": json.dumps(ctl),
    }


def render_config(tmp: Path, settings: dict[str, str]) -> Path:
    """contrib/kamailio/callhook.cfg with the values of some of its `#!define`s replaced."""
    text = (CONTRIB / "callhook.cfg").read_text("utf-8")
    for name, value in settings.items():
        text, count = re.subn(
            rf"^#!define {name} .*$", f"#!define {name} {value}", text, flags=re.M
        )
        if count != 1:
            raise SipError(f"callhook.cfg has no single `#!define {name}`")
    path = tmp / "callhook.cfg"
    path.write_text(text, "utf-8")
    return path


def define_args(settings: dict[str, str]) -> list[str]:
    """The same settings given on Kamailio's command line (``-A NAME=VALUE``), as a user may."""
    return [arg for name, value in settings.items() for arg in ("-A", f"{name}={value}")]


def kamailio_command(config: Path, memory_mb: int, *extra: str) -> list[str]:
    """Kamailio on ``config`` in the foreground, logging to stderr, with ``memory_mb`` MB of
    shared memory."""
    return [kamailio_binary(), "-f", str(config), "-DD", "-E", "-m", str(memory_mb), *extra]


# --- SIPp --------------------------------------------------------------------------------------


def uas_command(port: int, talk_ms: int, *extra: str) -> list[str]:
    """SIPp as the answering side on UDP 127.0.0.1:``port`` (sipp/uas.xml), pausing ``talk_ms``
    where its scenario pauses."""
    return [
        "sipp",
        *("-sf", str(SCENARIOS / "uas.xml"), "-i", "127.0.0.1", "-p", str(port)),
        *("-nostdin", "-d", str(talk_ms)),
        *extra,
    ]


def uac_command(
    port: int,
    scenario: str,
    calls_csv: Path,
    talk_ms: int,
    call_ids: tuple[str, str],
    *extra: str,
) -> list[str]:
    """SIPp placing calls to Kamailio on UDP 127.0.0.1:``port`` with sipp/uac-SCENARIO.xml and
    the callers, callees and names of ``calls_csv``; the Call-IDs are ``PREFIX-<n>-<pid>@DOMAIN``
    for ``call_ids`` (PREFIX, DOMAIN), so that a run's calls are found by their prefix."""
    prefix, domain = call_ids
    return [
        "sipp",
        f"127.0.0.1:{port}",
        *("-sf", str(SCENARIOS / f"uac-{scenario}.xml"), "-inf", str(calls_csv)),
        *("-i", "127.0.0.1", "-nostdin", "-d", str(talk_ms)),
        *("-cid_str", f"{prefix}-%u-%p@{domain}"),
        *extra,
    ]
