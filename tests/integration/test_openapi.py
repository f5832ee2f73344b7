"""The hand-kept OpenAPI document: valid OpenAPI 3.1, in step with the app's routes, and true.

"True" is checked by schemathesis against a live server over real HTTP: its examples, coverage
and fuzzing phases (positive and negative data) must find no server error and no response whose
status, content type, headers or body the document does not describe. schemathesis runs as its
CLI in a subprocess, configured by a schemathesis.toml written per run: its pytest integration
(``schemathesis.pytest.from_fixture``) does not work with pytest 9 (it sets ``Function._nodeid``).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
from starlette.applications import Starlette
from starlette.routing import Route

from callhook import errors
from callhook.api.routes.health import openapi_document
from callhook.config import Settings
from callhook.domain.phone_call_events import check_url
from callhook.errors import UrlInvalid
from callhook.wiring import build
from tests.live_server import LiveServer

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
JSON_SCHEMA_2020_12 = "https://json-schema.org/draft/2020-12/schema"
EXTENSION = "0003*210"
#: hypothesis examples per operation in the fuzzing phase
MAX_EXAMPLES = 25
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def document() -> dict[str, Any]:
    """A copy of the document as served (the served one is cached: never change it)."""
    return copy.deepcopy(openapi_document())


# --- (a) the document itself ----------------------------------------------------------------


def _schemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Schema Object in the document: components.schemas and each `schema` field."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            is_schema = key == "schema" or where == "#/components/schemas"
            if is_schema and isinstance(value, dict):
                yield here, value
            else:
                yield from _schemas(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schemas(value, f"{where}/{i}")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), f"only local references are used: {pointer}"
    node: Any = doc
    for part in pointer[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), pointer
        assert part in node, f"dangling reference {pointer}"
        node = node[part]
    return node


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    errors = [f"{e.instance_path}: {e.message}" for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert not errors, errors
    found = list(_schemas(doc))
    assert len(found) > 20
    for where, schema in found:
        try:
            jsonschema_rs.meta.validate({"$schema": JSON_SCHEMA_2020_12, **schema})
        except jsonschema_rs.ValidationError as exc:
            pytest.fail(f"{where} is not a valid JSON Schema 2020-12: {exc}")
    for pointer in set(_refs(doc)):
        _resolve(doc, pointer)
    for path, item in doc["paths"].items():
        for method in (m for m in item if m in HTTP_METHODS):
            operation = item[method]
            assert operation.get("operationId"), f"{method} {path}"
            assert operation["responses"], f"{method} {path}"
            declared = set(re.findall(r"\{([^}]+)\}", path))
            params = [
                _resolve(doc, p["$ref"]) if "$ref" in p else p for p in item.get("parameters", [])
            ]
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert declared == in_path, f"{path}: path parameters {declared} vs {in_path}"
    # schemathesis loads every operation without complaint
    loaded = schemathesis.openapi.from_dict(doc)
    bad = [str(r.err()) for r in loaded.get_all_operations() if isinstance(r, Err)]
    assert not bad, bad


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    components = build(Settings(data_dir=tmp_path))  # builds the app; connects to nothing
    app: Any = components.app
    while not isinstance(app, Starlette):
        app = app.app
    found: set[tuple[str, str]] = set()
    for route in app.router.routes:
        assert isinstance(route, Route), f"undescribed kind of route: {route!r}"
        methods = set(route.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")  # Starlette adds HEAD to every GET route
        found |= {(m.lower(), _normalise(route.path)) for m in methods}
    return found


def test_every_route_is_described_and_vice_versa(tmp_path: Path) -> None:
    described = {
        (method, _normalise(path))
        for path, item in document()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    served = _app_routes(tmp_path)
    assert served - described == set(), "routes missing from openapi.json"
    assert described - served == set(), "openapi.json describes routes the app lacks"


#: the response component that documents each error status other than 400
ERROR_RESPONSES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalError",
}


def test_every_error_is_documented_with_its_status_and_code() -> None:
    doc = document()

    def codes(schema: dict[str, Any]) -> set[str]:
        return set(schema["properties"]["error"]["properties"]["code"]["enum"])

    def const(response: str) -> str:
        schema = doc["components"]["responses"][response]["content"]["application/json"]["schema"]
        code: str = schema["properties"]["error"]["properties"]["code"]["const"]
        return code

    every = codes(doc["components"]["schemas"]["Error"])
    bad_request = codes(doc["components"]["schemas"]["BadRequestError"])
    classes = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.ServiceError)
        and cls not in (errors.ServiceError, errors.NotFound, errors.Conflict)  # not UAPI
    ]
    assert len(classes) > 20
    for cls in classes:
        assert cls.code in every, cls
        if cls.status == 400:
            assert cls.code in bad_request, cls
        else:
            assert const(ERROR_RESPONSES[cls.status]) == cls.code, cls


URL_SAMPLES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\x00\té☎"),
    max_size=40,
)


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(tail=URL_SAMPLES)
def test_every_url_the_domain_accepts_matches_the_documented_pattern(tail: str) -> None:
    """Else a stored url would make responses break their own schema."""
    pattern = document()["components"]["schemas"]["PhoneCallEventFields"]["properties"]["url"]
    for url in (f"https://crm.example.com/{tail}", f"http://{tail}", f"hTTp://h{tail}"):
        try:
            check_url(url)
        except UrlInvalid:
            continue
        assert re.search(pattern["pattern"], url), url
        assert len(url) <= pattern["maxLength"]


# --- (b) schemathesis against a live server --------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict), value
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def schemathesis_config(*, bearer: str, basic: tuple[str, str], pinned: bool) -> str:
    """A schemathesis.toml for one run (as top-level keys with inline tables)."""
    basic_pair = base64.b64encode(":".join(basic).encode()).decode()
    generation: dict[str, Any] = {
        "mode": "all",
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "allow-x00": True,  # PostgreSQL refuses NUL in text: it must be caught before
    }
    config: dict[str, Any] = {
        "suppress-health-check": ["all"],
        "workers": 1,
        "request-timeout": 30,
        "max-redirects": 0,  # a 302 from /oauth/authorize.php leads off this server
        "cache": {"enabled": False},
        "warnings": False,
        "headers": {"Authorization": f"Bearer {bearer}"},
        "generation": generation,
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": pinned, "max-steps": 6},
        },
    }
    if pinned:
        config["parameters"] = {"userId": "@me", "extension": EXTENSION}
    lines = [f"{key} = {_toml(value)}" for key, value in config.items()]
    # OAuth client authentication instead of the bearer token on the /oauth routes
    lines += [
        "",
        "[[operations]]",
        'include-path-regex = "^/oauth/"',
        f"headers = {_toml({'Authorization': f'Basic {basic_pair}'})}",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    # no rate limit: thousands of requests in seconds must reach the code under test
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, rate_limit=0)
    with LiveServer(settings) as server:
        yield server


@pytest.mark.parametrize("pinned", [False, True], ids=["any-path", "real-extension"])
def test_live_server_conforms_to_the_document(
    live: LiveServer, tmp_path: Path, pinned: bool
) -> None:
    """schemathesis' examples, coverage and fuzzing phases (and, on the real extension, its
    stateful phase) over real HTTP: no 5xx, and every response as the document describes it."""
    world = live.build_world()
    org = world.apps["org"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        schemathesis_config(
            bearer=live.token(world, "org"),
            basic=(org.app.client_id, org.client_secret),
            pinned=pinned,
        ),
        "utf-8",
    )
    st = Path(sys.executable).with_name("st")
    run = subprocess.run(
        [
            *(str(st), "--config-file", str(config), "--no-color", "run"),
            *("--report", "har", "--report-har-path", str(tmp_path / "run.har")),
            # the pinned parameters exist only on /uapi; the other run covers the other routes
            *(("--include-path-regex", "^/uapi/") if pinned else ()),
            f"{live.url}/openapi.json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated is not None, output
    assert generated.group(1) == generated.group(2), output
    assert int(generated.group(1)) > 200, output
    # the run reached past the path checks: every kind of success was answered and checked
    seen = _statuses(json.loads((tmp_path / "run.har").read_text("utf-8")))
    if pinned:
        wanted = {("POST", "/uapi", 201), ("GET", "/uapi", 200), ("PUT", "/uapi", 200)}
        wanted |= {("DELETE", "/uapi", 200)}
    else:
        wanted = {("POST", "/oauth", 200), ("GET", "/healthz", 200), ("GET", "/readyz", 200)}
    assert wanted <= seen, (wanted - seen, output)


def _statuses(har: dict[str, Any]) -> set[tuple[str, str, int]]:
    """(method, first path segment, status) of every exchange in a HAR log."""
    found = set()
    for entry in har["log"]["entries"]:
        path = urlsplit(entry["request"]["url"]).path
        top = "/" + path.lstrip("/").split("/", 1)[0]
        found.add((entry["request"]["method"], top, entry["response"]["status"]))
    return found
