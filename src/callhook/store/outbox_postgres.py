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

#: the worker's connection plans without bitmap scans and full sorts. With statistics that do
#: not know how many deliveries are due (a fresh database, a burst) PostgreSQL read every due
#: delivery, checked each for an earlier pending one and sorted them all to keep 60: 40 ms a
#: claim with 11,200 due. Without those two it walks the (state, next_at) index in order and
#: stops at the 60th (4-8 ms, as with fresh statistics); the cycle's other statements find
#: their rows by primary key and sort nothing (RESULTS.md item 14)
PLANNER = {"enable_bitmapscan": "off", "enable_sort": "off"}

#: each attempt recorded only while its delivery is pending and leased to this worker, and the
#: attempt's row inserted for those recorded; their ids come back. The rows are found by
#: primary key (``id = ANY``); the state is checked on each row found, written so that it names
#: no index: as ``state = 'pending'`` it matched the claim's index of pending deliveries, and
#: with statistics that did not know the backlog PostgreSQL walked all of it to find a cycle's
#: few rows (14 ms for 60 with 36,000 pending; 0.3 ms by primary key; RESULTS.md item 16)
_RECORD = (
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], "
    "$5::timestamptz[], $6::timestamptz[]) AS v(id, state, reason, status, next_at, finished)), "
    "recorded AS (UPDATE deliveries AS d SET state = v.state, lease_until = NULL, "
    "lease_owner = NULL, last_error = v.reason, attempts = d.attempts + 1, "
    "last_status = v.status, next_at = COALESCE(v.next_at, d.next_at), finished = v.finished "
    "FROM v WHERE d.id = ANY($1::bigint[]) AND d.id = v.id AND coalesce(d.state, '') = 'pending' "
    "AND d.lease_owner = $7 RETURNING d.id) "
    "INSERT INTO delivery_attempts (delivery_id, at, host, status, error_class, error, "
    "latency_ms, snippet, worker) "
    "SELECT a.* FROM unnest($1::bigint[], $8::timestamptz[], $9::text[], $4::int[], "
    "$10::text[], $11::text[], $12::int[], $13::text[], $14::text[]) "
    "AS a(delivery_id, at, host, status, error_class, error, latency_ms, snippet, worker) "
    "WHERE a.delivery_id IN (SELECT id FROM recorded) RETURNING delivery_id"
)
_RELEASE = (
    "UPDATE deliveries AS d SET lease_until = NULL, lease_owner = NULL, next_at = v.next_at "
    "FROM unnest($1::bigint[], $2::timestamptz[]) AS v(id, next_at) "
    "WHERE d.id = ANY($1::bigint[]) AND d.id = v.id AND d.lease_owner = $3"
)
#: outbox._claim_statement's query, the hosts to skip as an array; the rows locked with SKIP
#: LOCKED (workers never claim the same one) in a MATERIALIZED CTE: as a plain IN (subquery)
#: PostgreSQL may run the LIMIT ... SKIP LOCKED subquery again and update rows it never locked.
_CLAIM = (
    "WITH due AS MATERIALIZED (SELECT cand.id FROM deliveries AS cand "
    "WHERE cand.state = 'pending' AND cand.next_at <= $1 "
    "AND (cand.lease_until IS NULL OR cand.lease_until < $1) "
    "AND NOT (EXISTS (SELECT 1 FROM deliveries AS earlier "
    "WHERE earlier.order_key = cand.order_key AND earlier.id < cand.id "
    "AND earlier.state = 'pending')) "
    "AND cand.host <> ALL($4::text[]) "
    "ORDER BY cand.next_at, cand.id LIMIT $5 FOR UPDATE OF cand SKIP LOCKED) "
    "UPDATE deliveries SET lease_until = $2, lease_owner = $3 FROM due "
    "WHERE deliveries.id = due.id RETURNING deliveries.id, deliveries.webhook_id, "
    "deliveries.call_id, deliveries.seq, deliveries.event_type, deliveries.extension, "
    "deliveries.app_id, deliveries.method, deliveries.url, deliveries.host, "
    "deliveries.payload, deliveries.attempts, deliveries.expires_at"
)
#: by primary key, the state checked as in _RECORD
_EXPIRE = (
    "UPDATE deliveries SET state = $2, lease_until = NULL, lease_owner = NULL, "
    "last_error = $3, finished = $4 WHERE id = ANY($1::bigint[]) "
    "AND coalesce(state, '') = 'pending'"
)


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
