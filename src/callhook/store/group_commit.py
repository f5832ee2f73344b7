"""Group commit: many callers' writes in one transaction, one fsync (ingest's event batches,
the UnifiedAPI's Creates).

Callers ``submit`` an item and wait for its result. One committer task takes everything that
is waiting, commits it with ``commit_all`` (one transaction, a result per item) and answers the
whole group at once; items submitted meanwhile form the next group. If a group fails, its items
are committed again one by one, so that one bad item fails only its own caller.

All the callers of a group await one future (``Outcome``), completed once with the group's
results and what failed, and each reads its own place in it: a future and a shield per caller
cost two futures and two callbacks per item. A caller cancelled while it waits does not cancel
the group: ``Outcome`` refuses to be cancelled, so asyncio delivers the cancellation to that
caller when the commit is done (an item that may be committed is never reported as not
written while its commit runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

#: a group's results (one per item; None for a failed one) and its failures (None when nothing
#: failed, else one entry per item)
Answers = tuple[Sequence[Any], list[Exception | None] | None]


class Outcome(asyncio.Future[Answers]):
    """A group's answers, shared by its callers: a caller cancelled meanwhile cannot cancel it
    (asyncio's ``Task.cancel`` then cancels that caller once the answers are there)."""

    def cancel(self, msg: object = None) -> bool:
        return False


async def _commit_or_each(
    commit_all: Callable[[Sequence[Any]], Awaitable[Sequence[Any]]], items: list[Any]
) -> Answers:
    """``items`` committed together; if that fails, each alone, so that a bad one fails only
    its own caller (a group of one fails with its own error at once)."""
    try:
        return await commit_all(items), None
    except Exception as exc:
        if len(items) == 1:
            return [None], [exc]
    results: list[Any] = []
    failures: list[Exception | None] = []
    for item in items:
        try:
            (result,) = await commit_all([item])
        except Exception as exc:
            results.append(None)
            failures.append(exc)
        else:
            results.append(result)
            failures.append(None)
    return results, failures


def _finished(work: Coroutine[Any, Any, Answers]) -> Answers:
    """The answers of ``work`` run to its end on this thread, without an event loop: the
    committing thread's ``commit_all`` blocks instead of awaiting, so ``work`` never suspends
    (it is ``_commit_or_each``, shared with ``GroupCommit``)."""
    try:
        work.send(None)
    except StopIteration as done:
        answers: Answers = done.value
        return answers
    work.close()
    raise RuntimeError("a commit on the committing thread tried to wait for an event loop")


def _own(answers: Answers, index: int) -> Any:
    """The result of the group's item ``index``, or its failure raised."""
    results, failures = answers
    if failures is not None:
        failure = failures[index]
        if failure is not None:
            raise failure
    return results[index]


class GroupCommit(Generic[T, R]):
    def __init__(self, commit_all: Callable[[Sequence[T]], Awaitable[Sequence[R]]]) -> None:
        self._commit_all = commit_all
        self._items: list[T] = []
        self._outcome: Outcome | None = None
        self._committer: asyncio.Future[None] | None = None

    async def submit(self, item: T) -> R:
        """``item``'s result once it is committed (with the others of its group), or the
        reason it was not."""
        outcome = self._outcome
        if outcome is None:
            outcome = self._outcome = Outcome(loop=asyncio.get_running_loop())
            if self._committer is None or self._committer.done():
                self._committer = asyncio.ensure_future(self._drain())
        index = len(self._items)
        self._items.append(item)
        return cast(R, _own(await outcome, index))

    async def _drain(self) -> None:
        # the check that ends the loop and the task's end have no await between them, so an
        # item submitted after the last group always finds the task done and starts a new one
        while self._items:
            items, outcome = self._items, self._outcome
            self._items, self._outcome = [], None
            assert outcome is not None
            try:
                outcome.set_result(await self._commit_group(items))
            except BaseException as exc:
                if not outcome.done():
                    outcome.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _commit_group(self, items: list[T]) -> Answers:
        return await _commit_or_each(self._commit_all, items)


class _Job:
    """Items handed to the committing thread together, and their shared outcome."""

    __slots__ = ("items", "outcome")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: list[Any] = []
        self.outcome = Outcome(loop=loop)


class ThreadGroupCommit(Generic[T, R]):
    """Group commit driven by a thread of its own, for a driver that blocks (sqlite3).

    ``GroupCommit`` gathers a group on the event loop, has it committed, waits to hear it is
    done, then starts the next: with sqlite3 on a thread, each commit waited for two handovers
    between the threads (the thread taking the GIL back from the busy loop, the loop reaching
    the thread's callback) on top of its fsync, and the groups, answered together, came back
    together, so the loop and the commits took turns instead of working at once. Here the first
    item submitted while the thread is not committing wakes it, and the thread takes every item
    submitted until it gets to them (later ones form the next group), commits them with
    ``commit_all`` (one transaction, a result per item, on the thread) and goes on with the next
    group as soon as one is there: the commits run while the loop works on other requests.

    Each group's items share one future, answered from the thread with
    ``call_soon_threadsafe``. As ``GroupCommit``: a failed group is committed again item by
    item, and a caller cancelled while it waits is cancelled only once its item's commit is
    done. ``close`` (optional) runs on the thread once ``stop`` has been called and the groups
    handed over before it are done.
    """

    def __init__(
        self,
        commit_all: Callable[[Sequence[T]], Sequence[R]],
        *,
        name: str,
        close: Callable[[], None] | None = None,
    ) -> None:
        self._commit_all = commit_all
        self._close = close
        self._name = name
        #: the group items are added to, until the thread takes it (under ``_lock``)
        self._open: _Job | None = None
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None

    async def submit(self, item: T) -> R:
        """``item``'s result once it is committed (with the others of its group), or the
        reason it was not."""
        with self._lock:
            job = self._open
            if job is None:
                job = self._open = _Job(asyncio.get_running_loop())
                self._start()
                self._jobs.put(job)
            index = len(job.items)
            job.items.append(item)
        return cast(R, _own(await job.outcome, index))

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        """Commit what was handed over, run ``close`` on the thread, and end it."""
        if self._thread is None:
            if self._close is not None:
                self._close()
            return
        self._stopped = asyncio.get_running_loop().create_future()
        self._jobs.put(None)
        await asyncio.shield(self._stopped)

    # --- on the thread -----------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                with self._lock:  # items submitted from now on form the next group
                    if self._open is job:
                        self._open = None
                self._commit_job(job)
                del job
        finally:
            if self._close is not None:
                self._close()
            stopped = self._stopped
            if stopped is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    stopped.get_loop().call_soon_threadsafe(_settle, stopped, None)

    def _commit_job(self, job: _Job) -> None:
        try:
            answers = self._commit_group(job.items)
        except BaseException as exc:  # answered to the callers, then the thread ends
            self._answer(job, ([None] * len(job.items), [exc] * len(job.items)))  # type: ignore[list-item]
            raise
        self._answer(job, answers)

    def _commit_group(self, items: list[T]) -> Answers:
        async def commit_all(group: Sequence[T]) -> Sequence[R]:
            return self._commit_all(group)

        return _finished(_commit_or_each(commit_all, items))

    @staticmethod
    def _answer(job: _Job, answers: Answers) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            job.outcome.get_loop().call_soon_threadsafe(_settle, job.outcome, answers)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)
