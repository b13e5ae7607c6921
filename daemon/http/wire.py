"""What the HTTP layer and the routes exchange: a parsed request in, a response out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

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
    # An answer that is not ready yet (``?wait=true``): the connection waits for it on the
    # event loop, holding no thread; ``status`` and ``body`` are unused then.
    deferred: Deferred | None = None


class Deferred(Protocol):
    """Something a request waits for, without a thread: the connection calls ``subscribe``
    once on the event loop, then ``answer`` on a worker thread whenever woken (by ``wake``, at
    ``timeout`` seconds, and every few seconds in case a wake was missed), and ``close`` once
    at the end, also when the client goes away first."""

    timeout: float

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (from any thread, perhaps more than once) when the answer may be ready."""

    def answer(self, final: bool) -> Response | None:
        """The answer, or None to wait on; ``final`` (the timeout has passed) must answer."""

    def close(self) -> None:
        """Stop calling ``wake``."""


App = Callable[[Request], Response]


def json_response(status: int, payload: object) -> Response:
    return Response(status, json.dumps(payload).encode() + b"\n")


def error_response(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})
