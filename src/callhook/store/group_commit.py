"""Group commit: many callers' writes in one transaction, one fsync.

Callers ``submit`` an item and wait for its result. One committer task takes everything that
is waiting, commits it with ``commit_all`` (one transaction) and answers every caller; items
submitted meanwhile form the next group. If a group fails, its items are retried one by one so
that one bad item fails only its own caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(self, commit_all: Callable[[Sequence[T]], Awaitable[list[R]]]) -> None:
        self._commit_all = commit_all
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._committer: asyncio.Future[None] | None = None

    async def submit(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._drain())
        # shielded: a caller that goes away must not cancel a commit others are waiting on
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        # the check that ends the loop and the task's end have no await between them, so an
        # item submitted after the last group always finds the task done and starts a new one
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await self._commit_group(group)
            except BaseException as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _commit_group(self, group: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._commit_all([item for item, _ in group])
        except Exception:
            if len(group) == 1:
                raise
            for item, done in group:
                try:
                    (result,) = await self._commit_all([item])
                    done.set_result(result)
                except Exception as exc:
                    done.set_exception(exc)
            return
        for (_, done), result in zip(group, results, strict=True):
            done.set_result(result)
