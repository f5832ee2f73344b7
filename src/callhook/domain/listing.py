"""Listing: query parameters, filtering, sorting and paging of a collection (contract section 4)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from callhook.errors import (
    CountInvalid,
    FieldsInvalid,
    FilterByInvalid,
    FilterOpInvalid,
    FilterValueInvalid,
    SortOrderInvalid,
    StartIndexInvalid,
)

FILTER_FIELDS = ("id", "type", "method", "status", "url", "note", "modified")
FILTER_OPS = ("contains", "equals", "startsWith", "present")
MAX_COUNT = 5000
MAX_START = 5000
DEFAULT_COUNT = 20
#: query parameters that are never copied into next/prev links (a token must not leak into them)
_NOT_COPIED = ("startIndex", "count", "accessRequestToken")


@dataclass(frozen=True, slots=True)
class ListQuery:
    start_index: int = 0
    count: int = DEFAULT_COUNT
    filter_by: str | None = None
    filter_op: str = "contains"
    filter_value: str = ""
    descending: bool = False
    fields: tuple[str, ...] | None = None


def _whole(raw: str, low: int, high: int) -> int | None:
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        return None
    value = int(raw)
    return value if low <= value <= high else None


def parse_query(params: Mapping[str, str], known_fields: Sequence[str]) -> ListQuery:
    count = DEFAULT_COUNT
    if "count" in params:
        parsed = _whole(params["count"], 1, MAX_COUNT)
        if parsed is None:
            raise CountInvalid(f"count must be a whole number from 1 to {MAX_COUNT}.")
        count = parsed
    start = 0
    if "startIndex" in params:
        parsed = _whole(params["startIndex"], 0, MAX_START)
        if parsed is None:
            raise StartIndexInvalid(f"startIndex must be a whole number from 0 to {MAX_START}.")
        start = parsed
    filter_by = params.get("filterBy") or None
    if filter_by is not None and filter_by not in FILTER_FIELDS:
        raise FilterByInvalid(f"filterBy must be one of {', '.join(FILTER_FIELDS)}.")
    filter_op = params.get("filterOp") or "contains"
    if filter_op not in FILTER_OPS:
        raise FilterOpInvalid(f"filterOp must be one of {', '.join(FILTER_OPS)}.")
    filter_value = params.get("filterValue", "")
    if filter_by is not None and filter_op != "present" and filter_value == "":
        raise FilterValueInvalid(f"filterValue is required with filterOp={filter_op}.")
    if filter_by is None and ("filterValue" in params or "filterOp" in params):
        raise FilterByInvalid("filterBy is required with filterOp or filterValue.")
    sort = params.get("sortOrder", params.get("sortOder", "ascending")) or "ascending"
    if sort not in ("ascending", "descending"):
        raise SortOrderInvalid("sortOrder must be ascending or descending.")
    fields: tuple[str, ...] | None = None
    if "fields" in params:
        names = tuple(f.strip() for f in params["fields"].split(",") if f.strip())
        bad = [n for n in names if n not in known_fields]
        if not names or bad:
            raise FieldsInvalid(
                f"fields must list names from {', '.join(known_fields)}"
                + (f"; unknown: {', '.join(bad)}." if bad else ".")
            )
        fields = names
    return ListQuery(
        start_index=start,
        count=count,
        filter_by=filter_by,
        filter_op=filter_op,
        filter_value=filter_value,
        descending=sort == "descending",
        fields=fields,
    )


def _matches(value: str, op: str, wanted: str) -> bool:
    if op == "present":
        return value != ""
    if op == "equals":
        return value == wanted
    if op == "startsWith":
        return value.startswith(wanted)
    return wanted in value


@dataclass(frozen=True, slots=True)
class Page:
    start_index: int
    total: int
    entries: list[dict[str, Any]]
    next_start: int | None
    prev_start: int | None


def paginate(records: Sequence[dict[str, Any]], query: ListQuery) -> Page:
    """Filter, sort by (url, id) and cut a page out of rendered records (all values strings)."""
    selected = [
        r
        for r in records
        if query.filter_by is None
        or _matches(str(r.get(query.filter_by, "")), query.filter_op, query.filter_value)
    ]
    selected.sort(key=lambda r: (r["url"], r["id"]), reverse=query.descending)
    total = len(selected)
    window = selected[query.start_index : query.start_index + query.count]
    if query.fields is not None:
        window = [{k: r[k] for k in query.fields if k in r} for r in window]
    end = query.start_index + query.count
    next_start = end if end < total and end <= MAX_START else None
    prev_start = max(0, query.start_index - query.count) if query.start_index > 0 else None
    return Page(query.start_index, total, window, next_start, prev_start)


def page_link(base: str, params: Sequence[tuple[str, str]], start: int, count: int) -> str:
    """A next/prev link that keeps every other query parameter of the request."""
    kept = [(k, v) for k, v in params if k not in _NOT_COPIED]
    kept += [("startIndex", str(start)), ("count", str(count))]
    return f"{base}?{urlencode(kept, safe='*@,')}"


def render_page(
    page: Page, base: str, params: Sequence[tuple[str, str]], count: int
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "startIndex": page.start_index,
        "itemsPerPage": len(page.entries),
        "totalResults": page.total,
        "entry": page.entries,
    }
    if page.next_start is not None:
        body["next"] = page_link(base, params, page.next_start, count)
    if page.prev_start is not None:
        body["prev"] = page_link(base, params, page.prev_start, count)
    return body
