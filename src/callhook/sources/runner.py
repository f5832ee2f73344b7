"""Running a PBX link: connect, follow, reconnect, and hand every call event to ingest.

``LinkRunner.run`` keeps one link to one PBX until told to stop:

1. open a session (connect, authenticate, subscribe); on failure wait with capped exponential
   backoff and jitter (1 s doubling to 30 s; back to 1 s after a connection that lasted);
2. ask the PBX for its live channels and reconcile: calls followed before the drop that the PBX
   no longer has get a ``call.ended`` marked reconstructed (their BYE came while the link was
   down), so nothing is left hanging;
3. feed every event to the protocol's mapper and queue the call events it makes;
4. every few seconds: close calls older than the maximum call age, save the link's status.

Call events go through ``IngestSink``: one task hands them to ingest in the order they were
made, in batches, and retries a failed batch (the database is down, say) until it is committed;
event ids make a retried batch idempotent. Nothing the PBX said is dropped while the process
runs; what was queued and not yet committed when it is killed is reconstructed on the next
start by ``reconcile`` for calls still live (as a hangup) and is lost otherwise (a start that
was never stored fires nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from callhook.domain.calls import CallEvent
from callhook.ingest import Ingest
from callhook.sources.link import ChannelsUnavailable, Link, LinkError, LinkLost, Mapper
from callhook.sources.spec import SourceSpec
from callhook.sources.status import HEARTBEAT, LinkStatus
from callhook.store import source_links
from callhook.store.database import writing
from callhook.store.sources import Source

log = logging.getLogger(__name__)

#: a connection that lasted this long resets the backoff
STABLE_AFTER = 30.0
BATCH = 500


class Backoff:
    """Capped exponential delays with jitter: 1, 2, 4 ... 30 s, each drawn from [d/2, d]."""

    def __init__(
        self, first: float = 1.0, cap: float = 30.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.first, self.cap, self.rng = first, cap, rng
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.cap, self.delay * 2)
        return delay * (0.5 + self.rng() / 2)

    def reset(self) -> None:
        self.delay = self.first


class IngestSink:
    """Call events to ingest, in order, retried until committed (never dropped)."""

    def __init__(self, ingest: Ingest, source: Source, *, retry: Backoff | None = None) -> None:
        self.ingest = ingest
        self.source = source
        self.retry = retry or Backoff(0.2, 10.0)
        self._queue: list[CallEvent] = []
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.committed = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def put(self, events: Sequence[CallEvent]) -> None:
        if events:
            self._queue.extend(events)
            self._idle.clear()
            self._ready.set()

    async def idle(self) -> None:
        """Wait until everything put so far is committed."""
        await self._idle.wait()

    async def run(self) -> None:
        """Until cancelled (cancel only once ``idle``, or queued events stay uncommitted)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch = self._queue[:BATCH]
                try:
                    await self.ingest.accept(self.source, batch)
                except Exception as exc:  # the database is down or locked: keep the events
                    delay = self.retry.next()
                    log.warning(
                        "source=%s could not store %d call events (%s); retrying in %.1f s",
                        self.source.name,
                        len(batch),
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                self.retry.reset()
                del self._queue[: len(batch)]
                self.committed += len(batch)
            self._idle.set()


class LinkRunner:
    def __init__(
        self,
        spec: SourceSpec,
        link: Link,
        mapper: Mapper,
        sink: IngestSink,
        engine: AsyncEngine,
        *,
        clock: Callable[[], datetime],
        on_change: Callable[[LinkStatus], None] = lambda _s: None,
        backoff: Backoff | None = None,
    ) -> None:
        self.spec = spec
        self.link = link
        self.mapper = mapper
        self.sink = sink
        self.engine = engine
        self.clock = clock
        self.on_change = on_change
        self.backoff = backoff or Backoff()
        self.status = LinkStatus(sink.source.id, spec.kind, spec.target)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the PBX until ``stop``; then wait (a few seconds at most) for the queued
        call events to be committed and report the link as disconnected."""
        sink = asyncio.create_task(self.sink.run(), name=f"sink-{self.spec.name}")
        beat = asyncio.create_task(self._heartbeat(stop), name=f"status-{self.spec.name}")
        follow = asyncio.create_task(self._follow(stop), name=f"link-{self.spec.name}")
        try:
            await stop.wait()
        finally:
            follow.cancel()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sink.idle(), 10)
            sink.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sink
            if self.status.connected:
                self.status.down(self.clock(), "stopped")
            await self._save()

    async def _follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = asyncio.get_running_loop().time()
            try:
                await self._session()
            except (LinkError, OSError, TimeoutError, EOFError) as exc:
                self._dropped(exc)
            except Exception as exc:  # a bug must not end the link for good: log, reconnect
                log.exception("source=%s link failed unexpectedly", self.spec.name)
                self._dropped(exc)
            if asyncio.get_running_loop().time() - started > STABLE_AFTER:
                self.backoff.reset()
            delay = self.backoff.next()
            log.info("source=%s reconnecting in %.1f s", self.spec.name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _session(self) -> None:
        session = await self.link.open()
        try:
            self.status.up(self.clock())
            log.info("source=%s connected to %s", self.spec.name, self.spec.describe())
            try:
                channels = await session.live_channels()
            except ChannelsUnavailable as exc:
                # follow anyway: what cannot be reconciled is closed by the maximum call age
                self.status.last_error = f"{exc}"[:500]
                self.status.last_error_at = self.clock()
                log.warning("source=%s not reconciled: %s", self.spec.name, exc)
            else:
                caught_up = self.mapper.reconcile(channels, self.clock())
                if caught_up:
                    log.info(
                        "source=%s connected: %d call events from the PBX's %d live channels "
                        "(calls that ended, were answered or began while the link was down)",
                        self.spec.name,
                        len(caught_up),
                        len(channels),
                    )
                self._emit(caught_up)
            await self._save()
            self.on_change(self.status)
            async for message in session.events():
                self.status.events += 1
                try:
                    made = self.mapper.feed(message, self.clock())
                except Exception:  # one odd event must not take the link down
                    log.exception("source=%s could not map an event; skipped", self.spec.name)
                    continue
                self._emit(made)
            raise LinkLost("the PBX closed the connection")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.close(), 2)

    def _emit(self, events: Sequence[CallEvent]) -> None:
        self.sink.put(events)
        self.status.tracked_calls = self.mapper.tracker.tracked

    def _dropped(self, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            reason = f"cannot reach {self.spec.target}: {exc.strerror or exc}"
        elif isinstance(exc, TimeoutError):
            reason = f"{self.spec.target} did not answer in time"
        self.status.down(self.clock(), reason)
        log.warning("source=%s link down: %s", self.spec.name, reason)
        self.on_change(self.status)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._emit(self.mapper.tracker.expire(self.clock()))
            await self._save()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT)

    async def _save(self) -> None:
        try:
            async with writing(self.engine) as conn:
                await source_links.save_link(conn, self.status.row(self.clock()))
        except Exception as exc:  # the status is best effort; the call events are not
            log.warning("source=%s could not save its status: %s", self.spec.name, exc)
