"""A deferred answer (``?wait=true``) waited for on the event loop, holding no thread.

The answer is looked at on a worker thread (it may read the database) when the deferred
wakes it, at its timeout, and every few seconds in case a wake was missed; one look at a
time, and a wake during a look asks for another at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

from tailord.daemon.http.wire import Deferred, Response, error_response

logger = logging.getLogger(__name__)

# A deferred answer is looked at this often even when nothing woke it (a missed wake).
RECHECK_SECONDS = 5.0


class Wait:
    """One deferred answer being waited for; ``deliver`` gets it on the loop, once, unless
    :meth:`close` (the client went away) came first."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        run_blocking: Callable[[Callable[[], None]], None],
        deferred: Deferred,
        deliver: Callable[[Response], None],
    ) -> None:
        self.loop = loop
        self.run_blocking = run_blocking
        self.deferred = deferred
        self.deliver = deliver
        self.deadline = loop.time() + deferred.timeout  # on the loop's (monotonic) clock
        self.timer: asyncio.TimerHandle | None = None
        self.checking = False  # ``answer`` runs on a worker thread
        self.woken = False  # woken while checking: check again at once
        self.closed = False

    def start(self) -> None:
        loop = self.loop

        def wake() -> None:  # any thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: the server stopped
                loop.call_soon_threadsafe(self._wake)

        self.deferred.subscribe(wake)
        self._arm()

    def close(self) -> None:
        """Stop waiting (on the loop): no answer is delivered after this."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.deferred.close()

    def _arm(self) -> None:
        left = max(0.0, self.deadline - self.loop.time())
        self.timer = self.loop.call_later(min(left, RECHECK_SECONDS), self._wake)

    def _wake(self) -> None:
        if self.closed:
            return
        if self.checking:
            self.woken = True
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.checking = True
        final = self.loop.time() >= self.deadline
        self.run_blocking(functools.partial(self._check, final))

    def _check(self, final: bool) -> None:
        """On a worker thread: the deferred answer, if ready (the thread is held briefly)."""
        try:
            response = self.deferred.answer(final)
        except Exception:
            logger.exception("error while waiting for an answer")
            response = error_response(
                500, "internal", "tailord failed to answer; its log (journalctl) says why"
            )
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server stopped
            self.loop.call_soon_threadsafe(self._checked, response)

    def _checked(self, response: Response | None) -> None:
        self.checking = False
        if self.closed:
            return
        if response is None:
            if self.woken:
                self.woken = False
                self._wake()
            else:
                self._arm()
            return
        self.deliver(response)
