"""``python -m bench [NAME ...] [-- OPTIONS]``: run the named benchmarks (all by default)."""

from __future__ import annotations

import importlib
import sys

from bench.report import progress

#: name -> module; each module has ``main(argv: list[str]) -> None``
BENCHMARKS = {
    "e2e": "bench.e2e",
    "rules": "bench.rules",
    "api": "bench.api",
    "isolation": "bench.isolation",
    "durability": "bench.durability",
    "kamailio": "bench.kamailio",
    "sender": "bench.sender",
}


def main(argv: list[str]) -> None:
    names = [a for a in argv if not a.startswith("-")] or list(BENCHMARKS)
    options = [a for a in argv if a.startswith("-")]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    for name in names:
        progress(f"benchmark {name}")
        module = importlib.import_module(BENCHMARKS[name])
        module.main(options)


if __name__ == "__main__":
    main(sys.argv[1:])
