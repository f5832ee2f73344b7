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
from collections.abc import Awaitable, Callable, Sequence
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
        results, failures = await outcome
        if failures is not None:
            failure = failures[index]
            if failure is not None:
                raise failure
        return cast(R, results[index])

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
        try:
            return await self._commit_all(items), None
        except Exception as exc:
            if len(items) == 1:
                return [None], [exc]
        results: list[R | None] = []
        failures: list[Exception | None] = []
        for item in items:
            try:
                (result,) = await self._commit_all([item])
            except Exception as exc:
                results.append(None)
                failures.append(exc)
            else:
                results.append(result)
                failures.append(None)
        return results, failures
