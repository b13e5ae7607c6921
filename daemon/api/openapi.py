"""The socket API described as an OpenAPI 3.1 document (``GET /v1/openapi.json``).

Hand-written, so it reads like documentation; tests/daemon/test_api_schema.py keeps it honest
by sending generated requests for every operation over a real socket and validating every
answer against it. A route added to ``api.py`` must be added here too (a test checks that).
"""

from __future__ import annotations

import copy
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    _VERSION = version("tailord")
except PackageNotFoundError:  # run from a source tree that is not installed
    _VERSION = "0.0.0"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_STRING = {"type": ["string", "null"]}

# Answers any operation can give: the peer check, the body cap, a chunked body.
_COMMON = {
    "403": _error("This user may not use tailord ([api] allowed_users / allowed_groups)."),
    "411": _error("The body came without a Content-Length."),
    "413": _error("The body is larger than [api] max_body_bytes."),
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "stable, for programs"},
                    "message": {"type": "string", "description": "for people: what to do"},
                },
            }
        },
    },
    "CurrentVersion": {
        "type": "object",
        "required": ["version", "labels", "sample_count"],
        "properties": {
            "version": {"type": "integer", "minimum": 0},
            "parent": _NULLABLE_INT,
            "created_at": _NULLABLE_NUMBER,
            "labels": {"type": "array", "items": {"type": "string"}},
            "sample_count": {"type": "integer", "minimum": 0},
        },
    },
    "Update": {
        "type": "object",
        "required": ["id", "state", "reason", "base_version", "version", "error"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "state": {
                "enum": ["pending", "running", "succeeded", "failed", "interrupted"],
            },
            "reason": {"type": "string"},
            "started_at": {"type": "number", "description": "Unix seconds; requested, if pending"},
            "finished_at": _NULLABLE_NUMBER,
            "base_version": {"type": "integer", "minimum": 0},
            "version": {**_NULLABLE_INT, "description": "the version it published"},
            "samples": {"type": "integer", "minimum": 0},
            "error": _NULLABLE_STRING,
            "metrics": {"type": "object"},
            "gate": {"description": "the gate's result, when the update had one"},
            "progress": {"type": ["object", "null"], "description": "while running"},
        },
    },
    "Counts": {
        "type": "object",
        "description": "samples as {state: {label: count}}",
        "additionalProperties": {
            "type": "object",
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
    },
    "Status": {
        "type": "object",
        "required": ["state", "version", "queued", "queue", "samples", "policy", "last_update"],
        "properties": {
            "state": {"enum": ["idle", "updating"]},
            "version": _NULLABLE_INT,
            "queued": {"type": "integer", "minimum": 0},
            "queue": {
                "type": "object",
                "description": "queued samples by label",
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
            "samples": _ref("Counts"),
            "policy": {"type": "string", "description": "why an update runs or waits"},
            "update": {
                "type": ["object", "null"],
                "properties": {"id": {"type": "integer"}, "progress": {"type": ["object", "null"]}},
            },
            "last_update": {"oneOf": [_ref("Update"), {"type": "null"}]},
            "ingest": {
                "type": "object",
                "properties": {
                    "ingested": {"type": "integer"},
                    "duplicates": {"type": "integer"},
                    "relabeled": {"type": "integer"},
                    "rejected": {"type": "integer"},
                    "waiting": {"type": "integer"},
                    "error": _NULLABLE_STRING,
                    "backpressure": _NULLABLE_STRING,
                    "last_commit_at": {"type": ["number", "null"]},
                },
            },
        },
    },
    "VersionInfo": {
        "type": "object",
        "required": ["number", "parent", "created_at", "sample_count", "current"],
        "properties": {
            "number": {"type": "integer", "minimum": 0},
            "parent": _NULLABLE_INT,
            "created_at": {"type": "number"},
            "sample_count": {"type": "integer", "minimum": 0},
            "current": {"type": "boolean"},
            "pinned": {"type": "boolean"},
            "labels": {"type": "array", "items": {"type": "string"}},
            "metrics": {"type": "object"},
            "update": _NULLABLE_INT,
        },
    },
    "VersionDetail": {
        "allOf": [
            _ref("VersionInfo"),
            {
                "type": "object",
                "required": ["manifest"],
                "properties": {"manifest": {"type": "object", "description": "manifest.json"}},
            },
        ]
    },
    "Sample": {
        "type": "object",
        "required": ["id", "sha256", "label", "kind", "state", "created_at"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "label": {"type": "string"},
            "kind": {"type": "string"},
            "state": {"enum": ["queued", "learned"]},
            "size": {"type": "integer", "minimum": 0},
            "source": {"type": "string", "description": "its name in the inbox"},
            "created_at": {"type": "number"},
            "learned_in": _NULLABLE_INT,
        },
    },
    "SamplePage": {
        "type": "object",
        "required": ["counts", "samples", "next_after"],
        "properties": {
            "counts": _ref("Counts"),
            "samples": {"type": "array", "items": _ref("Sample")},
            "next_after": {
                **_NULLABLE_INT,
                "description": "pass as ?after= for the next page; null on the last page",
            },
        },
    },
    "PredictRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "type": "array",
                "minItems": 1,
                "maxItems": 4096,
                "items": {"type": "array", "minItems": 1, "items": {"type": "number"}},
            }
        },
    },
    "LabelScore": {
        "type": "object",
        "required": ["label", "score"],
        "properties": {
            "label": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "additionalProperties": False,
    },
    "Predictions": {
        "type": "object",
        "required": ["version", "predictions"],
        "properties": {
            "version": {"type": "integer", "minimum": 0},
            "predictions": {
                "type": "array",
                # A classify model answers a label and its score; a regress model
                # ([model] task = "regress") a number.
                "items": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["label", "score"],
                            "properties": {
                                "label": {"type": "string"},
                                "score": {"type": "number", "minimum": 0, "maximum": 1},
                                # With ?top=k (k > 1): the k best, best first.
                                "top": {"type": "array", "items": _ref("LabelScore")},
                            },
                            "additionalProperties": False,
                        },
                        {
                            "type": "object",
                            "required": ["value"],
                            "properties": {"value": {"type": "number"}},
                            "additionalProperties": False,
                        },
                    ]
                },
            },
        },
    },
}


