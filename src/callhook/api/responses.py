"""JSON answers: Starlette's ``JSONResponse``, the body made by one encoder kept for the process.

``JSONResponse`` renders with ``json.dumps(content, ensure_ascii=False, allow_nan=False,
indent=None, separators=(",", ":"))``, which makes a new ``JSONEncoder`` for every answer
(``json.dumps`` keeps one only for its default options); the same encoder made once gives the
same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
).encode


class Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _encode(content).encode("utf-8")
