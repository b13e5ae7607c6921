"""One HTTP/1.1 connection on the event loop: requests read (``reader.py``), answered in order.

Requests on a connection are answered one at a time and in the order they came (pipelining
is allowed, never reordered). A quick route (an in-memory read, ``GET /v1/version``) is
answered on the loop itself; any other runs on a worker thread, because it may wait on the
database, a prediction or an update. A server-sent event stream gets a thread of its own
that hands each chunk to the loop, and ends the connection when it ends (``streaming.py``).
A deferred answer (``?wait=true``) waits on the loop, holding no thread, and is dropped when
the client goes (``waiting.py``).

What a client may hold is bounded (``limits.py``): a request's headers and body must arrive
within their deadlines (bytes do not extend them); reading stops while the client leaves
answers unread or has many requests queued; bodies still arriving share one memory budget.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tailord.daemon.http.auth import Authorizer, peer_of
from tailord.daemon.http.idle import IdleTimer, longest_idle
from tailord.daemon.http.limits import Limits
from tailord.daemon.http.reader import Refusal, RequestReader, over_budget, too_slow
from tailord.daemon.http.responses import BUSY_ANSWER, encode, forbidden
from tailord.daemon.http.streaming import MAX_STREAM_BACKLOG, close_stream, start_pump
from tailord.daemon.http.waiting import Wait
from tailord.daemon.http.wire import App, Deferred, Request, Response, error_response
from tailord.daemon.text import escape

logger = logging.getLogger(__name__)


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
class _Turn:
    """One request's place in the connection's queue, or a refusal that ends it."""

    request: Request | None
    keep_alive: bool
    head: bool = False
    refusal: Response | None = None


class Connection(asyncio.Protocol):
    def __init__(self, context: Context) -> None:
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Turn] = deque()
        self.busy = False  # a response is being made off the loop, or a stream is open
        self.closed = False  # no more reading or answering; set from the loop only
        self.refused = False  # a refusal is queued: nothing after it is read
        self.write_paused = False  # the client leaves answers unread (pause_writing)
        self.reading = True
        # Closes a connection left silent; its ``since`` orders evictions at the cap.
        self.idle = IdleTimer(context.loop, context.idle_timeout, self._idle_expired)
        self.waiting: Wait | None = None
        self.body_reserved = 0  # this request's share of the server's pending_body_bytes
        self._deadline: asyncio.TimerHandle | None = None  # a request's headers, then body

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        limits = self.context.limits
        self.transport.set_write_buffer_limits(high=limits.max_unsent_bytes)
        connections = self.context.connections
        if len(connections) >= self.context.max_connections and not _make_room(connections):
            self.closed = True
            self.transport.write(BUSY_ANSWER)
            self.transport.close()
            return
        self.peer = peer_of(transport.get_extra_info("socket"))
        self.allowed = self.context.authorizer.allows(self.peer)  # fixed for the connection
        self.reader = RequestReader(self, self.peer, self.context.max_body_bytes)
        connections.add(self)
        self.idle.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.queue.clear()
        self.idle.disarm()
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
        self.idle.disarm()  # re-armed by _answer once all that came in is answered
        refusal = self.reader.feed(data)
        if refusal is not None:
            self._refuse(refusal)
        self._answer()

    # what the reader says (reader.Sink)

    def request_begun(self) -> None:
        # The deadline runs from the first byte; later bytes do not move it (slowloris).
        self.idle.disarm()
        self._set_deadline(self.context.limits.header_timeout, "headers")

    def headers_read(self, length: int, expects_continue: bool) -> None:
        if length:
            budget = self.context.limits.max_pending_body_bytes
            if self.context.pending_body_bytes + length > budget:
                raise over_budget(self.context.pending_body_bytes, budget)
            self.body_reserved = length
            self.context.pending_body_bytes += length
            self._set_deadline(self.context.limits.body_timeout, "body")
        else:
            self._set_deadline(None)
        if expects_continue and self.allowed and not self.queue and not self.busy:
            # curl asks before sending a large body; answering at once saves it a second.
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def request_read(self, request: Request, keep_alive: bool, head: bool) -> None:
        self._set_deadline(None)
        self._release_body()
        self.queue.append(_Turn(request, keep_alive, head))
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
        self._refuse(too_slow(part, seconds))
        self._release_body()
        self.reader.drop_body()  # never read to its end: free it now
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

    def _refuse(self, refusal: Refusal) -> None:
        self.queue.append(_Turn(None, keep_alive=False, refusal=refusal.response()))
        self.refused = True  # nothing after a refusal is read
        self._update_reading()

    def _answer(self) -> None:
        """Answer queued requests in order until one has to wait for a thread."""
        self._answer_queue()
        self._update_reading()
        if not self.queue and not self.busy and not self.closed and self._deadline is None:
            self.idle.arm()

    def _answer_queue(self) -> None:
        while self.queue and not self.busy and not self.closed and not self.write_paused:
            turn = self.queue.popleft()
            if turn.refusal is not None:
                self._send(turn, turn.refusal)
            elif not self.allowed:
                turn.keep_alive = False  # nothing more to say to this peer
                self._send(turn, forbidden(self.peer.uid))
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
            close_stream(response.stream)
            if response.deferred is not None:
                response.deferred.close()

    def _sent_off_loop(self, turn: _Turn, response: Response) -> None:
        if self.closed:
            self.busy = False
            close_stream(response.stream)
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
            self.idle.disarm()
        self._update_reading()

    # deferred answers: waited for on the loop (waiting.py)

    def _wait(self, turn: _Turn, deferred: Deferred) -> None:
        deliver = functools.partial(self._waited, turn)
        self.waiting = Wait(self.context.loop, self.context.run_blocking, deferred, deliver)
        self._update_reading()  # read on: a client that goes away drops its wait
        self.waiting.start()

    def _waited(self, turn: _Turn, response: Response) -> None:
        self._drop_waiting()
        self._sent_off_loop(turn, response)

    def _drop_waiting(self) -> None:
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.close()

    def _send(self, turn: _Turn, response: Response) -> None:
        assert self.transport is not None
        keep_alive = turn.keep_alive and response.stream is None
        self.transport.write(encode(response, keep_alive, turn.head))
        if response.stream is not None and not turn.head:
            self._set_busy(True)
            start_pump(
                response.stream, self.context.loop, self._stream_write, self._is_closed, self._close
            )
        elif not keep_alive:
            close_stream(response.stream)
            self._close()

    def _is_closed(self) -> bool:
        return self.closed

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
            self.idle.disarm()
            self._set_deadline(None)
            self._release_body()
            self._drop_waiting()
            self.transport.close()

    def _idle_expired(self) -> None:
        if not self.busy and not self.queue:
            logger.debug("closing a connection of uid %d left idle", self.peer.uid)
            self._close()


def _make_room(connections: set[Connection]) -> bool:
    """Close the connection idle the longest, to make room for a new one; False if none is
    (idle.py says why that is fair)."""
    oldest = longest_idle(connections)
    if oldest is None:
        return False
    logger.debug("at the connection cap: closing the longest-idle connection")
    oldest._close()
    connections.discard(oldest)
    return True
