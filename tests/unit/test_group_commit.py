"""store.group_commit: items that arrive together (ingest's batches, the UnifiedAPI's Creates)
are committed together and answered from one future, each with its own result; a bad one fails
alone; a caller cancelled while it waits does not cancel the others."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import pytest

from callhook.store.group_commit import GroupCommit, ThreadGroupCommit


class Bad(Exception):
    pass


class Recorder:
    def __init__(self) -> None:
        self.commits: list[list[int]] = []
        self.gate: asyncio.Event | None = None

    async def commit_all(self, items: Sequence[int]) -> list[int]:
        """Each item's result is ten times the item."""
        self.commits.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if any(item < 0 for item in items):
            raise Bad(items)
        return [item * 10 for item in items]


async def test_items_of_one_turn_are_one_commit_and_the_next_ones_the_next() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.commit_all)
    rec.gate = asyncio.Event()
    first = [asyncio.ensure_future(group.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # the first group is committing: these wait for the next commit
    second = [asyncio.ensure_future(group.submit(n)) for n in range(10, 12)]
    await asyncio.sleep(0)
    assert rec.commits == [[0, 1, 2]]
    rec.gate.set()
    assert await asyncio.gather(*first, *second) == [0, 10, 20, 100, 110]
    assert rec.commits == [[0, 1, 2], [10, 11]]


async def test_a_bad_item_fails_only_its_own_submit() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.commit_all)
    results = await asyncio.gather(*(group.submit(n) for n in (1, -2, 3)), return_exceptions=True)
    assert results[0] == 10
    assert results[2] == 30
    assert isinstance(results[1], Bad)
    assert results[1].args == ([-2],)
    assert rec.commits == [[1, -2, 3], [1], [-2], [3]]
    # alone, a bad item fails with its own commit's error
    with pytest.raises(Bad):
        await group.submit(-4)


async def test_a_cancelled_submit_does_not_cancel_its_group() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.commit_all)
    rec.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(group.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    waiting[1].cancel()
    await asyncio.sleep(0)
    # the cancellation comes once the commit is done, not before
    assert not waiting[1].done()
    rec.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert results[0] == 0
    assert results[2] == 20
    assert isinstance(results[1], asyncio.CancelledError)
    assert rec.commits == [[0, 1, 2]]


async def test_a_commit_cancelled_fails_its_group_and_the_next_submit_starts_anew() -> None:
    rec = Recorder()
    group: GroupCommit[int, int] = GroupCommit(rec.commit_all)
    rec.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(group.submit(n)) for n in range(2)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert group._committer is not None
    group._committer.cancel()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    rec.gate.set()
    assert await group.submit(5) == 50
    assert rec.commits == [[0, 1], [5]]


# --- ThreadGroupCommit: the same promises, the commits on a thread of its own ------------------


class ThreadRecorder:
    """``commit_all`` for the thread: records each group, waits for ``gate`` if set."""

    def __init__(self) -> None:
        self.commits: list[list[int]] = []
        self.threads: set[str] = set()
        self.gate: threading.Event | None = None
        self.closed_on: str | None = None

    def commit_all(self, items: Sequence[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        self.commits.append(list(items))
        if self.gate is not None:
            self.gate.wait(5)
        if any(item < 0 for item in items):
            raise Bad(items)
        return [item * 10 for item in items]

    def close(self) -> None:
        self.closed_on = threading.current_thread().name


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_thread_items_submitted_while_a_group_commits_form_the_next_one() -> None:
    rec = ThreadRecorder()
    group: ThreadGroupCommit[int, int] = ThreadGroupCommit(
        rec.commit_all, name="test-commit", close=rec.close
    )
    rec.gate = threading.Event()
    first = asyncio.ensure_future(group.submit(1))
    await _until(lambda: len(rec.commits) == 1)
    # the thread is committing [1]: these wait, together, for the next commit
    later = [asyncio.ensure_future(group.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.05)
    assert rec.commits == [[1]]
    rec.gate.set()
    assert await asyncio.gather(first, *later) == [10, 20, 30, 40]
    assert rec.commits == [[1], [2, 3, 4]]
    assert rec.threads == {"test-commit"}
    await group.stop()
    assert rec.closed_on == "test-commit"


async def test_thread_a_bad_item_fails_only_its_own_submit() -> None:
    rec = ThreadRecorder()
    group: ThreadGroupCommit[int, int] = ThreadGroupCommit(rec.commit_all, name="test-commit")
    rec.gate = threading.Event()
    blocker = asyncio.ensure_future(group.submit(0))
    await _until(lambda: len(rec.commits) == 1)
    waiting = [asyncio.ensure_future(group.submit(n)) for n in (1, -2, 3)]
    await asyncio.sleep(0.01)
    rec.gate.set()
    results = await asyncio.gather(blocker, *waiting, return_exceptions=True)
    assert results[0] == 0
    assert results[1] == 10
    assert results[3] == 30
    assert isinstance(results[2], Bad)
    assert results[2].args == ([-2],)
    assert rec.commits[1:] == [[1, -2, 3], [1], [-2], [3]]
    await group.stop()


async def test_thread_a_cancelled_submit_is_cancelled_once_its_commit_is_done() -> None:
    rec = ThreadRecorder()
    group: ThreadGroupCommit[int, int] = ThreadGroupCommit(rec.commit_all, name="test-commit")
    rec.gate = threading.Event()
    waiting = asyncio.ensure_future(group.submit(7))
    await _until(lambda: len(rec.commits) == 1)
    waiting.cancel()
    await asyncio.sleep(0.05)
    assert not waiting.done()
    rec.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert rec.commits == [[7]]
    await group.stop()


async def test_thread_stop_commits_what_was_handed_over_then_closes() -> None:
    rec = ThreadRecorder()
    group: ThreadGroupCommit[int, int] = ThreadGroupCommit(
        rec.commit_all, name="test-commit", close=rec.close
    )
    pending = [asyncio.ensure_future(group.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    await group.stop()
    assert await asyncio.gather(*pending) == [0, 10, 20]
    assert rec.closed_on == "test-commit"
    # never started: stop closes at once, on the caller's thread
    idle = ThreadRecorder()
    unused: ThreadGroupCommit[int, int] = ThreadGroupCommit(
        idle.commit_all, name="test-commit", close=idle.close
    )
    await unused.stop()
    assert idle.closed_on == threading.current_thread().name
