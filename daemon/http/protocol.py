"""One HTTP/1.1 connection on the event loop: parse with httptools, answer in order.

Requests on a connection are answered one at a time and in the order they came (pipelining
is allowed, never reordered). A quick route (an in-memory read, ``GET /v1/version``) is
answered on the loop itself; any other runs on a worker thread, because it may wait on the
database, a prediction or an update. A server-sent event stream gets a thread of its own
that hands each chunk to the loop, and ends the connection when it ends. A deferred answer
(``?wait=true``) waits on the loop, holding no thread, and is dropped when the client goes.

What a client may hold is bounded (``limits.py``): a request's headers and body must arrive
within their deadlines (bytes do not extend them); reading stops while the client leaves
answers unread or has many requests queued; bodies still arriving share one memory budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import itertools
import logging
import threading
import time
import typing
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import httptools

from tailord.daemon.http.auth import Authorizer, peer_of
from tailord.daemon.http.limits import Limits
from tailord.daemon.http.wire import App, Deferred, Request, Response, error_response
from tailord.daemon.text import escape

logger = logging.getLogger(__name__)

# The standard library's limits, kept so that clients meet the same answers as before.
MAX_URL_BYTES = 65536
MAX_HEADERS = 100
MAX_HEADER_BYTES = 65536
# A server-sent event client that stops reading is dropped once this much waits for it.
MAX_STREAM_BACKLOG = 1 << 20
ALLOWED_METHODS = "GET, HEAD, POST, DELETE"
# A deferred answer is looked at this often even when nothing woke it (a missed wake).
RECHECK_SECONDS = 5.0


class Context(Protocol):
    """What a connection needs from its server."""

    app: App
    authorizer: Authorizer
    max_body_bytes: int
    idle_timeout: float
    quick: Callable[[Request], bool]
    loop: asyncio.AbstractEventLoop
    connections: set[Connection]
    limits: Limits
    max_connections: int  # the cap in force (limits.connection_cap)
    pending_body_bytes: int  # announced by bodies still arriving, over all connections

    def run_blocking(self, job: Callable[[], None]) -> None: ...


@dataclass
class _Refusal(Exception):
    """Raised from a parser callback: the request is answered with this and the
    connection closes, because what follows it on the wire cannot be trusted."""

    status: int
    code: str
    message: str


@dataclass
class _Turn:
    """One request's place in the connection's queue, or a refusal that ends it."""

    request: Request | None
    keep_alive: bool
    head: bool = False
    refusal: Response | None = None


@dataclass
class _Waiting:
    """A deferred answer being waited for on the loop."""

    turn: _Turn
    deferred: Deferred
    deadline: float  # on the loop's (monotonic) clock
    timer: asyncio.TimerHandle | None = None
    checking: bool = False  # ``answer`` runs on a worker thread
    woken: bool = False  # woken while checking: check again at once


class Connection(asyncio.Protocol):
    def __init__(self, context: Context) -> None:
        self.context = context
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Turn] = deque()
        self.busy = False  # a response is being made off the loop, or a stream is open
        self.closed = False  # no more reading or answering; set from the loop only
        self.refused = False  # a refusal is queued: nothing after it is read
        self.write_paused = False  # the client leaves answers unread (pause_writing)
        self.reading = True
        self.idle_since: int | None = None  # when it went idle (a count); None if not idle
        self.waiting: _Waiting | None = None
        self.body_reserved = 0  # this request's share of the server's pending_body_bytes
        self._idle: asyncio.TimerHandle | None = None  # closes a connection left silent
        self._deadline: asyncio.TimerHandle | None = None  # a request's headers, then body
        self._reset()

    def _reset(self) -> None:
        self.url = bytearray()
        self.headers: dict[str, str] = {}
        self.header_count = 0
        self.header_bytes = 0
        self.body = bytearray()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        limits = self.context.limits
        self.transport.set_write_buffer_limits(high=limits.max_unsent_bytes)
        connections = self.context.connections
        if len(connections) >= self.context.max_connections and not _evict_idle(connections):
            self.closed = True
            self.transport.write(_BUSY_ANSWER)
            self.transport.close()
            return
        self.peer = peer_of(transport.get_extra_info("socket"))
        self.allowed = self.context.authorizer.allows(self.peer)  # fixed for the connection
        connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.queue.clear()
        self._disarm_idle()
        self._set_deadline(None)
        self._release_body()
        self._drop_waiting()
        self.context.connections.discard(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()
        self._answer()  # answers held back while the client was not reading

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._disarm_idle()  # re-armed by _answer once all that came in is answered
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if not isinstance(refusal, _Refusal):  # a request our reading of it chokes on
                logger.debug("refused a request that could not be read", exc_info=refusal)
                refusal = _Refusal(400, "bad_request", _parse_message(str(refusal)))
            self._refuse(refusal)
        except httptools.HttpParserInvalidMethodError:
            self._refuse(_Refusal(405, "method_not_allowed", _METHODS_MESSAGE))
        except httptools.HttpParserUpgrade:
            self._refuse(_Refusal(400, "bad_request", "tailord does not upgrade connections"))
        except httptools.HttpParserError as exc:
            if "HTTP version" in str(exc):
                self._refuse(_Refusal(505, "http_version_not_supported", _VERSION_MESSAGE))
            else:
                self._refuse(_Refusal(400, "bad_request", _parse_message(str(exc))))
        self._answer()

    # httptools callbacks

    def on_message_begin(self) -> None:
        # The deadline runs from the first byte; later bytes do not move it (slowloris).
        self._disarm_idle()
        self._set_deadline(self.context.limits.header_timeout, "headers")

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL_BYTES:
            raise _Refusal(
                414, "uri_too_long", "the request line is too long; send parameters in the body"
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.header_bytes += len(name) + len(value)
        if self.header_count > MAX_HEADERS or self.header_bytes > MAX_HEADER_BYTES:
            raise _Refusal(431, "headers_too_large", _HEADERS_MESSAGE)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        if self.parser.get_http_version() not in ("1.1", "1.0"):
            raise _Refusal(505, "http_version_not_supported", _VERSION_MESSAGE)
        if "transfer-encoding" in self.headers:
            raise _Refusal(411, "length_required", "send the body with a Content-Length")
        try:  # llhttp checked the digits; two Content-Length headers joined are not a number
            length = int(self.headers.get("content-length", "0"))
        except ValueError:
            raise _Refusal(400, "bad_request", "send one Content-Length") from None
        limit = self.context.max_body_bytes
        if length > limit:
            raise _Refusal(
                413,
                "body_too_large",
                f"the body is {length} bytes; the limit is {limit} ([api] max_body_bytes); "
                "send fewer inputs per request",
            )
        if length:
            budget = self.context.limits.max_pending_body_bytes
            if self.context.pending_body_bytes + length > budget:
                raise _Refusal(
                    503,
                    "busy",
                    f"other clients are sending {self.context.pending_body_bytes} bytes of "
                    f"bodies (the limit is {budget}, [api] max_pending_body_bytes); "
                    "send it again in a moment",
                )
            self.body_reserved = length
            self.context.pending_body_bytes += length
            self._set_deadline(self.context.limits.body_timeout, "body")
        else:
            self._set_deadline(None)
        expects = self.headers.get("expect", "").lower() == "100-continue"
        if expects and self.allowed and not self.queue and not self.busy:
            # curl asks before sending a large body; answering at once saves it a second.
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self._set_deadline(None)
        self._release_body()
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
        self.queue.append(_Turn(request, self.parser.should_keep_alive(), method == "HEAD"))
        self._reset()
        self._update_reading()

    # limits

    def _set_deadline(self, seconds: float | None, part: str = "") -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if seconds is not None and not self.closed:
            self._deadline = self.context.loop.call_later(seconds, self._too_slow, part, seconds)

    def _too_slow(self, part: str, seconds: float) -> None:
        self._deadline = None
        if self.closed:
            return
        key = "header_timeout" if part == "headers" else "body_timeout"
        self._refuse(
            _Refusal(
                408,
                "request_timeout",
                f"the request's {part} did not arrive within {seconds:g} s ([api] {key}); "
                "send the whole request at once",
            )
        )
        self._release_body()
        self.body = bytearray()  # never read to its end: free it now
        self._answer()

    def _release_body(self) -> None:
        if self.body_reserved:
            self.context.pending_body_bytes -= self.body_reserved
            self.body_reserved = 0

    def _update_reading(self) -> None:
        """Read only while the client may send more: not after a refusal, not while it
        leaves answers unread, and, while an answer is made, up to a few pipelined requests
        (read on while a deferred answer waits, so that a client going away is seen)."""
        if self.closed or self.transport is None:
            return
        read = not self.refused and not self.write_paused
        if read and self.busy:
            read = self.waiting is not None
        if read and len(self.queue) >= self.context.limits.max_pipelined:
            read = False
        if read != self.reading:
            self.reading = read
            (self.transport.resume_reading if read else self.transport.pause_reading)()

    # answering

    def _refuse(self, refusal: _Refusal) -> None:
        response = error_response(refusal.status, refusal.code, refusal.message)
        if refusal.status == 405:
            response.headers["Allow"] = ALLOWED_METHODS
        if refusal.status == 503:
            response.headers["Retry-After"] = "1"
        self.queue.append(_Turn(None, keep_alive=False, refusal=response))
        self.refused = True  # nothing after a refusal is read
        self._update_reading()

    def _answer(self) -> None:
        """Answer queued requests in order until one has to wait for a thread."""
        self._answer_queue()
        self._update_reading()
        if not self.queue and not self.busy and not self.closed and self._deadline is None:
            self._arm_idle()

    def _answer_queue(self) -> None:
        while self.queue and not self.busy and not self.closed and not self.write_paused:
            turn = self.queue.popleft()
            if turn.refusal is not None:
                self._send(turn, turn.refusal)
            elif not self.allowed:
                turn.keep_alive = False  # nothing more to say to this peer
                self._send(turn, _forbidden(self.peer.uid))
            elif turn.request is not None and self.context.quick(turn.request):
                self._send(turn, self._call(turn))
            else:
                self._set_busy(True)
                self.context.run_blocking(functools.partial(self._call_off_loop, turn))

    def _call(self, turn: _Turn) -> Response:
        assert turn.request is not None
        try:
            return self.context.app(turn.request)
        except Exception:
            logger.exception(
                "error while serving %s %s", escape(turn.request.method), escape(turn.request.path)
            )
            return error_response(
                500, "internal", "tailord failed to answer; its log (journalctl) says why"
            )

    def _call_off_loop(self, turn: _Turn) -> None:
        response = self._call(turn)
        try:
            self.context.loop.call_soon_threadsafe(self._sent_off_loop, turn, response)
        except RuntimeError:  # the loop has closed: the server stopped meanwhile
            _close_stream(response.stream)
            if response.deferred is not None:
                response.deferred.close()

    def _sent_off_loop(self, turn: _Turn, response: Response) -> None:
        if self.closed:
            self.busy = False
            _close_stream(response.stream)
            if response.deferred is not None:
                response.deferred.close()
            return
        if response.deferred is not None:
            self._wait(turn, response.deferred)
            return
        self._set_busy(False)
        self._send(turn, response)
        self._answer()

    def _set_busy(self, busy: bool) -> None:
        # While a response is made elsewhere, stop reading (but for a few pipelined requests
        # while a deferred answer waits). Nor is it idle: a ?wait=true or an event stream may
        # rightly stay silent for long.
        self.busy = busy
        if busy:
            self._disarm_idle()
        self._update_reading()

    # deferred answers: waited for on the loop, looked at on a worker thread when woken

    def _wait(self, turn: _Turn, deferred: Deferred) -> None:
        loop = self.context.loop
        self.waiting = _Waiting(turn, deferred, loop.time() + deferred.timeout)
        self._update_reading()  # read on: a client that goes away drops its wait

        def wake() -> None:  # any thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: the server stopped
                loop.call_soon_threadsafe(self._wake, deferred)

        deferred.subscribe(wake)
        self._arm_wait()

    def _arm_wait(self) -> None:
        waiting = self.waiting
        assert waiting is not None
        left = max(0.0, waiting.deadline - self.context.loop.time())
        waiting.timer = self.context.loop.call_later(
            min(left, RECHECK_SECONDS), self._wake, waiting.deferred
        )

    def _wake(self, deferred: Deferred) -> None:
        waiting = self.waiting
        if waiting is None or waiting.deferred is not deferred or self.closed:
            return
        if waiting.checking:
            waiting.woken = True
            return
        if waiting.timer is not None:
            waiting.timer.cancel()
            waiting.timer = None
        waiting.checking = True
        final = self.context.loop.time() >= waiting.deadline
        self.context.run_blocking(functools.partial(self._check, waiting, final))

    def _check(self, waiting: _Waiting, final: bool) -> None:
        """On a worker thread: the deferred answer, if ready (the thread is held briefly)."""
        try:
            response = waiting.deferred.answer(final)
        except Exception:
            logger.exception("error while waiting for an answer")
            response = error_response(
                500, "internal", "tailord failed to answer; its log (journalctl) says why"
            )
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server stopped
            self.context.loop.call_soon_threadsafe(self._checked, waiting, response)

    def _checked(self, waiting: _Waiting, response: Response | None) -> None:
        waiting.checking = False
        if self.waiting is not waiting or self.closed:
            return
        if response is None:
            if waiting.woken:
                waiting.woken = False
                self._wake(waiting.deferred)
            else:
                self._arm_wait()
            return
        self._drop_waiting()
        self._sent_off_loop(waiting.turn, response)

    def _drop_waiting(self) -> None:
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            if waiting.timer is not None:
                waiting.timer.cancel()
            waiting.deferred.close()

    def _send(self, turn: _Turn, response: Response) -> None:
        assert self.transport is not None
        keep_alive = turn.keep_alive and response.stream is None
        head = [
            f"HTTP/1.1 {response.status} {_phrase(response.status)}",
            "Server: tailord",
            f"Date: {_http_date()}",
            f"Content-Type: {response.content_type}",
        ]
        if response.stream is None:
            head.append(f"Content-Length: {len(response.body)}")
        head += [f"{key}: {value}" for key, value in response.headers.items()]
        if not keep_alive:
            head.append("Connection: close")
        body = b"" if turn.head else response.body
        # Head and body in one write: one system call, one read for the client.
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        if response.stream is not None and not turn.head:
            self._set_busy(True)
            threading.Thread(
                target=self._pump_stream, args=(response.stream,), name="tailord-sse", daemon=True
            ).start()
        elif not keep_alive:
            _close_stream(response.stream)
            self._close()

    def _pump_stream(self, chunks: Iterator[bytes]) -> None:
        """On the stream's own thread: each chunk to the loop, then the end of the body."""
        try:
            for chunk in chunks:
                if self.closed:
                    break
                self.context.loop.call_soon_threadsafe(self._stream_write, chunk)
        except RuntimeError:
            pass  # the loop has closed: the server stopped
        finally:
            _close_stream(chunks)  # runs the generator's cleanup (unsubscribes) at once
            with contextlib.suppress(RuntimeError):  # the loop has closed: the server stopped
                self.context.loop.call_soon_threadsafe(self._close)

    def _stream_write(self, chunk: bytes) -> None:
        if self.closed or self.transport is None:
            return
        if self.transport.get_write_buffer_size() > MAX_STREAM_BACKLOG:
            logger.warning("uid %d stopped reading its event stream; closing it", self.peer.uid)
            self._close()
            return
        self.transport.write(chunk)

    def _close(self) -> None:
        """Close once what is written has gone out (transport.close flushes first)."""
        if not self.closed and self.transport is not None:
            self.closed = True
            self.queue.clear()
            self._disarm_idle()
            self._set_deadline(None)
            self._release_body()
            self._drop_waiting()
            self.transport.close()

    def _arm_idle(self) -> None:
        self._disarm_idle()
        self.idle_since = next(_IDLE_ORDER)
        self._idle = self.context.loop.call_later(self.context.idle_timeout, self._idle_expired)

    def _disarm_idle(self) -> None:
        self.idle_since = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_expired(self) -> None:
        self._idle = None
        if not self.busy and not self.queue:
            logger.debug("closing a connection of uid %d left idle", self.peer.uid)
            self._close()


