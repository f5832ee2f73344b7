"""The UnifiedAPI's Creates group-committed, a whole group answered from one future.

As ``group_commit.GroupCommit`` (ingest's): the rules of the Creates that arrive while a commit
runs are committed together by the next one, and a group that fails is retried rule by rule so
that one bad rule fails only its own Create. The difference is the waiting: ``GroupCommit``
gives each caller a future and a shield (two callbacks and two futures per Create); here all
the Creates of a group await one future (``Outcome``), which the group's commit completes once,
with what failed (None when nothing did), and each Create reads its own place in it.

A Create cancelled while it waits does not cancel the group's future: ``Outcome`` refuses to be
cancelled, so asyncio delivers the cancellation to that Create when the commit is done (a rule
that may be committed is not reported as not written).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

#: what a group's commit left failed: None when nothing did, else one entry per item
Failures = list[Exception | None] | None


class Outcome(asyncio.Future[Failures]):
    """A group's outcome, shared by its Creates: a Create cancelled meanwhile cannot cancel it
    (asyncio's ``Task.cancel`` then cancels that Create once the outcome is there)."""

    def cancel(self, msg: object = None) -> bool:
        return False


class CreateGroup(Generic[T]):
    def __init__(self, commit_all: Callable[[Sequence[T]], Awaitable[None]]) -> None:
        self._commit_all = commit_all
        self._items: list[T] = []
        self._outcome: Outcome | None = None
        self._committer: asyncio.Future[None] | None = None

    async def submit(self, item: T) -> None:
        """``item`` committed (with the others of its group), or the reason it was not."""
        outcome = self._outcome
        if outcome is None:
            outcome = self._outcome = Outcome(loop=asyncio.get_running_loop())
            if self._committer is None or self._committer.done():
                self._committer = asyncio.ensure_future(self._drain())
        index = len(self._items)
        self._items.append(item)
        failures = await outcome
        if failures is not None:
            failure = failures[index]
            if failure is not None:
                raise failure

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

    async def _commit_group(self, items: list[T]) -> Failures:
        try:
            await self._commit_all(items)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        else:
            return None
        failures: list[Exception | None] = []
        for item in items:
            try:
                await self._commit_all([item])
            except Exception as exc:
                failures.append(exc)
            else:
                failures.append(None)
        return failures
