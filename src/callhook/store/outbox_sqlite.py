"""The worker's cycle on SQLite, straight through sqlite3 on a thread of its own.

A cycle (record the finished attempts, give leases back, claim, expire what is too late) is one
transaction. Through SQLAlchemy and aiosqlite each of its statements was several hops between
the event loop and aiosqlite's thread, and with the loop busy sending each hop waited for it: a
cycle took 30-100 ms of which SQLite's work was a few. Here the whole transaction is one
function run on one thread with its own connection (``sqlite_thread``): one hop per cycle. The
statements are the same as ``outbox``'s (same locks, same lease checks); the results are
``outbox``'s types.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from callhook.store import bulk, outbox
from callhook.store.outbox import EXPIRED_REASON, ClaimWanted, CycleDone
from callhook.store.sqlite_thread import SqliteThread

#: the deliveries outbox.claim would lease, as SQLite runs it (``{skip}``: the hosts left out,
#: if any), in one row: a JSON array of their columns (through sqlite3 each row of a result is
#: a step that gives the GIL up and takes it back, against the busy event loop)
_DUE = (
    "SELECT json_group_array(json_array(id, webhook_id, call_id, seq, event_type, extension, "
    "app_id, method, url, host, payload, attempts, expires_at)) FROM deliveries "
    "WHERE id IN (SELECT cand.id FROM delivery_queue AS cand WHERE cand.next_at <= ? "
    "AND NOT (EXISTS (SELECT 1 FROM delivery_queue AS earlier "
    "WHERE earlier.order_key = cand.order_key AND earlier.id < cand.id)){skip} "
    "ORDER BY cand.next_at, cand.id LIMIT ?)"
)
#: then their leases, and their rows of the queue due when the leases end (the cycle holds the
#: write lock since its BEGIN IMMEDIATE: nothing else writes between the statements)
_LEASE = (
    "UPDATE deliveries SET lease_until = ?, lease_owner = ? "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
_QUEUE_LEASED = (
    "UPDATE delivery_queue SET next_at = ?, parked = 0 WHERE id IN (SELECT value FROM json_each(?))"
)

#: the queue first, while the leases still say whose they are
_QUEUE_RELEASED = (
    "UPDATE delivery_queue SET next_at = ? WHERE id IN "
    "(SELECT id FROM deliveries WHERE id IN ({marks}) AND lease_owner = ?)"
)
_RELEASE = (
    "UPDATE deliveries SET lease_until = NULL, lease_owner = NULL, next_at = ? "
    "WHERE id IN ({marks}) AND lease_owner = ?"
)

_EXPIRE = (
    "UPDATE deliveries SET state = ?, lease_until = NULL, lease_owner = NULL, last_error = ?, "
    "finished = ? WHERE id = ? AND state = 'pending'"
)
#: ids as a JSON array
_DEQUEUE = "DELETE FROM delivery_queue WHERE id IN (SELECT value FROM json_each(?))"
_WAKE_NEXT = outbox.WAKE_NEXT.format(false="0", ids="SELECT value FROM json_each(?)")
_QUEUE_RETRY = (
    "UPDATE delivery_queue SET next_at = coalesce(?, (SELECT next_at FROM deliveries AS d "
    "WHERE d.id = delivery_queue.id)) WHERE id = ?"
)

_RECORDED = "SELECT id, attempts, lease_owner FROM deliveries WHERE id IN ({marks})"


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else bulk.sqlite_datetime(value)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class SqliteCycles:
    """Runs cycles for one worker on one SQLite file (``close`` when the worker stops)."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        self._thread = SqliteThread(path, synchronous=synchronous, name="callhook-outbox")

    async def cycle(
        self,
        owner: str,
        finished: Sequence[outbox.Finished],
        returns: Sequence[tuple[int, datetime]],
        claim: ClaimWanted | None,
    ) -> CycleDone:
        """One transaction; a caller cancelled meanwhile still gets its outcome (what it
        wrote must not be written again: ``SqliteThread.transaction``)."""

        def work(conn: sqlite3.Connection) -> CycleDone:
            return _cycle(conn, owner, finished, returns, claim)

        return await self._thread.transaction(work)

    async def close(self) -> None:
        await self._thread.close()


def _cycle(
    conn: sqlite3.Connection,
    owner: str,
    finished: Sequence[outbox.Finished],
    returns: Sequence[tuple[int, datetime]],
    claim: ClaimWanted | None,
) -> CycleDone:
    done = CycleDone(kept=_record(conn, owner, finished))
    for due in sorted({at for _, at in returns}):
        _release(conn, [job_id for job_id, at in returns if at == due], owner, due)
    if claim is not None:
        jobs = _claim(conn, owner, claim)
        done.expired = [job for job in jobs if job.expires_at <= claim.now]
        _expire(conn, done.expired, claim.now)
        done.jobs = [job for job in jobs if job.expires_at > claim.now]
    return done


