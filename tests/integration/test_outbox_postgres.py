"""The worker's cycle on PostgreSQL (store/outbox_postgres.py), against a real database:
attempts recorded only while their lease is held, a call's deliveries claimed one after
another, leases given back, late deliveries expired, and the worker's commits not waiting for
the disk while ingest's do."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from callhook.service import utcnow
from callhook.sources.registry import SourceRegistry
from callhook.store import outbox, outbox_postgres
from callhook.store.database import asyncpg_options
from callhook.store.outbox import ClaimWanted
from callhook.store.outbox_postgres import PostgresCycles
from callhook.wiring import Components, build
from tests.conftest import World
from tests.databases import plan_nodes
from tests.integration.ingesting import settings_for
from tests.integration.test_engine import ALICE, answered_call, rule

pytestmark = pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)

URL = "http://127.0.0.1:9/hook"
LEASE = timedelta(seconds=60)


@pytest.fixture
async def components(database_url: str, tmp_path: Path) -> AsyncIterator[Components]:
    built = build(settings_for(tmp_path / "data", database_url))
    yield built
    await built.close()


@pytest.fixture
async def cycles(components: Components) -> AsyncIterator[PostgresCycles]:
    made = PostgresCycles(components.engine)
    yield made
    await made.close()


@pytest.fixture
async def sql(components: Components) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(**asyncpg_options(components.engine))
    yield conn
    await conn.close()


async def _calls(world: World, client: httpx.AsyncClient, components: Components, n: int) -> None:
    """``n`` answered calls to alice: 3 deliveries each, to one URL."""
    for etype in (0, 2, 3):
        await rule(world, "alice", ALICE, etype, URL)
    token = (await SourceRegistry(components.engine).create("pbx")).token
    body = [e for i in range(n) for e in answered_call(f"c-{i}")]
    response = await client.post(
        "/callhook/v1/call-events", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 202, response.text


def _finished(job: outbox.Job, owner: str, status: int = 204) -> outbox.Finished:
    now = utcnow()
    attempt = outbox.Attempt(now, job.host, status, None, None, 3, "", owner)
    return outbox.Finished(job, attempt, outbox.DELIVERED, None, None)


def _wanted(limit: int = 100, skip: tuple[str, ...] = ()) -> ClaimWanted:
    return ClaimWanted(utcnow(), LEASE, limit, skip)


async def test_a_calls_deliveries_are_claimed_one_after_another(
    world: World,
    client: httpx.AsyncClient,
    components: Components,
    cycles: PostgresCycles,
    sql: asyncpg.Connection,
) -> None:
    await _calls(world, client, components, 4)
    first = await cycles.cycle("w1", [], [], _wanted())
    assert sorted(job.seq for job in first.jobs) == [1, 1, 1, 1]
    assert not first.expired
    # leased: another worker finds nothing; the next of each call waits for the first
    assert (await cycles.cycle("w2", [], [], _wanted())).jobs == []
    done = [_finished(job, "w1") for job in first.jobs]
    second = await cycles.cycle("w1", done, [], _wanted())
    assert second.kept == [True] * 4
    assert sorted(job.seq for job in second.jobs) == [2, 2, 2, 2]
    # a receiver left out is not claimed for
    skipped = await cycles.cycle(
        "w1", [_finished(j, "w1") for j in second.jobs], [], _wanted(skip=("127.0.0.1:9",))
    )
    assert skipped.kept == [True] * 4
    assert skipped.jobs == []


async def test_an_attempt_is_recorded_only_while_its_lease_is_held(
    world: World,
    client: httpx.AsyncClient,
    components: Components,
    cycles: PostgresCycles,
    sql: asyncpg.Connection,
) -> None:
    await _calls(world, client, components, 3)
    jobs = (await cycles.cycle("w1", [], [], _wanted())).jobs
    lost, *held = jobs
    await sql.execute("UPDATE deliveries SET lease_owner = 'w2' WHERE id = $1", lost.id)
    done = await cycles.cycle("w1", [_finished(job, "w1") for job in jobs], [], None)
    assert done.kept == [False, True, True]
    rows = {
        row["id"]: row
        for row in await sql.fetch("SELECT id, state, attempts, lease_owner FROM deliveries")
    }
    assert (rows[lost.id]["state"], rows[lost.id]["attempts"]) == ("pending", 0)
    assert rows[lost.id]["lease_owner"] == "w2"
    for job in held:
        assert (rows[job.id]["state"], rows[job.id]["attempts"]) == ("delivered", 1)
        assert rows[job.id]["lease_owner"] is None
    logged = await sql.fetch("SELECT delivery_id, status, worker FROM delivery_attempts")
    assert sorted((r["delivery_id"], r["status"], r["worker"]) for r in logged) == sorted(
        (job.id, 204, "w1") for job in held
    )
    # recorded again (a cycle whose commit was in doubt): nothing changes
    again = await cycles.cycle("w1", [_finished(job, "w1") for job in held], [], None)
    assert again.kept == [False, False]
    assert await sql.fetchval("SELECT count(*) FROM delivery_attempts") == 2


async def test_leases_given_back_are_due_again_and_late_ones_expire(
    world: World,
    client: httpx.AsyncClient,
    components: Components,
    cycles: PostgresCycles,
    sql: asyncpg.Connection,
) -> None:
    await _calls(world, client, components, 2)
    jobs = (await cycles.cycle("w1", [], [], _wanted())).jobs
    later = utcnow() + timedelta(minutes=5)
    await cycles.cycle("w1", [], [(job.id, later) for job in jobs], None)
    rows = await sql.fetch(
        "SELECT lease_owner, next_at FROM deliveries WHERE id = ANY($1::bigint[])",
        [job.id for job in jobs],
    )
    assert all(row["lease_owner"] is None and row["next_at"] == later for row in rows)
    assert (await cycles.cycle("w1", [], [], _wanted())).jobs == []  # not due yet
    await sql.execute("UPDATE deliveries SET next_at = now(), expires_at = now()")
    await sql.execute("UPDATE delivery_queue SET next_at = now()")
    expired = await cycles.cycle("w1", [], [], _wanted())
    assert expired.jobs == []
    assert sorted(job.id for job in expired.expired) == sorted(job.id for job in jobs)
    states = await sql.fetch(
        "SELECT state, last_error FROM deliveries WHERE id = ANY($1::bigint[])",
        [job.id for job in jobs],
    )
    assert {(r["state"], r["last_error"]) for r in states} == {
        (outbox.EXPIRED, outbox.EXPIRED_REASON)
    }


async def test_the_workers_commits_do_not_wait_for_the_disk_and_ingests_do(
    components: Components, cycles: PostgresCycles
) -> None:
    async def setting(conn: asyncpg.Connection) -> str:
        value: str = await conn.fetchval("SHOW synchronous_commit")
        return value

    assert await cycles._conn.transaction(setting) == "off"
    assert components.ingest._postgres is not None
    assert await components.ingest._postgres.transaction(setting) == "on"


async def test_a_lease_that_ran_out_is_claimed_by_another_worker(
    world: World,
    client: httpx.AsyncClient,
    components: Components,
    cycles: PostgresCycles,
    sql: asyncpg.Connection,
) -> None:
    """A worker that died holds its leases until they end; then they are due again."""
    await _calls(world, client, components, 2)
    jobs = (await cycles.cycle("w1", [], [], _wanted())).jobs
    assert (await cycles.cycle("w2", [], [], _wanted())).jobs == []
    await sql.execute(
        "UPDATE deliveries SET lease_until = now() - interval '1 second' WHERE lease_owner = 'w1'"
    )
    await sql.execute(  # in the queue, a leased delivery is due when its lease ends
        "UPDATE delivery_queue SET next_at = now() - interval '1 second' "
        "WHERE id IN (SELECT id FROM deliveries WHERE lease_owner = 'w1')"
    )
    taken = (await cycles.cycle("w2", [], [], _wanted())).jobs
    assert sorted(job.id for job in taken) == sorted(job.id for job in jobs)
    # the first worker's late records no longer count
    late = await cycles.cycle("w1", [_finished(job, "w1") for job in jobs], [], None)
    assert late.kept == [False, False]


async def _backlog(sql: asyncpg.Connection, n: int) -> None:
    """``n`` pending deliveries, due now, each with an order key of its own (none waits for
    another); the table is not analyzed."""
    await sql.execute(
        "INSERT INTO deliveries (webhook_id, call_ref, call_id, seq, event_type, extension, "
        "owner_path, rule_id, method, url, host, order_key, payload, state, attempts, next_at, "
        "expires_at, created) "
        "SELECT 'msg_' || n, (SELECT min(id) FROM calls), 'c', 1, 0, '210', '/', 'r', 1, "
        "'http://127.0.0.1:9/hook', '127.0.0.1:9', 'k' || n, '', 'pending', 0, now(), "
        "now() + interval '1 hour', now() FROM generate_series(1, $1::int) AS n",
        n,
    )
    await sql.execute(
        "INSERT INTO delivery_queue (id, order_key, host, next_at) "
        "SELECT id, order_key, host, next_at FROM deliveries WHERE state = 'pending' "
        "ON CONFLICT DO NOTHING"
    )


async def test_the_claim_walks_the_due_index_in_order_on_a_table_never_analyzed(
    world: World,
    client: httpx.AsyncClient,
    components: Components,
    cycles: PostgresCycles,
    sql: asyncpg.Connection,
) -> None:
    """With statistics that do not know how many deliveries are due, PostgreSQL read all of
    them and sorted them to keep a claim's few (RESULTS.md item 14). The worker's connection
    must plan the claim as an ordered walk of the queue's (next_at, id) index that stops
    early."""
    await _calls(world, client, components, 1)
    await _backlog(sql, 20000)
    now = utcnow()

    async def plan(conn: asyncpg.Connection) -> Any:
        raw = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + outbox_postgres._CLAIM, now, now + LEASE, "w", [], 60
        )
        return json.loads(raw)[0]["Plan"]

    nodes = plan_nodes(await cycles._conn.transaction(plan))
    assert ("Index Scan", "delivery_queue") in nodes, nodes
    assert not any(node in ("Sort", "Bitmap Heap Scan", "Seq Scan") for node, _ in nodes), nodes
    assert len((await cycles.cycle("w1", [], [], _wanted(limit=60))).jobs) == 60


def _scans(plan: Any) -> list[tuple[str, str, str]]:
    """(node type, relation, index) of every node of an EXPLAIN (FORMAT JSON) plan."""
    found = [(plan["Node Type"], plan.get("Relation Name", ""), plan.get("Index Name", ""))]
    for child in plan.get("Plans", ()):
        found.extend(_scans(child))
    return found


async def test_the_record_and_the_expiry_find_their_rows_by_primary_key_behind_a_backlog(
    world: World,
    client: httpx.AsyncClient,
    components: Components,
    cycles: PostgresCycles,
    sql: asyncpg.Connection,
) -> None:
    """With statistics that did not know the backlog, PostgreSQL walked the whole index of
    pending deliveries to find the few a cycle records or expires (RESULTS.md item 16). The
    worker's connection must find them by primary key, whatever the table holds."""
    await _calls(world, client, components, 1)
    await _backlog(sql, 20000)
    jobs = (await cycles.cycle("w", [], [], _wanted(limit=5))).jobs
    assert len(jobs) == 5
    pending = await sql.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'")
    ids = [job.id for job in jobs]
    attempts = [_finished(job, "w") for job in jobs]
    now = utcnow()

    async def plans(conn: asyncpg.Connection) -> tuple[Any, Any]:
        record = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + outbox_postgres._RECORD,
            *outbox_postgres.record_arguments("w", attempts),
        )
        expire = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + outbox_postgres._EXPIRE,
            ids,
            outbox.EXPIRED,
            outbox.EXPIRED_REASON,
            now,
        )
        return json.loads(record)[0]["Plan"], json.loads(expire)[0]["Plan"]

    for plan in await cycles._conn.transaction(plans):
        nodes = _scans(plan)
        scans = [node for node in nodes if node[1] == "deliveries" and node[0] != "ModifyTable"]
        # (a second one: the next delivery woken takes its own next attempt)
        assert scans, nodes
        assert set(scans) == {("Index Scan", "deliveries", "pk_deliveries")}, nodes
        # and their rows of the queue by its primary key (the next of each call by its order)
        queue = {n for n in nodes if n[1] == "delivery_queue" and n[0] != "ModifyTable"}
        assert {kind for kind, _, _ in queue} <= {"Index Scan", "Index Only Scan"}, nodes
        assert {index for _, _, index in queue} <= {
            "pk_delivery_queue",
            "ix_delivery_queue_order_key",
        }, nodes
    # and the record records, behind the backlog as in front of it
    done = await cycles.cycle("w", attempts, [], None)
    assert done.kept == [True] * 5
    recorded = await sql.fetch(
        "SELECT state, attempts, lease_owner FROM deliveries WHERE id = ANY($1::bigint[])", ids
    )
    assert [tuple(row) for row in recorded] == [(outbox.DELIVERED, 1, None)] * 5
    assert await sql.fetchval("SELECT count(*) FROM delivery_attempts") == 5
    assert await sql.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'") == (
        pending - 5
    )