# Orders connections by when they went idle (the loop's clock is the same for a whole batch).
_IDLE_ORDER = itertools.count()


def _evict_idle(connections: set[Connection]) -> bool:
    """Close the connection idle the longest, to make room for a new one; False if none is.

    An idle keep-alive connection costs its client only a reconnect (tailorctl's client does
    that by itself), so idle connections can never lock out a client with a request.
    """
    idle = [c for c in connections if c.idle_since is not None and not c.closed]
    if not idle:
        return False
    oldest = min(idle, key=lambda c: c.idle_since or 0)
    logger.debug("at the connection cap: closing the longest-idle connection")
    oldest._close()
    connections.discard(oldest)
    return True


_BUSY_BODY = (
    b'{"error":{"code":"busy","message":"tailord serves as many connections as it may '
    b'([api] max_connections); connect again in a moment"}}\n'
)
_BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nServer: tailord\r\n"
    b"Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n"
    + f"Content-Length: {len(_BUSY_BODY)}\r\n\r\n".encode()
    + _BUSY_BODY
)


def _close_stream(stream: Iterator[bytes] | None) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _forbidden(uid: int) -> Response:
    return error_response(
        403,
        "forbidden",
        f"uid {uid} may not use tailord; add the user to [api] allowed_users "
        "(or a group of theirs to allowed_groups) and restart",
    )


_HEADERS_MESSAGE = "the request headers are too large or too many; send fewer"
_METHODS_MESSAGE = "tailord answers GET, HEAD, POST and DELETE; see /v1/openapi.json"
_VERSION_MESSAGE = "speak HTTP/1.0 or HTTP/1.1 to tailord"


def _parse_message(detail: str) -> str:
    return (
        f"tailord could not parse the request ({detail}); send HTTP/1.1, "
        "e.g. `curl --unix-socket SOCK http://localhost/v1/version`"
    )


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def _phrase(status: int) -> str:
    return _PHRASES.get(status, "Unknown")


_date_cache: tuple[int, str] = (0, "")  # (Unix second, its Date header); swapped whole


def _http_date() -> str:
    # Formatting the Date header is a visible share of a tiny request: once a second.
    global _date_cache  # noqa: PLW0603 (one reference swapped: no lock needed)
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = email.utils.formatdate(now, usegmt=True)
        _date_cache = (now, text)
    return text
