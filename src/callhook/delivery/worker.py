"""The worker loop: claim due deliveries, send them, record every attempt.

Isolation: at most ``per_host`` requests in flight to one host, and hosts whose circuit breaker
is open are not claimed, so a dead or slow receiver holds only its own deliveries (a tripped
breaker delays them; it never drops them). Order per (url, call) is kept by the claim query.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callhook.delivery.breaker import NOT_HOST_FAILURES, CircuitBreaker, counts_as_failure
from callhook.delivery.metrics import Metrics, result_label
from callhook.delivery.sender import AttemptResult, Sender
from callhook.domain.payloads import Timeouts, build_request, new_secret, sign_all, split_url
from callhook.domain.retry import Decision, Outcome, RetryPolicy, decide, parse_retry_after
from callhook.store import outbox, signing
from callhook.store.group_commit import GroupCommit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    concurrency: int = 64
    per_host: int = 8
    lease: timedelta = timedelta(seconds=90)
    batch: int = 100
    #: longest sleep when idle: bounds how late a retry or an expired lease is noticed
    idle_poll: float = 1.0
    secret_grace: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class _Finished:
    job: outbox.Job
    attempt: outbox.Attempt
    state: str
    next_at: datetime | None
    reason: str | None


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
    ) -> None:
        self.engine = engine
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
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._per_host: Counter[str] = Counter()
        self._backlog: dict[str, deque[outbox.Job]] = {}
        self._recorder: GroupCommit[_Finished, bool] = GroupCommit(self._record_all)
        self._secrets: dict[int | None, tuple[float, list[str]]] = {}

    def wake(self) -> None:
        """New deliveries were committed: look for work now instead of at the next poll."""
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; in-flight requests finish, leases are returned."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    claimed = await self._claim_and_start()
                except Exception as exc:
                    # the database went away or is busy: keep the worker alive, try again
                    log.warning("claiming deliveries failed, retrying: %s", exc)
                    claimed = 0
                if claimed:
                    continue
                self._kick.clear()
                kicked = asyncio.ensure_future(self._kick.wait())
                await asyncio.wait(
                    {kicked, stopping},
                    timeout=self.options.idle_poll,
                    return_when="FIRST_COMPLETED",
                )
                kicked.cancel()
        finally:
            stopping.cancel()
            waiting = [j.id for q in self._backlog.values() for j in q]
            self._backlog.clear()
            if self._inflight:
                await asyncio.gather(*self._inflight.values(), return_exceptions=True)
            if waiting:
                async with self.engine.begin() as conn:
                    await outbox.release(conn, waiting, self.name, self.clock())

    def _waiting(self) -> int:
        return len(self._inflight) + sum(len(q) for q in self._backlog.values())

    async def _claim_and_start(self) -> int:
        waiting = self._waiting()
        room = self.options.concurrency - waiting
        # claim in batches: a claim is a write (a commit), so not one per finished request
        if room <= 0 or (waiting and room < self.options.concurrency // 4):
            return 0
        now = self.clock()
        mono = time.monotonic()
        opened = self.breaker.open_hosts(mono)
        self.metrics.open_breakers.set(len(opened))
        busy = [h for h, n in self._per_host.items() if n >= self.options.per_host]
        to_start: list[outbox.Job] = []
        try:
            return await self._claim(now, mono, room, sorted({*busy, *opened}), to_start)
        except BaseException:
            for job in to_start:  # the claim was rolled back: free the slots it had taken
                self._per_host[job.host] -= 1
            raise

    async def _claim(
        self,
        now: datetime,
        mono: float,
        room: int,
        skip: list[str],
        to_start: list[outbox.Job],
    ) -> int:
        async with self.engine.begin() as conn:
            jobs = await outbox.claim(
                conn,
                now=now,
                owner=self.name,
                lease=self.options.lease,
                limit=min(room, self.options.batch),
                skip_hosts=skip,
            )
            # decide for every job before any await, then commit, and only then send: a
            # request that finished before the lease was committed could not be recorded
            # (its UPDATE would not see the lease yet)
            expired: list[outbox.Job] = []
            to_queue: list[outbox.Job] = []
            held_back: list[int] = []
            queued: Counter[str] = Counter()
            for job in jobs:
                host = job.host
                if job.expires_at <= now:
                    expired.append(job)
                elif self._per_host[host] >= self.options.per_host:
                    if len(self._backlog.get(host, ())) + queued[host] < self.options.per_host:
                        # over the host's cap: wait here, leased, for one of its slots
                        to_queue.append(job)
                        queued[host] += 1
                    else:
                        # a slow host must not fill this worker: back to the queue
                        held_back.append(job.id)
                elif not self.breaker.allows(host, mono):
                    held_back.append(job.id)
                else:
                    self._per_host[host] += 1  # the slot is taken now, the task starts below
                    to_start.append(job)
            for job in expired:
                await self._expire(conn, job)
            if held_back:
                # busy or broken hosts: back to the queue, still due; claims skip those hosts
                # until a slot frees up or the breaker lets a probe through
                await outbox.release(conn, held_back, self.name, now)
        for job in to_queue:
            self._backlog.setdefault(job.host, deque()).append(job)
        for job in to_start:
            self._inflight[job.id] = asyncio.ensure_future(self._deliver(job))
        return len(expired) + len(to_queue) + len(to_start)

    async def _expire(self, conn: AsyncConnection, job: outbox.Job) -> None:
        await outbox.finish_attempt(
            conn,
            job,
            None,
            state=outbox.EXPIRED,
            next_at=None,
            reason="expired before it could be sent",
        )
        self.metrics.deliveries.labels(outbox.EXPIRED).inc()

    def _start(self, job: outbox.Job) -> None:
        self._per_host[job.host] += 1
        self._inflight[job.id] = asyncio.ensure_future(self._deliver(job))

    async def _next_of(self, host: str) -> None:
        """A slot of ``host`` is free: start its next waiting job, or give them all back if
        its breaker has opened meanwhile."""
        queue = self._backlog.get(host)
        if not queue:
            self._backlog.pop(host, None)
            return
        if self.breaker.allows(host, time.monotonic()):
            self._start(queue.popleft())
            if not queue:
                del self._backlog[host]
            return
        jobs = list(queue)
        del self._backlog[host]
        now = self.clock()
        async with self.engine.begin() as conn:
            await outbox.release(conn, [j.id for j in jobs], self.name, now + timedelta(seconds=1))

    async def _deliver(self, job: outbox.Job) -> None:
        finished: _Finished | None = None
        try:
            finished, result = await self._attempt(job)
        except Exception:
            log.exception("delivery attempt crashed delivery_id=%s", job.webhook_id)
        finally:
            # the request is over: its host slot goes to the next delivery at once, while this
            # one's outcome is being recorded
            self._per_host[job.host] -= 1
            if self._per_host[job.host] <= 0:
                del self._per_host[job.host]
            try:
                await self._next_of(job.host)
            except Exception:
                log.exception("could not start the next delivery to %s", job.host)
        try:
            if finished is not None:
                kept = await self._recorder.submit(finished)
                self._observe(job, result, Outcome(finished.state), kept)
        except Exception:
            log.exception("recording an attempt failed delivery_id=%s", job.webhook_id)
        finally:
            self._inflight.pop(job.id, None)
            self._kick.set()

    async def _keys(self, app_id: int | None, now: datetime) -> list[str]:
        cached = self._secrets.get(app_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        async with self.engine.begin() as conn:
            keys = None
            if app_id is not None:
                grace = self.options.secret_grace
                keys = await signing.app_secrets(conn, app_id, new_secret, now, grace)
            if keys is None:
                keys = [await signing.instance_secret(conn, new_secret, now)]
        self._secrets[app_id] = (time.monotonic() + 5.0, keys)
        return keys

    async def _attempt(self, job: outbox.Job) -> tuple[_Finished, AttemptResult]:
        """Send one attempt and decide what follows (recording it is the caller's)."""
        url, timeouts = split_url(job.url, self.timeouts)
        now = self.clock()
        stamp = int(now.timestamp())
        keys = await self._keys(job.app_id, now)
        request = build_request(
            job.method,
            url,
            job.payload,
            webhook_id=job.webhook_id,
            timestamp=stamp,
            signatures=sign_all(keys, job.webhook_id, stamp, job.payload),
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
        finished = _Finished(
            job,
            attempt,
            decision.outcome.value,
            decision.next_at,
            None if decision.outcome is Outcome.DELIVERED else _reason(decision, result),
        )
        return finished, result

    def _observe(
        self, job: outbox.Job, result: AttemptResult, outcome: Outcome, kept: bool
    ) -> None:
        self.metrics.attempts.labels(result_label(result.status, result.error_class)).inc()
        self.metrics.latency.observe(result.latency_ms / 1000)
        if outcome is not Outcome.RETRY:
            self.metrics.deliveries.labels(outcome.value).inc()
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
                "outcome": outcome.value,
                "lease_lost": not kept,
            },
        )

    async def _record_all(self, finished: Sequence[_Finished]) -> list[bool]:
        """Attempts finished meanwhile, recorded in one transaction (group commit)."""
        async with self.engine.begin() as conn:
            return [
                await outbox.finish_attempt(
                    conn, f.job, f.attempt, state=f.state, next_at=f.next_at, reason=f.reason
                )
                for f in finished
            ]

    async def drain(self) -> None:
        """Wait for the requests in flight (used at shutdown)."""
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)


def _reason(decision: Decision, result: AttemptResult) -> str:
    """What the delivery log shows: the decision, with the error's own words when there is one."""
    return f"{decision.reason} ({result.error})" if result.error else decision.reason
