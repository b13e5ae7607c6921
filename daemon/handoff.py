"""Work an API thread asks of the main loop, and waits for: the main loop does it between
updates (a forget must not run beside an update that reads the same samples)."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from tailord.daemon.errors import TailordError

logger = logging.getLogger(__name__)

Request = TypeVar("Request")
Result = TypeVar("Result")


class Handoff(Generic[Request, Result]):
    """Requests queued by any thread, each answered through its future by ``serve``.

    ``wake`` wakes the main loop when a request is queued; ``what`` names the work in a log.
    """

    def __init__(self, wake: Callable[[], None], what: str) -> None:
        self._wake = wake
        self._what = what
        self._queue: queue.SimpleQueue[tuple[Request, Future[Result]]] = queue.SimpleQueue()

    def ask(self, request: Request) -> Result:
        """From another thread: have the main loop do ``request``, and wait for its answer."""
        future: Future[Result] = Future()
        self._queue.put((request, future))
        self._wake()
        return future.result()

    def serve(self, do: Callable[[Request], Result]) -> None:
        """On the main loop: do each queued request; its caller gets the result or error."""
        while not self._queue.empty():
            request, future = self._queue.get_nowait()
            try:
                future.set_result(do(request))
            except Exception as exc:
                if not isinstance(exc, TailordError):  # ours say what to do; others need a trace
                    logger.exception("%s failed", self._what)
                future.set_exception(exc)

    def refuse(self, error: BaseException) -> None:
        """At shutdown: each request still queued gets ``error`` (its caller hears so, not
        nothing)."""
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            future.set_exception(error)
