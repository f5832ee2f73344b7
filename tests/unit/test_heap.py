"""heap.settle: what is alive once a process has started is out of the collector's walks."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from callhook import heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_settle_freezes_what_lives_and_collects_garbage_first(unfrozen: None) -> None:
    alive = _Node()
    garbage = weakref.ref(_Node())  # a cycle nobody holds: left over from starting up
    assert garbage() is not None
    heap.settle()
    assert garbage() is None  # collected, not frozen
    assert gc.get_freeze_count() > 0
    # the object that lives is frozen: no generation the collector walks holds it
    assert not any(o is alive for g in range(3) for o in gc.get_objects(g))
    # what is made afterwards is collected as before
    _Node()
    assert gc.collect() > 0
