"""The socket API as an OpenAPI 3.1 document (``GET /v1/openapi.json``), generated from the
route table and the body structs, so it cannot drift from the server."""

from __future__ import annotations

import copy
import functools
import typing
from importlib.metadata import PackageNotFoundError, version

import msgspec

from tailord.daemon.api import bodies
from tailord.daemon.api.routes import COMMON_ERRORS, ROUTES, Route

try:
    _VERSION = version("tailord")
except PackageNotFoundError:  # run from a source tree that is not installed
    _VERSION = "0.0.0"

_REF = "#/components/schemas/{name}"
Schema = dict[str, object]


def openapi_document() -> Schema:
    """A copy of the document (callers may change theirs)."""
    return copy.deepcopy(_document())


@functools.cache
def _document() -> Schema:
    types = [r.response for r in ROUTES] + [r.request for r in ROUTES if r.request]
    found, components = msgspec.json.schema_components(
        [bodies.ErrorBody, *types], ref_template=_REF
    )
    schemas = dict(zip([bodies.ErrorBody, *types], found, strict=True))
    # Predictions stand alone, without the rest of the document: a client validates them
    # with the one schema (tests/e2e/test_regress.py does).
    components["Predictions"] = _inlined(components["Predictions"], components)
    paths: dict[str, dict[str, Schema]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tailord socket API",
            "version": _VERSION,
            "description": "HTTP/1.1 + JSON on tailord's Unix socket, e.g. "
            "`curl --unix-socket /run/tailord/tailord.sock http://localhost/v1/version`. "
            'Errors are {"error": {"code", "message"}}; the message says what to do.',
        },
        "servers": [{"url": "http://localhost", "description": "over the Unix socket"}],
        "paths": paths,
        "components": {"schemas": components},
    }


def _operation(route: Route, schemas: dict[object, Schema]) -> Schema:
    error = {"application/json": {"schema": schemas[bodies.ErrorBody]}}
    answer = {route.media: {"schema": schemas[route.response]}}
    responses: dict[str, Schema] = {
        str(status): {"description": route.answer, "content": answer} for status in route.statuses
    }
    for status, description in {**COMMON_ERRORS, **route.errors}.items():
        responses[str(status)] = {"description": description, "content": error}
    operation: Schema = {"summary": route.summary, "operationId": route.name}
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": description,
            # handlers._whole_number: ids have at most 18 digits (below MAX_ID)
            "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
        }
        for name, description in route.path_params.items()
    ]
    if route.query is not None:
        parameters += _query_parameters(route.query)
    if parameters:
        operation["parameters"] = parameters
    # A raw body is one file, as is: any bytes, but at least one (an empty body is refused).
    raw: Schema = {"type": "string", "format": "binary", "minLength": 1}
    content: dict[str, Schema] = {media: {"schema": dict(raw)} for media in route.raw_request}
    if route.request is not None:
        content = {"application/json": {"schema": schemas[route.request]}, **content}
    if content:
        operation["requestBody"] = {"required": route.request_required, "content": content}
    operation["responses"] = responses
    return operation


def _query_parameters(query: type[msgspec.Struct]) -> list[Schema]:
    """One parameter per field of a query struct; its schema is the field's (``null`` left
    out: a parameter not given is the field's default)."""
    info = msgspec.inspect.type_info(query)
    assert isinstance(info, msgspec.inspect.StructType)
    hints = typing.get_type_hints(query, include_extras=True)
    parameters: list[Schema] = []
    for field in info.fields:
        schema = msgspec.json.schema(hints[field.name])
        schema = _without_null(schema)
        description = schema.pop("description", "")
        if not field.required and field.default not in (None, msgspec.NODEFAULT):
            description = f"{description} (default {_text(field.default)})".lstrip()
        parameters.append(
            {
                "name": field.encode_name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": schema,
            }
        )
    return parameters


def _inlined(schema: Schema, components: dict[str, Schema]) -> Schema:
    """``schema`` with each ``$ref`` to a component replaced by that component."""
    rest = {k: _inlined_value(v, components) for k, v in schema.items() if k != "$ref"}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return {**_inlined(components[ref.rsplit("/", 1)[1]], components), **rest}
    return rest


def _inlined_value(value: object, components: dict[str, Schema]) -> object:
    if isinstance(value, list):
        return [_inlined_value(item, components) for item in value]
    if isinstance(value, dict):
        return _inlined(value, components)
    return value


def _without_null(schema: Schema) -> Schema:
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        rest = [s for s in any_of if s != {"type": "null"}]
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**rest[0], **merged}
    return dict(schema)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)
