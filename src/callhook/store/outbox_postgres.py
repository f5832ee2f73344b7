"""The worker's cycle on PostgreSQL, straight through asyncpg on a connection of its own.

A cycle (record the finished attempts, give leases back, claim, expire what is too late) is one
transaction, as in ``outbox``. Through SQLAlchemy it was a SELECT ... FOR UPDATE of the
finished deliveries, then one UPDATE and one INSERT per attempt (executemany: a statement each
for the server), then the claim. Here each step is one statement, prepared once per connection
(asyncpg's statement cache), with whole columns as arrays: the attempts are recorded by one
UPDATE ... FROM unnest(...) that checks each lease itself and inserts their delivery_attempts
rows in the same statement, and the claim is ``outbox``'s (a MATERIALIZED CTE with FOR UPDATE
SKIP LOCKED, so two workers never lease the same delivery).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.store import outbox
from callhook.store.database import asyncpg_options
from callhook.store.outbox import EXPIRED_REASON, ClaimWanted, CycleDone
from callhook.store.pg_connection import OwnConnection, columns, moment

#: the worker's connection plans without bitmap scans, full sorts and whole-table reads. With
#: statistics that do not know how many deliveries are due (a fresh database, a burst)
#: PostgreSQL read every due delivery, checked each for an earlier pending one and sorted them
#: all to keep 60: 40 ms a claim with 11,200 due. Without those it walks the queue's
#: (next_at, id) index in order and stops at the 60th (4-8 ms, as with fresh statistics)
#: (RESULTS.md item 14); and with statistics from when the tables were small it read the
#: whole queue or deliveries table to find a cycle's rows, once per row found (RESULTS.md item
#: 20). Every other statement of the cycle finds its rows by primary key and sorts nothing.
PLANNER = {"enable_bitmapscan": "off", "enable_sort": "off", "enable_seqscan": "off"}


def _wake_next(finished: str) -> str:
    """outbox.WAKE_NEXT for the deliveries ``finished`` selects, in a statement that deletes
    them from the queue (its other parts see them still there), every row by primary key."""
    return (
        "UPDATE delivery_queue SET next_at = (SELECT d.next_at FROM deliveries AS d "  # noqa: S608
        "WHERE d.id = delivery_queue.id), parked = false WHERE parked AND id = ANY(ARRAY("
        "SELECT (SELECT min(q.id) FROM delivery_queue AS q "
        "WHERE q.order_key = done.order_key AND q.id > done.id) "
        f"FROM delivery_queue AS done WHERE done.id = ANY(ARRAY({finished}))))"
    )


def _at(array: str, key: str) -> str:
    """The element of the parameter ``array`` at the place of ``key`` in $1 (the ids)."""
    return f"({array})[array_position($1::bigint[], {key})]"


#: each attempt recorded only while its delivery is pending and leased to this worker, and the
#: attempt's row inserted for those recorded; their ids come back. Every row is found by
#: primary key (``id = ANY``: with statistics that did not know the backlog PostgreSQL once
#: walked an index of all pending deliveries to find a cycle's few; RESULTS.md item 16), and
#: each row's values are taken from the arrays by its place in $1: joined to the arrays as a
#: table (unnest), PostgreSQL read the whole table of values again for each row updated (the
#: nested loop it picks for the one row it expects: 28,000 rows formed for a cycle of 167,
#: 32 ms; RESULTS.md item 20). The finished ones leave the queue (each waking the next of its
#: call if it was parked behind it), the ones to try again are due there at their next attempt.
#: No index of deliveries holds a column this changes: the row is updated in place (HOT).
_RECORD = (
    "WITH recorded AS (UPDATE deliveries AS d SET "  # noqa: S608
    f"state = {_at('$2::text[]', 'd.id')}, lease_until = NULL, lease_owner = NULL, "
    f"last_error = {_at('$3::text[]', 'd.id')}, attempts = d.attempts + 1, "
    f"last_status = {_at('$4::int[]', 'd.id')}, "
    f"next_at = COALESCE({_at('$5::timestamptz[]', 'd.id')}, d.next_at), "
    f"finished = {_at('$6::timestamptz[]', 'd.id')} "
    "WHERE d.id = ANY($1::bigint[]) AND d.state = 'pending' AND d.lease_owner = $7 "
    "RETURNING d.id, d.state, d.next_at), "
    "dequeued AS (DELETE FROM delivery_queue "
    "WHERE id = ANY(ARRAY(SELECT id FROM recorded WHERE state <> 'pending'))), "
    "woken AS ({wake}), "
    "again AS (UPDATE delivery_queue SET next_at = "
    "(SELECT r.next_at FROM recorded AS r WHERE r.id = delivery_queue.id) "
    "WHERE id = ANY(ARRAY(SELECT id FROM recorded WHERE state = 'pending'))) "
    "INSERT INTO delivery_attempts (delivery_id, at, host, status, error_class, error, "
    "latency_ms, snippet, worker) "
    "SELECT a.* FROM unnest($1::bigint[], $8::timestamptz[], $9::text[], $4::int[], "
    "$10::text[], $11::text[], $12::int[], $13::text[], $14::text[]) "
    "AS a(delivery_id, at, host, status, error_class, error, latency_ms, snippet, worker) "
    "WHERE a.delivery_id = ANY(ARRAY(SELECT id FROM recorded)) RETURNING delivery_id"
).format(wake=_wake_next("SELECT id FROM recorded WHERE state <> 'pending'"))
#: leases given back, each delivery due again at its time (by place in $1, as in _RECORD)
_RELEASE = (
    "WITH released AS (UPDATE deliveries AS d SET lease_until = NULL, lease_owner = NULL, "  # noqa: S608
    f"next_at = {_at('$2::timestamptz[]', 'd.id')} "
    "WHERE d.id = ANY($1::bigint[]) AND d.lease_owner = $3 RETURNING d.id) "
    f"UPDATE delivery_queue SET next_at = {_at('$2::timestamptz[]', 'delivery_queue.id')} "
    "WHERE id = ANY(ARRAY(SELECT id FROM released))"
)
#: outbox.claim's query, the hosts to skip as an array; the queue's rows locked with SKIP
#: LOCKED (workers never claim the same one) in a MATERIALIZED CTE: as a plain IN (subquery)
#: PostgreSQL may run the LIMIT ... SKIP LOCKED subquery again and update rows it never locked.
#: The queue's rows are due again when the lease ends; the leases are the deliveries'. Both
#: updates find their rows by primary key (``= ANY(ARRAY(...))``: as a join, a table never
#: analyzed was read whole into a hash).
_CLAIM = (
    "WITH due AS MATERIALIZED (SELECT cand.id FROM delivery_queue AS cand "
    "WHERE cand.next_at <= $1 "
    "AND NOT (EXISTS (SELECT 1 FROM delivery_queue AS earlier "
    "WHERE earlier.order_key = cand.order_key AND earlier.id < cand.id)) "
    "AND cand.host <> ALL($4::text[]) "
    "ORDER BY cand.next_at, cand.id LIMIT $5 FOR UPDATE OF cand SKIP LOCKED), "
    "queued AS (UPDATE delivery_queue SET next_at = $2, parked = false "
    "WHERE id = ANY(ARRAY(SELECT id FROM due))) "
    "UPDATE deliveries SET lease_until = $2, lease_owner = $3 "
    "WHERE id = ANY(ARRAY(SELECT id FROM due)) RETURNING deliveries.id, deliveries.webhook_id, "
    "deliveries.call_id, deliveries.seq, deliveries.event_type, deliveries.extension, "
    "deliveries.app_id, deliveries.method, deliveries.url, deliveries.host, "
    "deliveries.payload, deliveries.attempts, deliveries.expires_at"
)
#: by primary key; out of the queue
_EXPIRE = (  # noqa: S608
    "WITH expired AS (UPDATE deliveries SET state = $2, lease_until = NULL, lease_owner = NULL, "
    "last_error = $3, finished = $4 WHERE id = ANY($1::bigint[]) AND state = 'pending' "
    "RETURNING id), woken AS ({wake}) "
    "DELETE FROM delivery_queue WHERE id = ANY(ARRAY(SELECT id FROM expired))"
).format(wake=_wake_next("SELECT id FROM expired"))


class PostgresCycles:
    """Runs cycles for one worker on one PostgreSQL database (``close`` when it stops)."""

    def __init__(self, engine: AsyncEngine) -> None:
        options = asyncpg_options(engine)
        # the cycle's commits do not wait for the WAL to reach the disk (as the worker's
        # synchronous=NORMAL on SQLite; decision 0010): a crash of the server may undo the last
        # ones, so a delivery is sent again (at least once, the contract anyway); what ingest
        # acknowledged is not touched by this
        settings = {
            **options.get("server_settings", {}),
            "synchronous_commit": "off",
            **PLANNER,
        }
        self._conn = OwnConnection({**options, "server_settings": settings}, name="worker")

    async def cycle(
        self,
        owner: str,
        finished: Sequence[outbox.Finished],
        returns: Sequence[tuple[int, datetime]],
        claim: ClaimWanted | None,
    ) -> CycleDone:
        """One transaction. It is not tried again on a lost connection: what it recorded may
        have been committed, and the worker records again only what was not (leases)."""

        async def work(conn: asyncpg.Connection) -> CycleDone:
            done = CycleDone(kept=await record(conn, owner, finished))
            if returns:
                await release(conn, owner, returns)
            if claim is not None:
                started = time.monotonic()
                jobs = await claim_jobs(conn, owner, claim)
                done.slow_claim = time.monotonic() - started > outbox.SLOW_CLAIM
                done.expired = [job for job in jobs if job.expires_at <= claim.now]
                done.jobs = [job for job in jobs if job.expires_at > claim.now]
                if done.expired:
                    ids = [job.id for job in done.expired]
                    await conn.execute(_EXPIRE, ids, outbox.EXPIRED, EXPIRED_REASON, claim.now)
            return done

        return await self._conn.transaction(work)

    async def close(self) -> None:
        await self._conn.close()


async def record(
    conn: asyncpg.Connection, owner: str, finished: Sequence[outbox.Finished]
) -> list[bool]:
    """outbox.finish_attempts on PostgreSQL: for each attempt, False if its lease was lost
    meanwhile (then nothing of it is written)."""
    if not finished:
        return []
    rows = await conn.fetch(_RECORD, *record_arguments(owner, finished))
    kept = {row[0] for row in rows}
    return [f.job.id in kept for f in finished]


def record_arguments(owner: str, finished: Sequence[outbox.Finished]) -> list[Any]:
    """_RECORD's parameters for ``finished`` (at least one), in order."""
    ids, states, reasons, statuses, next_ats, ends = columns(
        [
            (job_id, state, reason, status, next_at, end)
            for state, reason, status, next_at, end, job_id in outbox.finish_rows(moment, finished)
        ]
    )
    _, at, host, _, error_class, error, latency, snippet, worker = columns(
        outbox.attempt_rows(moment, finished)
    )
    # $1-$6 the deliveries' columns, $7 the owner, $8-$14 the attempts' columns
    deliveries = [ids, states, reasons, statuses, next_ats, ends]
    return [*deliveries, owner, at, host, error_class, error, latency, snippet, worker]


async def release(
    conn: asyncpg.Connection, owner: str, returns: Sequence[tuple[int, datetime]]
) -> None:
    """Give leased deliveries back without an attempt, each due again at its time."""
    await conn.execute(_RELEASE, [i for i, _ in returns], [moment(at) for _, at in returns], owner)


async def claim_jobs(conn: asyncpg.Connection, owner: str, wanted: ClaimWanted) -> list[outbox.Job]:
    """Lease up to ``wanted.limit`` due deliveries, each the first unfinished one of its
    (url, call) (outbox.claim)."""
    rows = await conn.fetch(
        _CLAIM,
        wanted.now,
        wanted.now + wanted.lease,
        owner,
        list(wanted.skip_hosts),
        wanted.limit,
    )
    return sorted((outbox.Job(*row) for row in rows), key=lambda job: job.id)