def _id_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 0},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, **_COMMON}, **extra}


_BAD_PARAM = _error("A parameter is not valid; the message says which.")


def _version_op(summary: str, done: str) -> dict[str, Any]:
    """An operation whose JSON body names one version: ``{"version": N}``."""
    return {
        "post": _op(
            summary,
            {
                "200": _json({"type": "object"}, done),
                "400": _error("The body is not JSON."),
                "404": _error("No such version."),
                "409": _error("Not possible now; the message says why."),
                "422": _error("The body does not name a version."),
            },
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["version"],
                            "properties": {"version": {"type": "integer", "minimum": 0}},
                        }
                    }
                },
            },
        )
    }


_NOT_FOUND = _error("No such id.")

_PATHS: dict[str, Any] = {
    "/v1/version": {
        "get": _op(
            "The version being served",
            {
                "200": _json(_ref("CurrentVersion"), "The current version."),
                "503": _error("No version is loaded yet."),
            },
        )
    },
    "/v1/status": {
        "get": _op(
            "State, queue counts by label, policy reason, last update",
            {"200": _json(_ref("Status"), "The daemon's status.")},
        )
    },
    "/v1/versions": {
        "get": _op(
            "Every published version, oldest first",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["versions"],
                        "properties": {"versions": {"type": "array", "items": _ref("VersionInfo")}},
                    },
                    "The versions.",
                )
            },
        )
    },
    "/v1/versions/{n}": {
        "get": _op(
            "One version: its manifest and metrics",
            {
                "200": _json(_ref("VersionDetail"), "The version."),
                "400": _BAD_PARAM,
                "404": _NOT_FOUND,
            },
            parameters=[_id_param("n", "the version number")],
        )
    },
    "/v1/update": {
        "post": _op(
            "Start an update now (or join the one pending or running)",
            {
                "200": _json(_ref("Update"), "With ?wait=true: the update has ended."),
                "202": _json(_ref("Update"), "Accepted: the update's id and state."),
                "400": _BAD_PARAM,
                "409": _error("Nothing is queued, so there is nothing to learn."),
            },
            parameters=[
                _query("wait", {"type": "boolean"}, "block until the update has ended"),
                _query(
                    "timeout",
                    {"type": "number", "minimum": 0, "maximum": 3600},
                    "seconds to wait at most (default 600); still running then: 202",
                ),
            ],
        )
    },
    "/v1/updates/{id}": {
        "get": _op(
            "One update: state, progress, result",
            {
                "200": _json(_ref("Update"), "The update."),
                "400": _BAD_PARAM,
                "404": _NOT_FOUND,
            },
            parameters=[_id_param("id", "the update id")],
        )
    },
    "/v1/rollback": {
        "post": _op(
            "Make an earlier version current (or the parent of the current one)",
            {
                "200": _json({"type": "object"}, "The version now current."),
                "400": _BAD_PARAM,
                "404": _NOT_FOUND,
                "409": _error("Rolling back is not possible now."),
                "415": _error("The body is not JSON."),
                "422": _error("The body does not name a version."),
            },
            requestBody={
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"version": {"type": "integer", "minimum": 0}},
                        }
                    }
                },
            },
        )
    },
    "/v1/pin": _version_op("Pin a version: kept whatever [versions] keep says", "Pinned."),
    "/v1/unpin": _version_op(
        "Unpin a version: removed once it is older than [versions] keep", "Unpinned."
    ),
    "/v1/import-base": {
        "post": _op(
            "Publish a .safetensors model (made with the same [model] settings) as a new version",
            {
                "200": _json({"type": "object"}, "The version now current."),
                "409": _error("The file cannot be loaded as a model of this spec."),
                "422": _error("No body was sent."),
            },
            requestBody={
                "required": True,
                "content": {"application/octet-stream": {"schema": {}}},
            },
        )
    },
    "/v1/predict": {
        "post": _op(
            "Predict labels with the current version",
            {
                "200": _json(_ref("Predictions"), "One prediction per input, in order."),
                "400": _error("The body is not valid JSON, or ?top is out of range."),
                "409": _error("No version has learned any label yet."),
                "413": _error("Too many inputs or too large a body."),
                "415": _error("The Content-Type is neither JSON nor .npy."),
                "422": _error("The inputs do not fit the model."),
                "503": _error("No version is loaded yet."),
            },
            parameters=[
                _query(
                    "top",
                    {"type": "integer", "minimum": 1, "maximum": 100},
                    "also answer the k best labels of each input, best first (classify only)",
                )
            ],
            requestBody={
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("PredictRequest")},
                    "application/x-npy": {
                        "schema": {"type": "string", "contentMediaType": "application/x-npy"}
                    },
                },
            },
        )
    },
    "/v1/samples": {
        "get": _op(
            "Sample counts and a page of samples (no payloads), by id",
            {"200": _json(_ref("SamplePage"), "One page."), "400": _BAD_PARAM},
            parameters=[
                _query("state", {"enum": ["queued", "learned"]}, "only samples in this state"),
                _query("label", {"type": "string"}, "only samples with this label"),
                _query("after", {"type": "integer", "minimum": 0}, "ids after this one"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100"),
            ],
        )
    },
    "/v1/events": {
        "get": _op(
            "Server-sent events: sample.queued, sample.rejected, update.began, "
            "update.progress, update.judged, update.finished, version.changed",
            {
                "200": {
                    "description": "An endless stream; each `data:` line is one JSON event "
                    '{"id", "type", "time", "data"}.',
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }
            },
        )
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        )
    },
    "/v1/openapi.json": {
        "get": _op(
            "This document",
            {"200": _json({"type": "object"}, "The OpenAPI 3.1 document.")},
        )
    },
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "tailord socket API",
        "version": _VERSION,
        "description": "HTTP/1.1 + JSON on tailord's Unix socket, e.g. "
        "`curl --unix-socket /run/tailord/tailord.sock http://localhost/v1/version`. "
        'Errors are {"error": {"code", "message"}}; the message says what to do.',
    },
    "servers": [{"url": "http://localhost", "description": "over the Unix socket"}],
    "paths": _PATHS,
    "components": {"schemas": _SCHEMAS},
}


def openapi_document() -> dict[str, Any]:
    """A copy of the document (callers may change theirs)."""
    return copy.deepcopy(_DOCUMENT)
