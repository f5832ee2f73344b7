"""The garbage collector in callhook's long-running processes (``serve``, ``worker``).

CPython's full collection walks every object that survived two younger ones: in a process that
has imported Starlette, SQLAlchemy, asyncpg and uvicorn and built its app, that is every module,
class and table definition, hundreds of thousands of objects that live as long as the process.
Each full collection took 40-80 ms there, in the middle of accepting events or sending
webhooks: one of them in a 10-second benchmark run was enough to put that run's p99 at 80-110
ms instead of 5 (bench/RESULTS.md item 22). ``settle`` moves what is alive once a process has
started out of the collector's sight (``gc.freeze``), so a full collection walks only what was
made since: requests, calls and deliveries in flight, caches.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Once a process has started (imports done, app and connections made): what is alive now
    lives as long as the process, so collections never walk it again. Garbage left from
    starting up is collected first."""
    gc.collect()
    gc.freeze()
