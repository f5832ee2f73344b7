"""The worker loop: claim due deliveries, send them, record every attempt.

Claimed deliveries wait in this worker in one queue per receiver (host:port); at most
``per_host`` requests are in flight to one receiver and ``concurrency`` in all, and the worker
holds (in flight and queued) at most eight times ``concurrency``, and for one receiver at most
64 times ``per_host``. So a dead or slow receiver holds only its own deliveries (a tripped
breaker delays them; it never drops them), and a fast one is never waiting for a claim: its
queue is refilled in large batches while its requests run. Order per (url, call) is kept by the
claim query (the next delivery of a call to a URL is claimable only once the previous one is
recorded).

The worker's writes are cycles: one transaction records every attempt that finished since the
last one and claims more work, so a call's next delivery is claimable in the same transaction
that records its previous one, and the worker never waits on its own writes (on SQLite, one
writer at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callhook.delivery.breaker import NOT_HOST_FAILURES, CircuitBreaker, counts_as_failure
from callhook.delivery.metrics import Metrics, result_label
from callhook.delivery.sender import AttemptResult, Sender
from callhook.domain.payloads import (
    Timeouts,
    build_request,
    new_secret,
    sign_with,
    signing_key,
    split_url,
)
from callhook.domain.retry import Decision, Outcome, RetryPolicy, decide, parse_retry_after
from callhook.store import outbox, signing
from callhook.store.database import write_turn, writing
from callhook.store.outbox import EXPIRED_REASON, ClaimWanted, CycleDone
from callhook.store.outbox_postgres import PostgresCycles
from callhook.store.outbox_sqlite import SqliteCycles

log = logging.getLogger(__name__)

#: a claim slower than outbox.SLOW_CLAIM makes the worker refresh the database's statistics,
#: at most once per STATISTICS_EVERY seconds
STATISTICS_EVERY = 30.0


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    #: requests in flight, all receivers together
    concurrency: int = 64
    #: requests in flight to one receiver (host:port)
    per_host: int = 8
    lease: timedelta = timedelta(seconds=90)
    #: longest sleep when idle: bounds how late a retry or an expired lease is noticed
    idle_poll: float = 1.0
    secret_grace: timedelta = timedelta(hours=24)

    @property
    def holding(self) -> int:
        """Deliveries the worker holds at most, in flight and queued: enough that the requests
        of the next cycle are queued while this cycle's transaction runs."""
        return 8 * self.concurrency

    @property
    def batch(self) -> int:
        """Deliveries claimed at most in one cycle."""
        return 4 * self.concurrency

    @property
    def per_host_holding(self) -> int:
        """Deliveries of one receiver the worker holds at most; claims skip it beyond."""
        return min(self.holding, 64 * self.per_host)


