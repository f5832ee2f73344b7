"""The operator's view of a PBX link: what its runner reports, and how it is shown.

A runner (inside ``callhook serve`` or a ``callhook source ami|esl`` process) keeps a
``LinkStatus`` and saves it to ``source_links`` when it connects or drops and every few seconds
(``HEARTBEAT``), so ``/callhook/v1/sources`` and ``callhook source status`` can show it from any
process. A link whose runner has not reported for ``STALE_AFTER`` is shown as ``unknown``: its
runner stopped or cannot reach the database.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from callhook.store.source_links import LinkRow

HEARTBEAT = 5.0
STALE_AFTER = timedelta(seconds=30)
_ERROR_LIMIT = 500


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


@dataclass(slots=True)
class LinkStatus:
    source_id: int
    kind: str
    target: str
    runner: str = field(default_factory=runner_name)
    connected: bool = False
    since: datetime | None = None
    events: int = 0
    reconnects: int = 0
    tracked_calls: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    #: connections that succeeded so far (the first is not a reconnect)
    connections: int = 0

    def up(self, now: datetime) -> None:
        if self.connections:
            self.reconnects += 1
        self.connections += 1
        self.connected = True
        self.since = now

    def down(self, now: datetime, error: str) -> None:
        if self.connected or self.since is None:
            self.since = now
        self.connected = False
        self.last_error = error[:_ERROR_LIMIT]
        self.last_error_at = now

    def row(self, now: datetime) -> LinkRow:
        return LinkRow(
            source_id=self.source_id,
            kind=self.kind,
            target=self.target,
            connected=self.connected,
            since=self.since,
            events=self.events,
            reconnects=self.reconnects,
            tracked_calls=self.tracked_calls,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            runner=self.runner,
            updated=now,
        )


def state_of(row: LinkRow, now: datetime) -> str:
    """connected, disconnected, or unknown (no report from the runner for a while)."""
    if now - row.updated > STALE_AFTER:
        return "unknown"
    return "connected" if row.connected else "disconnected"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def link_document(name: str, row: LinkRow, now: datetime) -> dict[str, Any]:
    """One link as /callhook/v1/sources and ``callhook source status --json`` show it."""
    state = state_of(row, now)
    return {
        "name": name,
        "kind": row.kind,
        "target": row.target,
        "state": state,
        "connected": state == "connected",
        "since": _time(row.since),
        "events_seen": row.events,
        "reconnects": row.reconnects,
        "tracked_calls": row.tracked_calls,
        "last_error": row.last_error,
        "last_error_at": _time(row.last_error_at),
        "runner": row.runner,
        "last_report": _time(row.updated),
    }
