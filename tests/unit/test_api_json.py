"""The API's JSON made and read by an encoder and a decoder kept for the process: the same
bytes, values and error messages as ``json.dumps``/``json.loads`` with the same options."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.responses import JSONResponse

from callhook.api.requests import _loads, _no_constants
from callhook.api.responses import Json


@pytest.mark.parametrize(
    "content",
    [
        {"type": "0", "id": "a" * 30, "note": 'é ☎ \u2028 "quoted"', "links": {"self": "/x"}},
        [1, 2.5, None, True, "x"],
        {"error": {"code": "request_invalid", "message": "line\nbreak"}},
    ],
)
def test_json_renders_as_starlettes_json_response(content: Any) -> None:
    ours = Json(content, status_code=201, headers={"Location": "/x"})
    theirs = JSONResponse(content, status_code=201, headers={"Location": "/x"})
    assert ours.body == theirs.body
    assert ours.raw_headers == theirs.raw_headers


def test_json_refuses_what_json_response_refuses() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        Json({"x": float("nan")})


def _error(load: Any, text: str) -> str:
    with pytest.raises((ValueError, RecursionError)) as caught:
        load(text)
    return str(caught.value)


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "b": [1, 2, {"c": "d"}], "e": "\\u00e9"}', "[]", '"x"', "1e3", "null"],
)
def test_loads_decodes_as_json_loads(text: str) -> None:
    assert _loads(text) == json.loads(text, parse_constant=_no_constants)


@pytest.mark.parametrize(
    "text",
    ["\ufeff{}", "{", '{"a": NaN}', "[Infinity]", "-Infinity", "{} x", '{"a" 1}', "\ufeff"],
)
def test_loads_refuses_as_json_loads_with_the_same_message(text: str) -> None:
    def theirs(t: str) -> Any:
        return json.loads(t, parse_constant=_no_constants)

    assert _error(_loads, text) == _error(theirs, text)
