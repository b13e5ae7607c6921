"""What the HTTP layer and the routes exchange: a parsed request in, a response out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec

from tailord.daemon.http.auth import Peer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes
    peer: Peer


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # A body of unknown length (server-sent events): written as it comes, then the
    # connection is closed, which is what ends the body for the client.
    stream: Iterator[bytes] | None = None


App = Callable[[Request], Response]


def json_response(status: int, payload: object) -> Response:
    # to_builtins: the domain answers with typed structs (UpdateInfo, RollbackResult...),
    # and json.dumps keeps the bytes of every answer as they were.
    return Response(status, json.dumps(msgspec.to_builtins(payload)).encode() + b"\n")


def error_response(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})
