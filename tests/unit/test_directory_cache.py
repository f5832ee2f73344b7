"""The directory cache's rule: a value read before a flush is not kept after it."""

from __future__ import annotations

from callhook.store.directory_cache import DirectoryCache


def on() -> DirectoryCache:
    cache = DirectoryCache()
    cache.set_enabled(True)
    return cache


def test_kept_until_flushed() -> None:
    cache = on()
    cache.put("token", "h1", "alice", cache.generation)
    assert cache.get("token", "h1") == "alice"
    cache.flush()
    assert cache.get("token", "h1") is None


def test_a_value_read_across_a_flush_is_not_kept() -> None:
    """Read started, a change's notice flushed the cache, the read's (stale) value arrives."""
    cache = on()
    generation = cache.generation
    cache.flush()
    cache.put("token", "h1", "stale", generation)
    assert cache.get("token", "h1") is None
    cache.put("token", "h1", "fresh", cache.generation)
    assert cache.get("token", "h1") == "fresh"


def test_dropping_one_kind_keeps_the_others_but_not_reads_in_flight() -> None:
    cache = on()
    cache.put(("rules", 1), None, ("r1",), cache.generation)
    cache.put(("rules", 2), None, ("r2",), cache.generation)
    generation = cache.generation
    cache.drop(("rules", 1))
    assert cache.get(("rules", 1), None) is None
    assert cache.get(("rules", 2), None) == ("r2",)
    cache.put(("rules", 1), None, ("stale",), generation)
    assert cache.get(("rules", 1), None) is None


def test_nothing_kept_while_off_and_turning_on_or_off_drops_everything() -> None:
    cache = DirectoryCache()
    cache.put("token", "h1", "alice", cache.generation)
    assert cache.get("token", "h1") is None
    cache.set_enabled(True)
    cache.put("token", "h1", "alice", cache.generation)
    cache.set_enabled(False)
    assert cache.get("token", "h1") is None
    assert len(cache) == 0


def test_bounded() -> None:
    cache = DirectoryCache(max_entries=3)
    cache.set_enabled(True)
    for n in range(4):
        cache.put("account", n, n, cache.generation)
    assert len(cache) <= 3
    assert cache.get("account", 3) == 3


def test_limits_per_kind_and_on_the_number_of_kinds() -> None:
    cache = DirectoryCache(max_kinds=3, limits={"rules": 2})
    cache.set_enabled(True)
    for n in range(3):
        cache.put("rules", n, (n,), cache.generation)
        cache.put("token", n, n, cache.generation)
    assert len([n for n in range(3) if cache.get("rules", n) is not None]) <= 2
    assert all(cache.get("token", n) == n for n in range(3))
    cache.put(("rules", 1), None, (1,), cache.generation)
    cache.put(("rules", 2), None, (2,), cache.generation)  # a fourth kind: all emptied
    assert cache.get(("rules", 2), None) == (2,)
    assert cache.get("token", 0) is None
