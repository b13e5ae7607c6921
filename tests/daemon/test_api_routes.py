"""The route table is the one list: docs/api.md's endpoint table and the OpenAPI document
name exactly its routes, and the document is valid OpenAPI 3.1."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec
from openapi_spec_validator import validate

from tailord.daemon.api import bodies
from tailord.daemon.api.openapi import openapi_document
from tailord.daemon.api.routes import ROUTES

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE|HEAD) (/[^`\s]*)` \|")


def _documented_endpoints(text: str) -> set[tuple[str, str]]:
    """The (method, path) of each row of the ``| method and path | answer |`` table."""
    lines = text.splitlines()
    start = lines.index("| method and path | answer |")
    rows: set[tuple[str, str]] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        found = ROW.match(line)
        assert found is not None, (
            f"docs/api.md: an endpoint row must start | `METHOD /path` |: {line}"
        )
        rows.add((found.group(1), found.group(2)))
    return rows


def test_docs_endpoint_table_lists_exactly_the_route_table() -> None:
    documented = _documented_endpoints(API_MD.read_text())
    routes = {(r.method, r.path) for r in ROUTES}
    assert documented - routes == set(), "in docs/api.md but not in daemon/api/routes.py"
    assert routes - documented == set(), "in daemon/api/routes.py but not in docs/api.md"


def test_the_table_parser_sees_a_drift() -> None:
    text = API_MD.read_text().replace("| `POST /v1/unpin` |", "| `DELETE /v1/versions/{n}/pin` |")
    assert ("DELETE", "/v1/versions/{n}/pin") in _documented_endpoints(text)
    assert ("POST", "/v1/unpin") not in _documented_endpoints(text)


def test_the_document_is_valid_openapi_and_has_every_route_once() -> None:
    document = openapi_document()
    validate(document)  # type: ignore[arg-type]
    paths = document["paths"]
    assert isinstance(paths, dict)
    operations = {(m.upper(), p) for p, item in paths.items() for m in item}
    assert operations == {(r.method, r.path) for r in ROUTES}
    assert len({r.name for r in ROUTES}) == len(ROUTES), "route names are method names: unique"


def test_rejected_is_a_state_in_the_document() -> None:
    schemas = openapi_document()["components"]["schemas"]  # type: ignore[index]
    assert "rejected" in schemas["UpdateInfo"]["properties"]["state"]["enum"]
    assert "rejected" in schemas["Sample"]["properties"]["state"]["enum"]


def test_bodies_keep_the_wire_keys() -> None:
    """Absent keys stay absent (UNSET), ``None`` is ``null``: today's wire, key for key."""
    metrics = msgspec.convert({"seconds": 1.5, "encode_seconds": None}, bodies.UpdateMetrics)
    assert msgspec.json.decode(bodies.encode(metrics)) == {"seconds": 1.5, "encode_seconds": None}
    assert bodies.encode(bodies.UpdateMetrics()) == b"{}\n"
    regress = bodies.Prediction(value=3.0)
    assert msgspec.json.decode(bodies.encode(regress)) == {"value": 3.0}


def test_the_contract_imports_neither_torch_nor_the_database() -> None:
    """The client imports bodies and routes: they must not pull torch, numpy or SQLAlchemy."""
    code = (
        "import sys, tailord.daemon.api.routes; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'sqlalchemy'}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"