def _record(
    conn: sqlite3.Connection, owner: str, finished: Sequence[outbox.Finished]
) -> list[bool]:
    """outbox.finish_attempts on SQLite: the updates check the leases themselves."""
    if not finished:
        return []
    changed = 0
    for chunk in bulk.chunked(outbox.finish_rows(_stamp, finished), 6):
        sql = outbox.FINISH_FROM_VALUES.format(values=bulk.values(len(chunk), 6))
        changed += conn.execute(sql, (*(v for row in chunk for v in row), owner)).rowcount
    if changed == len(finished):
        kept = {f.job.id for f in finished}
    else:
        kept = _recorded_by(conn, finished)
    mine = [f for f in finished if f.job.id in kept]
    _dequeue(conn, mine)
    columns = ", ".join(outbox.ATTEMPT_COLUMNS)
    width = len(outbox.ATTEMPT_COLUMNS)
    for rows in bulk.chunked(outbox.attempt_rows(_stamp, mine), width):
        sql = f"INSERT INTO delivery_attempts ({columns}) VALUES {bulk.values(len(rows), width)}"  # noqa: S608
        conn.execute(sql, tuple(v for row in rows for v in row))
    return [f.job.id in kept for f in finished]


def _dequeue(conn: sqlite3.Connection, recorded: Sequence[outbox.Finished]) -> None:
    """The finished deliveries leave the queue; those to try again are due there then."""
    ended = [f.job.id for f in recorded if f.state != outbox.PENDING]
    if ended:
        _leave(conn, json.dumps(ended))
    again = [(_stamp(f.next_at), f.job.id) for f in recorded if f.state == outbox.PENDING]
    if again:
        conn.executemany(_QUEUE_RETRY, again)


def _recorded_by(conn: sqlite3.Connection, finished: Sequence[outbox.Finished]) -> set[int]:
    """The deliveries the update changed: lease cleared and attempts counted by it."""
    wanted = {f.job.id: f for f in finished}
    kept: set[int] = set()
    ids = list(wanted)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        sql = _RECORDED.format(marks=", ".join("?" for _ in chunk))
        for job_id, attempts, lease_owner in conn.execute(sql, chunk):
            if lease_owner is None and attempts == wanted[job_id].job.attempts + 1:
                kept.add(job_id)
    return kept


def _release(conn: sqlite3.Connection, ids: Sequence[int], owner: str, due: datetime) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        conn.execute(_QUEUE_RELEASED.format(marks=marks), (_stamp(due), *chunk, owner))
        conn.execute(_RELEASE.format(marks=marks), (_stamp(due), *chunk, owner))


def _claim(conn: sqlite3.Connection, owner: str, wanted: ClaimWanted) -> list[outbox.Job]:
    now = _stamp(wanted.now)
    skip = ""
    if wanted.skip_hosts:
        skip = f" AND cand.host NOT IN ({', '.join('?' for _ in wanted.skip_hosts)})"
    params: list[Any] = [now, *wanted.skip_hosts, wanted.limit]
    (found,) = conn.execute(_DUE.format(skip=skip), params).fetchone()
    rows = json.loads(found)
    if not rows:
        return []
    ids = json.dumps([row[0] for row in rows])
    until = _stamp(wanted.now + wanted.lease)
    conn.execute(_LEASE, (until, owner, ids))
    conn.execute(_QUEUE_LEASED, (until, ids))
    return sorted((_job(row) for row in rows), key=lambda job: job.id)


def _job(row: list[Any]) -> outbox.Job:
    id_, webhook_id, call_id, seq, event_type, extension, app_id, method, url, host = row[:10]
    payload, attempts, expires_at = row[10:]
    return outbox.Job(
        id_,
        webhook_id,
        call_id,
        seq,
        event_type,
        extension,
        app_id,
        method,
        url,
        host,
        payload,
        attempts,
        _parse(expires_at),
    )


def _expire(conn: sqlite3.Connection, jobs: Sequence[outbox.Job], now: datetime) -> None:
    for job in jobs:
        conn.execute(_EXPIRE, (outbox.EXPIRED, EXPIRED_REASON, _stamp(now), job.id))
    if jobs:
        _leave(conn, json.dumps([job.id for job in jobs]))


def _leave(conn: sqlite3.Connection, ids: str) -> None:
    """Finished deliveries (``ids``, a JSON array) leave the queue, each waking the next of its
    (url, call) if it was parked behind it."""
    conn.execute(_WAKE_NEXT, (ids,))
    conn.execute(_DEQUEUE, (ids,))
