"""An in-process cache of what the UnifiedAPI looks up on every request: tokens (by their hash,
never the token itself), accounts, extensions and the rules of an extension; flushed whole on
a change to the directory, one extension's rules on a change to them.

Whoever fills it follows one rule, which makes a flush that races a lookup safe: take
``generation`` before reading the database and ``put`` with it afterwards. A flush between the
two (a change committed while the read ran, whose notice came meanwhile) changes the
generation, and the possibly stale value is not kept. While ``enabled`` is False (no notices
can arrive: the listening connection is down) nothing is kept and every lookup goes to the
database.
"""

from __future__ import annotations

from typing import Any

#: entries of one kind at most; past that the kind is emptied (a directory that large is
#: looked up from the database, still correctly)
MAX_ENTRIES = 100_000
#: kinds at most (one per extension for the rules on PostgreSQL); past that all is emptied
MAX_KINDS = 2_000


class DirectoryCache:
    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        *,
        max_kinds: int = MAX_KINDS,
        limits: dict[Any, int] | None = None,
    ) -> None:
        """``limits``: a smaller ``max_entries`` for some kinds."""
        self.max_entries = max_entries
        self.max_kinds = max_kinds
        self.limits = limits or {}
        self.generation = 0
        self.enabled = False
        self.flushes = 0
        self._maps: dict[Any, dict[Any, Any]] = {}

    def get(self, kind: Any, key: Any) -> Any | None:
        found = self._maps.get(kind)
        return None if found is None else found.get(key)

    def put(self, kind: Any, key: Any, value: Any, generation: int) -> None:
        """Keep ``value`` if the cache is on and nothing changed since ``generation`` was taken."""
        if not self.enabled or generation != self.generation or value is None:
            return
        if kind not in self._maps and len(self._maps) >= self.max_kinds:
            self._maps = {}
        entries = self._maps.setdefault(kind, {})
        if len(entries) >= self.limits.get(kind, self.max_entries):
            entries.clear()
        entries[key] = value

    def flush(self) -> None:
        self._maps = {}
        self.generation += 1
        self.flushes += 1

    def drop(self, kind: Any) -> None:
        """Forget the entries of one kind (values being read meanwhile are not kept either)."""
        self._maps.pop(kind, None)
        self.generation += 1

    def set_enabled(self, enabled: bool) -> None:
        """Turn keeping on or off; either way what is held is dropped (it may be stale)."""
        self.enabled = enabled
        self.flush()

    def __len__(self) -> int:
        return sum(len(m) for m in self._maps.values())