@dataclass(frozen=True, slots=True)
class _Queued:
    job: outbox.Job
    #: time.monotonic() of the claim: a delivery waiting too long gives its lease back
    claimed: float


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(24):06x}"


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        sender: Sender,
        *,
        policy: RetryPolicy,
        timeouts: Timeouts,
        clock: Callable[[], datetime],
        metrics: Metrics,
        user_agent: str,
        options: WorkerOptions | None = None,
        breaker: CircuitBreaker | None = None,
        name: str | None = None,
        owns_engine: bool = False,
    ) -> None:
        self.engine = engine
        #: the engine was made for this worker: disposed when it stops
        self.owns_engine = owns_engine
        self.sender = sender
        self.policy = policy
        self.timeouts = timeouts
        self.clock = clock
        self.metrics = metrics
        self.user_agent = user_agent
        self.options = options or WorkerOptions()
        self.breaker = breaker or CircuitBreaker()
        self.name = name or worker_name()
        self._kick = asyncio.Event()
        #: the senders: each sends its receiver's queued deliveries one after another
        self._lanes: set[asyncio.Task[None]] = set()
        #: senders per receiver (at most ``per_host``)
        self._per_host: Counter[str] = Counter()
        #: requests in flight
        self._sending = 0
        #: a receiver with queued deliveries waits for a sender (all ``concurrency`` run)
        self._starved = False
        self._queues: dict[str, deque[_Queued]] = {}
        self._queued = 0
        #: leases to give back (host's breaker opened, waited too long), with when they are due
        self._returns: list[tuple[int, datetime]] = []
        self._analyzed = -STATISTICS_EVERY
        #: attempts made and not recorded yet (the next cycle records them)
        self._done: list[tuple[outbox.Finished, AttemptResult]] = []
        #: per app: until when (monotonic) its signing keys are good, and the keys
        self._secrets: dict[int | None, tuple[float, list[bytes]]] = {}
        #: per URL as stored: the URL to send and its timeouts
        self._urls: dict[str, tuple[str, Timeouts]] = {}
        #: on a SQLite file, cycles go straight through sqlite3 (outbox_sqlite); on PostgreSQL
        #: through asyncpg (outbox_postgres)
        self._direct: SqliteCycles | PostgresCycles | None = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            self._direct = SqliteCycles(database)
        elif engine.dialect.name == "postgresql":
            self._direct = PostgresCycles(engine)

    def wake(self) -> None:
        """New deliveries were committed: look for work now instead of at the next poll."""
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; in-flight requests finish, leases are returned."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._kick.clear()
                try:
                    busy = await self._cycle(claim=True)
                except Exception as exc:
                    # the database went away or is busy: keep the worker alive, try again
                    log.warning("recording or claiming deliveries failed, retrying: %s", exc)
                    busy = False
                if busy and not self._kick.is_set():
                    await asyncio.sleep(0)  # let the requests just started go out
                if busy:
                    continue
                kicked = asyncio.ensure_future(self._kick.wait())
                await asyncio.wait(
                    {kicked, stopping},
                    timeout=self.options.idle_poll,
                    return_when="FIRST_COMPLETED",
                )
                kicked.cancel()
        finally:
            stopping.cancel()
            now = self.clock()
            self._returns += [(q.job.id, now) for queue in self._queues.values() for q in queue]
            self._queues.clear()
            self._queued = 0
            if self._lanes:
                await asyncio.gather(*self._lanes, return_exceptions=True)
            try:
                await self._cycle(claim=False)
            finally:
                if self._direct is not None:
                    await self._direct.close()

    # --- one cycle: record, give back, claim -------------------------------------------------

    def _room(self) -> int:
        """How many more deliveries this worker may hold (in flight and queued)."""
        return self.options.holding - self._sending - self._queued

    def _held(self, host: str) -> int:
        return self._per_host[host] + len(self._queues.get(host, ()))

    async def _cycle(self, *, claim: bool) -> bool:
        """One transaction: record the finished attempts, return leases, claim more work.
        True when it did something (another cycle may find more)."""
        done, self._done = self._done, []
        returns, self._returns = self._returns, []
        room = self._room() if claim else 0
        if self._queued and room < self.options.batch // 2:
            # the senders have work queued: claim once a larger batch fits. A claim reads past
            # every delivery this worker holds (leased, still due): holding 512, claims of 60
            # cost 20 us of SQLite per delivery, claims of 256 10 us
            room = 0
        if not done and not returns and room <= 0:
            return False
        mono = time.monotonic()
        opened = self.breaker.open_hosts(mono)
        self.metrics.open_breakers.set(len(opened))
        most = self.options.per_host_holding
        # receivers with a full queue here are not claimed for: their deliveries stay free
        # for other workers (and their order), and a slow receiver cannot fill this worker
        full = [h for h in {*self._per_host, *self._queues} if self._held(h) >= most]
        wanted = None
        if room > 0:
            limit = min(room, self.options.batch)
            wanted = ClaimWanted(self.clock(), self.options.lease, limit, sorted({*full, *opened}))
        records = [f for f, _ in done]
        try:
            if isinstance(self._direct, SqliteCycles):
                async with write_turn(self.engine):
                    cycle = await self._direct.cycle(self.name, records, returns, wanted)
            elif self._direct is not None:
                cycle = await self._direct.cycle(self.name, records, returns, wanted)
            else:
                cycle = await self._transaction(records, returns, wanted)
        except BaseException:
            # nothing was written: these are recorded and returned by the next cycle
            self._done = done + self._done
            self._returns = returns + self._returns
            raise
        kept, jobs = cycle.kept, cycle.jobs
        for _ in cycle.expired:
            self.metrics.deliveries.labels(outbox.EXPIRED).inc()
        if cycle.slow_claim:
            await self._refresh_statistics()
        self._observe(done, kept)
        # a receiver's queue may pass its cap by one claim's worth: claims skip it from then on
        for job in jobs:
            self._queues.setdefault(job.host, deque()).append(_Queued(job, mono))
            self._queued += 1
        self._pump()
        return bool(done or returns or jobs or cycle.expired)

    async def _transaction(
        self,
        finished: list[outbox.Finished],
        returns: list[tuple[int, datetime]],
        wanted: ClaimWanted | None,
    ) -> CycleDone:
        """The cycle's transaction through the engine (SQLite in memory)."""
        cycle = CycleDone()
        async with writing(self.engine) as conn:
            cycle.kept = await outbox.finish_attempts(conn, self.name, finished)
            for due in sorted({at for _, at in returns}):
                ids = [job_id for job_id, at in returns if at == due]
                await outbox.release(conn, ids, self.name, due)
            if wanted is not None:
                started = time.monotonic()
                jobs = await outbox.claim(
                    conn,
                    now=wanted.now,
                    owner=self.name,
                    lease=wanted.lease,
                    limit=wanted.limit,
                    skip_hosts=wanted.skip_hosts,
                )
                cycle.slow_claim = time.monotonic() - started > outbox.SLOW_CLAIM
                # decide for every job before any await, then commit, and only then send: a
                # request that finished before the lease was committed could not be recorded
                # (its UPDATE would not see the lease yet)
                cycle.expired = [job for job in jobs if job.expires_at <= wanted.now]
                cycle.jobs = [job for job in jobs if job.expires_at > wanted.now]
                for job in cycle.expired:
                    await self._expire(conn, job)
        return cycle

    async def _refresh_statistics(self) -> None:
        """A claim was slow: the database's statistics may be stale (see outbox)."""
        mono = time.monotonic()
        if mono - self._analyzed < STATISTICS_EVERY or self.engine.dialect.name != "postgresql":
            return
        self._analyzed = mono
        log.info("claiming was slow: refreshing the outbox's statistics")
        async with self.engine.begin() as conn:
            await outbox.refresh_statistics(conn)

    async def _expire(self, conn: AsyncConnection, job: outbox.Job) -> None:
        await outbox.finish_attempt(
            conn, job, None, state=outbox.EXPIRED, next_at=None, reason=EXPIRED_REASON
        )

    # --- sending -----------------------------------------------------------------------------

    def _pump(self, after: str | None = None) -> None:
        """Start senders for the receivers with queued deliveries while they and the worker
        have free slots (``after``: a receiver whose sender just stopped goes last)."""
        self._starved = False
        hosts = list(self._queues)
        if after is not None and after in self._queues:
            hosts.remove(after)
            hosts.append(after)
        for host in hosts:
            # a sender for each queued delivery, as far as the slots go (a sender that finds
            # the queue emptied by the others meanwhile stops at once)
            wanted = len(self._queues[host])
            while wanted > 0 and self._per_host[host] < self.options.per_host:
                if len(self._lanes) >= self.options.concurrency:
                    self._starved = True
                    return
                self._per_host[host] += 1
                self._lanes.add(asyncio.ensure_future(self._lane(host)))
                wanted -= 1

    def _next(self, host: str) -> outbox.Job | None:
        """The next delivery to send to ``host``, or None when there is none to send now."""
        queue = self._queues.get(host)
        if queue is None:
            return None
        mono = time.monotonic()
        patience = self.options.lease.total_seconds() / 3
        job = None
        while queue:
            if not self.breaker.allows(host, mono):
                # the receiver's breaker opened: its deliveries go back, due when it may
                # be probed again (another worker may take them then)
                due = self.clock() + timedelta(seconds=1)
                self._returns += [(q.job.id, due) for q in queue]
                self._queued -= len(queue)
                queue.clear()
                self._kick.set()
                break
            item = queue.popleft()
            self._queued -= 1
            if mono - item.claimed > patience:
                # waited here for a third of its lease: give it back rather than risk
                # sending it after the lease ends (another worker may have it by then)
                self._returns.append((item.job.id, self.clock()))
                self._kick.set()
                continue
            job = item.job
            break
        if not queue:
            del self._queues[host]
        return job

    async def _lane(self, host: str) -> None:
        """Send ``host``'s queued deliveries one after another until there are none (or
        another receiver waits for a sender)."""
        try:
            while (job := self._next(host)) is not None:
                self._sending += 1
                try:
                    attempt = await self._attempt(job)
                    self._done.append(attempt)  # the list of now: a cycle may have taken the old
                except Exception:
                    log.exception("delivery attempt crashed delivery_id=%s", job.webhook_id)
                finally:
                    # the request is over: the next cycle records it (the next delivery of this
                    # call to this URL is claimable then)
                    self._sending -= 1
                    self._kick.set()
                if self._starved:
                    break
        finally:
            self._per_host[host] -= 1
            if self._per_host[host] <= 0:
                del self._per_host[host]
            lane = asyncio.current_task()
            if lane is not None:
                self._lanes.discard(lane)
            self._pump(after=host)

    async def _keys(self, app_id: int | None, now: datetime) -> list[bytes]:
        cached = self._secrets.get(app_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        async with writing(self.engine) as conn:
            keys = None
            if app_id is not None:
                grace = self.options.secret_grace
                keys = await signing.app_secrets(conn, app_id, new_secret, now, grace)
            if keys is None:
                keys = [await signing.instance_secret(conn, new_secret, now)]
        decoded = [signing_key(key) for key in keys]
        self._secrets[app_id] = (time.monotonic() + 5.0, decoded)
        return decoded

    def _split(self, url: str) -> tuple[str, Timeouts]:
        known = self._urls.get(url)
        if known is None:
            if len(self._urls) >= 4096:
                self._urls.clear()
            known = self._urls[url] = split_url(url, self.timeouts)
        return known

    async def _attempt(self, job: outbox.Job) -> tuple[outbox.Finished, AttemptResult]:
        """Send one attempt and decide what follows (recording it is the caller's)."""
        url, timeouts = self._split(job.url)
        now = self.clock()
        stamp = int(now.timestamp())
        cached = self._secrets.get(job.app_id)
        if cached is not None and cached[0] > time.monotonic():
            keys = cached[1]
        else:
            keys = await self._keys(job.app_id, now)
        request = build_request(
            job.method,
            url,
            job.payload,
            webhook_id=job.webhook_id,
            timestamp=stamp,
            signatures=sign_with(keys, job.webhook_id, stamp, job.payload),
            seq=job.seq,
            user_agent=self.user_agent,
        )
        result = await self.sender.send(request, timeouts)
        done = self.clock()
        if result.error_class not in NOT_HOST_FAILURES:
            failed = counts_as_failure(result.status, result.error_class)
            self.breaker.record(job.host, not failed, time.monotonic())
        decision = decide(
            self.policy,
            attempts=job.attempts + 1,
            status=result.status,
            error_class=result.error_class,
            retry_after=parse_retry_after(result.retry_after, done),
            now=done,
            expires_at=job.expires_at,
            max_attempts=timeouts.max_attempts,
            jitter=random.random(),
        )
        attempt = outbox.Attempt(
            at=now,
            host=job.host,
            status=result.status,
            error_class=result.error_class,
            error=result.error,
            latency_ms=round(result.latency_ms),
            snippet=result.snippet,
            worker=self.name,
        )
        finished = outbox.Finished(
            job,
            attempt,
            decision.outcome.value,
            decision.next_at,
            None if decision.outcome is Outcome.DELIVERED else _reason(decision, result),
        )
        return finished, result

    def _observe(self, done: list[tuple[outbox.Finished, AttemptResult]], kept: list[bool]) -> None:
        """Metrics and the log line of the attempts a cycle recorded."""
        results: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        latency = self.metrics.latency
        for finished, result in done:
            results[result_label(result.status, result.error_class)] += 1
            latency.observe(result.latency_ms / 1000)
            if finished.state != Outcome.RETRY:
                outcomes[finished.state] += 1
        for label, n in results.items():
            self.metrics.attempts.labels(label).inc(n)
        for label, n in outcomes.items():
            self.metrics.deliveries.labels(label).inc(n)
        if not log.isEnabledFor(logging.INFO):
            return
        for (finished, result), was_kept in zip(done, kept, strict=True):
            job = finished.job
            log.info(
                "delivery attempt",
                extra={
                    "delivery_id": job.webhook_id,
                    "call_id": job.call_id,
                    "seq": job.seq,
                    "url_host": job.host,
                    "status": result.status,
                    "error": result.error_class,
                    "ms": round(result.latency_ms),
                    "outcome": finished.state,
                    "lease_lost": not was_kept,
                },
            )

    async def drain(self) -> None:
        """Wait for the requests in flight (used at shutdown)."""
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._lanes, return_exceptions=True)


def _reason(decision: Decision, result: AttemptResult) -> str:
    """What the delivery log shows: the decision, with the error's own words when there is one."""
    return f"{decision.reason} ({result.error})" if result.error else decision.reason
