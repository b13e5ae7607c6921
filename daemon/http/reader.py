"""Reading requests off one connection's bytes: httptools' callbacks, and the size limits of
a request's parts (its line, its headers, its body).

A request that cannot be read, or is over a limit, becomes a :class:`Refusal`: the
connection answers it and closes, because what follows it on the wire cannot be trusted.
What the reading means for the connection (deadlines, the shared body budget, the answer
queue) is left to a :class:`Sink`: the connection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import httptools

from tailord.daemon.http.auth import Peer
from tailord.daemon.http.wire import Request, Response, error_response

logger = logging.getLogger(__name__)

# The standard library's limits, kept so that clients meet the same answers as before.
MAX_URL_BYTES = 65536
MAX_HEADERS = 100
MAX_HEADER_BYTES = 65536
ALLOWED_METHODS = "GET, HEAD, POST, DELETE"

HEADERS_MESSAGE = "the request headers are too large or too many; send fewer"
METHODS_MESSAGE = "tailord answers GET, HEAD, POST and DELETE; see /v1/openapi.json"
VERSION_MESSAGE = "speak HTTP/1.0 or HTTP/1.1 to tailord"


@dataclass
class Refusal(Exception):
    """Raised from a parser callback: the request is answered with this and the
    connection closes, because what follows it on the wire cannot be trusted."""

    status: int
    code: str
    message: str

    def response(self) -> Response:
        response = error_response(self.status, self.code, self.message)
        if self.status == 405:
            response.headers["Allow"] = ALLOWED_METHODS
        if self.status == 503:
            response.headers["Retry-After"] = "1"
        return response


class Sink(Protocol):
    """What the reader tells its connection, in the order the bytes say it."""

    def request_begun(self) -> None:
        """A request's first byte has come."""

    def headers_read(self, length: int, expects_continue: bool) -> None:
        """Its headers are in and within limits, announcing a body of ``length`` bytes;
        may raise :class:`Refusal`."""

    def request_read(self, request: Request, keep_alive: bool, head: bool) -> None:
        """The whole request is in."""


class RequestReader:
    """httptools' callback object for one connection: gathers each request's parts."""

    def __init__(self, sink: Sink, peer: Peer, max_body_bytes: int) -> None:
        self.sink = sink
        self.peer = peer
        self.max_body_bytes = max_body_bytes
        self.parser = httptools.HttpRequestParser(self)
        self._reset()

    def _reset(self) -> None:
        self.url = bytearray()
        self.headers: dict[str, str] = {}
        self.header_count = 0
        self.header_bytes = 0
        self.body = bytearray()

    def drop_body(self) -> None:
        """Free a body that will never be read to its end."""
        self.body = bytearray()

    def feed(self, data: bytes) -> Refusal | None:
        """Read ``data``, telling the sink what it holds; the refusal that ends the
        connection, if the bytes (or the sink) refuse a request."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if not isinstance(refusal, Refusal):  # a request our reading of it chokes on
                logger.debug("refused a request that could not be read", exc_info=refusal)
                refusal = Refusal(400, "bad_request", _parse_message(str(refusal)))
            return refusal
        except httptools.HttpParserInvalidMethodError:
            return Refusal(405, "method_not_allowed", METHODS_MESSAGE)
        except httptools.HttpParserUpgrade:
            return Refusal(400, "bad_request", "tailord does not upgrade connections")
        except httptools.HttpParserError as exc:
            if "HTTP version" in str(exc):
                return Refusal(505, "http_version_not_supported", VERSION_MESSAGE)
            return Refusal(400, "bad_request", _parse_message(str(exc)))
        return None

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.sink.request_begun()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL_BYTES:
            raise Refusal(
                414, "uri_too_long", "the request line is too long; send parameters in the body"
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.header_bytes += len(name) + len(value)
        if self.header_count > MAX_HEADERS or self.header_bytes > MAX_HEADER_BYTES:
            raise Refusal(431, "headers_too_large", HEADERS_MESSAGE)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        if self.parser.get_http_version() not in ("1.1", "1.0"):
            raise Refusal(505, "http_version_not_supported", VERSION_MESSAGE)
        if "transfer-encoding" in self.headers:
            raise Refusal(411, "length_required", "send the body with a Content-Length")
        try:  # llhttp checked the digits; two Content-Length headers joined are not a number
            length = int(self.headers.get("content-length", "0"))
        except ValueError:
            raise Refusal(400, "bad_request", "send one Content-Length") from None
        limit = self.max_body_bytes
        if length > limit:
            raise Refusal(
                413,
                "body_too_large",
                f"the body is {length} bytes; the limit is {limit} ([api] max_body_bytes); "
                "send fewer inputs per request",
            )
        expects = self.headers.get("expect", "").lower() == "100-continue"
        self.sink.headers_read(length, expects)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii")
        split = urlsplit(self.url.decode("latin-1"))
        request = Request(
            method,
            split.path,
            parse_qs(split.query),
            self.headers,
            bytes(self.body),
            self.peer,
        )
        keep_alive = self.parser.should_keep_alive()
        self._reset()
        self.sink.request_read(request, keep_alive, method == "HEAD")


def too_slow(part: str, seconds: float) -> Refusal:
    """A request whose ``part`` ("headers" or "body") missed its deadline."""
    key = "header_timeout" if part == "headers" else "body_timeout"
    return Refusal(
        408,
        "request_timeout",
        f"the request's {part} did not arrive within {seconds:g} s ([api] {key}); "
        "send the whole request at once",
    )


def over_budget(pending: int, budget: int) -> Refusal:
    """A body that would take the bodies still arriving over their shared budget."""
    return Refusal(
        503,
        "busy",
        f"other clients are sending {pending} bytes of bodies (the limit is {budget}, "
        "[api] max_pending_body_bytes); send it again in a moment",
    )


def _parse_message(detail: str) -> str:
    return (
        f"tailord could not parse the request ({detail}); send HTTP/1.1, "
        "e.g. `curl --unix-socket SOCK http://localhost/v1/version`"
    )
