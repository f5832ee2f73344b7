"""Logging setup: one JSON object per line on stderr, with stable keys.

Every line has ``ts``, ``level``, ``logger`` and ``msg``; values passed through ``extra=`` become
keys of their own (``delivery_id``, ``status``, ``ms``...). uvicorn's access lines become
``msg="request"`` with ``client``, ``method``, ``path`` (without its query string, which may
carry credentials) and ``status``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

#: attributes every LogRecord has; anything else on a record came from ``extra=``
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.name == "uvicorn.access":
            doc.update(_access_fields(record))
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    args = record.args
    if not isinstance(args, tuple) or len(args) != 5:
        return {}
    client, method, full_path, _version, status = args
    return {
        "msg": "request",
        "client": client,
        "method": method,
        "path": str(full_path).split("?", 1)[0],
        "status": status,
    }


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every logger (uvicorn's included) through one JSON handler at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    # alembic says "Context impl SQLiteImpl." on every start; callhook.wiring logs migrations
    logging.getLogger("alembic").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
