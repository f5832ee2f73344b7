"""JSON answers: Starlette's ``JSONResponse``, the body made by one encoder kept for the process
and the headers listed directly.

``JSONResponse`` renders with ``json.dumps(content, ensure_ascii=False, allow_nan=False,
indent=None, separators=(",", ":"))``, which makes a new ``JSONEncoder`` for every answer
(``json.dumps`` keeps one only for its default options); the same encoder made once gives the
same bytes. Its ``init_headers`` looks for the caller's ``Content-Length`` and ``Content-Type``
among the headers given, which the UnifiedAPI's answers never set; ``Json`` lists the same
headers in the same order (the caller's, then the length and the type) without the search.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
).encode


class Json(JSONResponse):
    def __init__(
        self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body = _encode(content).encode("utf-8")
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ]
        raw.append((b"content-length", b"%d" % len(body)))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw

    def render(self, content: Any) -> bytes:
        return _encode(content).encode("utf-8")
